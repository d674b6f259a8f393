#!/usr/bin/env bash
# The CI schema migration run, with the binary alone: builds a v1.0 warehouse from the V1
# migration (`migrate apply --target 1`) and the rows of tests/fixtures/v1_warehouse.sql,
# migrates it to the latest schema (`migrate apply`), and checks that every row is kept,
# workflow_id equals the old source_id, every table is partitioned by workflow_id
# (`schema_validation`), the v1 versions are still in the Delta log with their files (time
# travel), a second apply is a no-op, and the migration document's four queries return the
# rows in tests/fixtures/migration_expected/. `.ci/run` runs it through ci/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked --quiet
BIN="${CARGO_TARGET_DIR:-target}/debug/nuvyn-executor"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
WH="$tmp/warehouse"
export EXECUTOR_LOG_LEVEL=warn
fail() { echo "migration check FAILED: $*" >&2; exit 1; }
sqlj() { "$BIN" sql "$1" --format json --warehouse "$WH"; }
same_json() {  # expected-file-or-literal actual
  python3 - "$1" "$2" <<'PY' || fail "$3"
import json, os, sys
exp, act = sys.argv[1], sys.argv[2]
e = json.load(open(exp)) if os.path.exists(exp) else json.loads(exp)
a = json.loads(act)
if e != a:
    print(f"expected {json.dumps(e)}\n     got {json.dumps(a)}", file=sys.stderr)
    sys.exit(1)
PY
}

echo "==> a v1.0 warehouse from V1 and the fixture rows" >&2
"$BIN" migrate apply --target 1 --warehouse "$WH" > /dev/null
grep '^INSERT' tests/fixtures/v1_warehouse.sql | while IFS= read -r stmt; do
  "$BIN" sql "$stmt" --warehouse "$WH" > /dev/null
done
counts() {
  local out=""
  for t in sources tables columns executor_runs; do out="$out$(sqlj "SELECT count(*) AS n FROM $t" | tr -d ' \n')"; done
  echo "$out"
}
before="$(counts)"
[ "$before" = '[{"n":2}][{"n":3}][{"n":7}][{"n":2}]' ] || fail "fixture rows: $before"
same_json '["applied","pending","pending","pending","pending","pending","pending","pending"]' \
  "$("$BIN" migrate status --warehouse "$WH" | python3 -c 'import json,sys; print(json.dumps([m["state"] for m in json.load(sys.stdin)["migrations"]]))')" \
  "status before"

echo "==> migrate apply" >&2
"$BIN" migrate apply --warehouse "$WH" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert (r["from_version"], r["to_version"]) == (1, 8), r' \
  || fail "apply did not go from V1 to V8"
"$BIN" migrate apply --warehouse "$WH" | python3 -c 'import json,sys; assert json.load(sys.stdin)["applied"] == []' \
  || fail "a second apply was not a no-op"
"$BIN" migrate validate --warehouse "$WH" > /dev/null || fail "validate"

echo "==> checks" >&2
[ "$(counts)" = "$before" ] || fail "row counts changed: $before -> $(counts)"
for t in sources tables columns executor_runs; do
  same_json '[{"n":0}]' "$(sqlj "SELECT count(*) AS n FROM $t WHERE workflow_id IS DISTINCT FROM source_id")" "$t: workflow_id != source_id"
  ls -d "$WH/_executor_metadata/$t/workflow_id=workflow_abc123" > /dev/null || fail "$t is not partitioned by workflow_id"
  # Time travel: version 0 (V1) still says partitioned by source_id, and its files are there.
  grep -q '"partitionColumns":\["source_id"\]' "$WH/_executor_metadata/$t/_delta_log/00000000000000000000.json" || fail "$t: v1 version gone"
  ls -d "$WH/_executor_metadata/$t/source_id=workflow_abc123" > /dev/null || fail "$t: v1 files gone"
done
"$BIN" schema_validation --no-create --warehouse "$WH" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["valid"], r' \
  || fail "schema_validation after migration"
for q in 1 2 3 4; do
  same_json "tests/fixtures/migration_expected/q$q.json" "$(sqlj "$(cat "tests/fixtures/doc_queries/q$q.sql")")" "document query $q"
done
echo "migration check passed: V1 -> V8, rows kept (sources, tables, columns, executor_runs): $before" >&2
