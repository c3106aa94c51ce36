# The two commands a newcomer needs: `make demo` and `make test`.
SWIFT ?= swift

.PHONY: deps demo test build release evaluate bench-recommender

deps:
	@scripts/ensure-deps.sh

## Build in release and run Veil end to end on generated sample data in a temporary directory.
demo: deps
	$(SWIFT) build -c release --product veil
	.build/release/veil demo

## Run every test.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product veil

## Quality table on the shared ml-100k split (needs ../shared).
evaluate: release
	.build/release/veil evaluate --train ../shared/data/ml-100k/split/train.tsv \
	  --test ../shared/data/ml-100k/split/test.tsv --items ../shared/data/ml-100k/u.item

## Veil vs implicit, same run, same machine (needs ../shared and PyPI).
bench-recommender: release
	scripts/bench-recommender.sh
