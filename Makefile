# The two commands a newcomer needs: `make demo` and `make test`.
SWIFT ?= swift

.PHONY: deps demo cluster-demo test build release evaluate evaluate-sessions bench-recommender bench-serve fuzz crash-test shutdown-test disk-full-test browser-test console-test secrets-scan soak format

deps:
	@scripts/ensure-deps.sh

## Build in release and run Veil end to end on generated sample data in a temporary directory.
demo: deps
	$(SWIFT) build -c release --product veil
	.build/release/veil demo

## PostgreSQL, three gateways on it and nginx in front, on loopback: a shop's story through the load balancer and a
## withdrawal made through one gateway obeyed by the others (scripts/cluster_demo.py; installs postgresql and nginx-light).
cluster-demo: deps
	scripts/ensure-postgres.sh
	scripts/ensure-nginx.sh
	$(SWIFT) build -c release --product veil
	python3 scripts/cluster_demo.py --veil .build/release/veil

## Run every test: the Swift suites (the repository suites on SQLite and on a scratch PostgreSQL server, then the
## gateway suite again with PostgreSQL as its operational database), then PostgreSQL restarted under a serving
## gateway, one of three gateways on one database killed and restarted, the cluster demo behind nginx, the kill -9
## crash test, the graceful-shutdown test, the full-disk test, the audit witness against a live server, the tracking script and the compliance console in headless Chromium, and the
## secrets scan, against the built binary.
test: deps
	$(SWIFT) format lint --strict --configuration .swift-format -r Sources Tests Plugins Package.swift
	$(SWIFT) build --build-tests
	scripts/ensure-postgres.sh
	scripts/with-postgres.sh $(SWIFT) test --skip-build
	VEIL_TEST_BACKEND=postgres scripts/with-postgres.sh $(SWIFT) test --skip-build --filter GatewayTests
	python3 scripts/pg_restart_test.py --veil .build/debug/veil --rounds 3
	python3 scripts/cluster_test.py --veil .build/debug/veil --rounds 3
	scripts/ensure-nginx.sh
	python3 scripts/cluster_demo.py --veil .build/debug/veil
	python3 scripts/crash_test.py --veil .build/debug/veil --rounds 20
	python3 scripts/shutdown_test.py --veil .build/debug/veil --rounds 3
	python3 scripts/disk_full_test.py --veil .build/debug/veil
	python3 scripts/witness_test.py --veil .build/debug/veil
	scripts/ensure-browser.sh
	python3 scripts/browser_test.py --veil .build/debug/veil
	python3 scripts/console_test.py --veil .build/debug/veil
	python3 -m unittest scripts/test_wrk_output.py
	VEIL=.build/debug/veil scripts/with-postgres.sh scripts/secrets-scan.sh

format:
	$(SWIFT) format format --configuration .swift-format -i -r Sources Tests Plugins Package.swift

crash-test: build
	python3 scripts/crash_test.py --veil .build/debug/veil --rounds 20

shutdown-test: build
	python3 scripts/shutdown_test.py --veil .build/debug/veil --rounds 3

browser-test: build
	scripts/ensure-browser.sh
	python3 scripts/browser_test.py --veil .build/debug/veil

## The compliance console in headless Chromium; screenshots of each page go to the folder it prints.
console-test: build
	scripts/ensure-browser.sh
	python3 scripts/console_test.py --veil .build/debug/veil

disk-full-test: build
	python3 scripts/disk_full_test.py --veil .build/debug/veil

secrets-scan: build
	VEIL=.build/debug/veil scripts/secrets-scan.sh

## Schemathesis against the running server (creates .venv-fuzz from PyPI on first use).
fuzz: build
	VEIL=.build/debug/veil scripts/fuzz.sh 25

## Soak (long; not part of `make test` or CI): 100 kill -9 rounds of the crash test, then schemathesis with seeds
## 1, 2, ... until at least 10,000 generated cases. Both run; the target fails if either does.
soak: build
	@status=0; \
	python3 scripts/crash_test.py --veil .build/debug/veil --rounds 100 || status=1; \
	VEIL=.build/debug/veil MIN_CASES=10000 scripts/fuzz.sh 200 || status=1; \
	if [ $$status -ne 0 ]; then echo "soak failed" >&2; fi; exit $$status

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product veil

## Quality table on the shared ml-100k split (needs ../shared).
evaluate: release
	.build/release/veil evaluate --train ../shared/data/ml-100k/split/train.tsv \
	  --test ../shared/data/ml-100k/split/test.tsv --items ../shared/data/ml-100k/u.item

## Next-item table: session models on ml-100k sessions (needs ../shared) and on the sample shop.
evaluate-sessions: release
	.build/release/veil evaluate --task next-item --train ../shared/data/ml-100k/split/train.tsv \
	  --test ../shared/data/ml-100k/split/test.tsv --threads 2
	.build/release/veil evaluate --task next-item --sample-shop --threads 2

## Veil vs implicit, same run, same machine (needs ../shared and PyPI).
bench-recommender: release
	scripts/bench-recommender.sh

bench-serve: release
	scripts/bench-serve.sh 10
