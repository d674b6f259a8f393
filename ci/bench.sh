#!/usr/bin/env bash
# Profiling benchmark: generates a ~500 MB CSV (5M rows x 8 mixed columns), the same data as
# Parquet, and 2,000 small CSV files; profiles each with a release build of nuvyn-executor
# (`extract --dry-run`) and prints wall time, MB/s and peak RSS. DuckDB (from PyPI, pinned)
# computes the same statistics (count(*), count, approx_count_distinct, min, max of every
# column) on the same files as the reference; the target is <= 0.8x DuckDB's time.
#
# Usage: ci/bench.sh [DATA_DIR]   (default: ./bench-data; generated once, then reused)
# Not part of ci/test.sh: a release build takes ~16 minutes from scratch on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-bench-data}"
DUCKDB_VERSION=1.4.1
RUNS="${BENCH_RUNS:-3}"   # best of RUNS
mkdir -p "$DATA"
DATA="$(cd "$DATA" && pwd)"

VENV="${HOME}/.cache/nuvyn-executor/bench-venv"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet "duckdb==${DUCKDB_VERSION}"
PY="$VENV/bin/python"

echo "==> generating data in $DATA (once)" >&2
"$PY" - "$DATA" <<'PYEOF'
import os, sys, duckdb
d = sys.argv[1]
con = duckdb.connect()
gen = """
SELECT i AS id,
       'customer_' || (i % 100000) AS customer,
       (i * 7919) % 1000003 AS amount_cents,
       ((i * 31) % 10007) / 100.0 AS price,
       (i % 3 = 0) AS flag,
       DATE '2020-01-01' + CAST(i % 1500 AS INTEGER) AS day,
       CASE WHEN i % 10 = 0 THEN NULL ELSE 'cat_' || (i % 250) END AS category,
       md5(CAST(i AS VARCHAR)) AS token
FROM range(5000000) t(i)
"""
csv = os.path.join(d, "big_csv", "big.csv")
pq = os.path.join(d, "big_parquet", "big.parquet")
small = os.path.join(d, "small_files")
os.makedirs(os.path.dirname(csv), exist_ok=True)
os.makedirs(os.path.dirname(pq), exist_ok=True)
if not os.path.exists(csv):
    con.execute(f"COPY ({gen}) TO '{csv}' (HEADER, DELIMITER ',')")
if not os.path.exists(pq):
    con.execute(f"COPY (SELECT * FROM read_csv_auto('{csv}')) TO '{pq}' (FORMAT PARQUET)")
if not os.path.isdir(small):
    os.makedirs(small)
    for f in range(2000):
        with open(os.path.join(small, f"part-{f:05d}.csv"), "w") as fh:
            fh.write("id,name,value\n")
            for r in range(20):
                fh.write(f"{f*20+r},n{r},{r*1.5}\n")
PYEOF

echo "==> release build" >&2
cargo build --release --locked --quiet
BIN="${CARGO_TARGET_DIR:-target}/release/nuvyn-executor"

duck() {  # prints seconds for DuckDB's statistics over one file
  "$PY" - "$1" "$2" <<'PYEOF'
import os, sys, time, duckdb
path, kind = sys.argv[1], sys.argv[2]
con = duckdb.connect()
src = f"read_csv_auto('{path}')" if kind == "csv" else f"read_parquet('{path}')"
cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
aggs = ["count(*)"] + [f'count("{c}"), approx_count_distinct("{c}"), min("{c}"), max("{c}")' for c in cols]
q = f"SELECT {', '.join(aggs)} FROM {src}"
best = None
for _ in range(int(os.environ.get("BENCH_RUNS", "3"))):
    t = time.perf_counter(); con.execute(q).fetchall(); el = time.perf_counter() - t
    best = el if best is None else min(best, el)
print(f"{best:.3f}")
PYEOF
}

run() {  # name, path, size-bytes, duckdb-seconds-or-empty
  local name="$1" path="$2" bytes="$3" ref="${4:-}"
  local out; out=$(mktemp)
  local best=""
  for _ in $(seq 1 "$RUNS"); do
    /usr/bin/time -f "%e %M" -o "$out.time" "$BIN" extract "$path" --workflow-id bench --dry-run --no-progress >/dev/null 2>"$out.err" || { cat "$out.err" >&2; exit 1; }
    read -r secs rss_kb < "$out.time"
    if [ -z "$best" ] || awk "BEGIN{exit !($secs < $best)}"; then best=$secs; best_rss=$rss_kb; fi
  done
  local mbps; mbps=$(awk "BEGIN{printf \"%.1f\", $bytes/1048576/$best}")
  local ratio="-"
  [ -n "$ref" ] && ratio=$(awk "BEGIN{printf \"%.2fx\", $best/$ref}")
  printf '%-14s %8.2f s %9s MB/s  peak RSS %6d MB   duckdb %6s s   ratio %s\n' \
    "$name" "$best" "$mbps" "$((best_rss / 1024))" "${ref:--}" "$ratio"
  rm -f "$out" "$out.time" "$out.err"
}

CSV="$DATA/big_csv/big.csv"; PQ="$DATA/big_parquet/big.parquet"
echo "==> duckdb reference" >&2
D_CSV=$(duck "$CSV" csv); D_PQ=$(duck "$PQ" parquet)
echo "==> nuvyn-executor (best of $RUNS)" >&2
run "csv 5M rows" "$CSV" "$(stat -c %s "$CSV")" "$D_CSV"
run "parquet 5M" "$PQ" "$(stat -c %s "$PQ")" "$D_PQ"
run "2000 files" "$DATA/small_files" "$(du -sb "$DATA/small_files" | cut -f1)"
