# Sourced by the load scripts (bench-serve.sh, rotation-under-load.sh): checks the release binary and wrk,
# populates a temporary data directory with `veil demo` (USERS users, 1,000 items) and writes a wrk script
# asking for recommendations of consenting demo subjects. Sets DIR, USERS, VEIL, common, RECS.
# Usage: PREFIX=name RECS_PRINCIPAL=name; source scripts/load-setup.sh
VEIL=${VEIL:-.build/release/veil}
[ -x "$VEIL" ] || { echo "build first: make release" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
DIR=$(mktemp -d "/tmp/veil-${PREFIX}.XXXXXX")
USERS=1000
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$DIR"' EXIT
"$VEIL" demo --dir "$DIR" --users $USERS --items 1000 --days 60 > "$DIR/demo.log"
common=(--data-dir "$DIR/data" --keys "$DIR/Keys" --policies ./Policies)
RECS=$("$VEIL" principals add "$RECS_PRINCIPAL" --role recommendation-client "${common[@]}" | tail -1)
# Every eighth demo subject declined personalization: ask for the others.
cat > "$DIR/recs.lua" <<LUA
counter = 0
request = function()
  counter = counter + 1
  local n = (counter * 7919) % $USERS
  if n % 8 == 7 then n = n - 1 end
  return wrk.format("GET", "/v1/recommendations/user-" .. n .. "%40example.com?k=10", {["Authorization"] = "Bearer $RECS"})
end
LUA
