#!/usr/bin/env bash
# Profiles against DuckDB: the statistics nuvyn-executor computes for a CSV file and its
# Parquet copy (120,000 rows: more than a column's sample holds, so sampled statistics are
# really sampled) are checked against DuckDB's own exact answers on the same files
# (`duckdb` from PyPI, pinned below). Exact statistics must be equal; approximate ones
# (quantiles, approximate top values, semantic shares) must be within the bound each states.
# `.ci/run` runs it through ci/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
DUCKDB_VERSION=1.4.1
VENV="${HOME}/.cache/nuvyn-executor/profile-venv"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "duckdb==${DUCKDB_VERSION}"

cargo build --locked --quiet
BIN="${CARGO_TARGET_DIR:-target}/debug/nuvyn-executor"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
"$VENV/bin/python" - "$BIN" "$tmp" <<'PY'
import datetime, json, math, os, subprocess, sys
import duckdb

binary, tmp = sys.argv[1:3]
N = 120_000
con = duckdb.connect()
gen = f"""
SELECT i AS id,
       ((i * 7919) % 100003) / 100.0 - 200 AS amount,
       i % 7 AS qty,
       DATE '2020-01-01' + CAST(i % 1500 AS INTEGER) AS day,
       TIMESTAMP '2021-01-01 00:00:00' + to_seconds(i * 37) AS at,
       CASE WHEN i % 10 = 0 THEN NULL ELSE 'cat_' || (i % 40) END AS category,
       CASE WHEN i % 1000 = 5 THEN '  ' ELSE 'user' || i || '@example.com' END AS email,
       CASE WHEN i % 100 = 7 THEN 'n/a' ELSE strftime(DATE '2022-01-01' + CAST(i % 700 AS INTEGER), '%Y-%m-%d') END AS note,
       CASE WHEN i % 10 < 3 THEN 'hot' ELSE 'v' || i END AS skew
FROM range({N}) t(i)
"""
csv_dir, pq_dir = os.path.join(tmp, "csv"), os.path.join(tmp, "parquet")
os.makedirs(csv_dir); os.makedirs(pq_dir)
csv, pq = os.path.join(csv_dir, "t.csv"), os.path.join(pq_dir, "t.parquet")
con.execute(f"COPY ({gen}) TO '{csv}' (HEADER, DELIMITER ',')")
con.execute(f"COPY ({gen}) TO '{pq}' (FORMAT PARQUET)")

failures = []
def check(ok, what):
    if not ok:
        failures.append(what)

def profile(path):
    out = subprocess.run([binary, "extract", path, "--workflow-id", "profile_check", "--dry-run",
                          "--no-progress", "--samples", "raw"], capture_output=True, text=True,
                         env={**os.environ, "EXECUTOR_LOG_LEVEL": "warn"})
    if out.returncode != 0:
        sys.exit(f"extract failed: {out.stderr}")
    t = json.loads(out.stdout)["sources"][0]["tables"][0]
    return t, {c["column_name"]: c for c in t["columns"]}

def eps_of(n):  # the bound the README states: DKW at 99% for n sampled values
    return math.sqrt(math.log(2 / 0.01) / (2 * n))

SAMPLE = 8192
checked = 0
for kind, path in (("csv", csv), ("parquet", pq)):
    src = f"read_csv_auto('{path}')" if kind == "csv" else f"read_parquet('{path}')"
    table, cols = profile(path)
    rows = con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
    check(table["row_count"] == rows, f"{kind}: row_count {table['row_count']} != {rows}")
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {src})").fetchall())
    for name, c in cols.items():
        q = f'"{name}"'
        tag = f"{kind}.{name}"
        nn = con.execute(f"SELECT count({q}) FROM {src}").fetchone()[0]
        check(c["null_count"] == rows - nn, f"{tag}: null_count {c['null_count']} != {rows - nn}")
        check(abs(c["null_fraction"] - (rows - nn) / rows) < 1e-12, f"{tag}: null_fraction")
        distinct = con.execute(f"SELECT count(DISTINCT {q}) FROM {src}").fetchone()[0]
        if distinct <= 2048:
            check(c["distinct_count"] == distinct, f"{tag}: distinct {c['distinct_count']} != {distinct} (exact below 2,048)")
        else:
            check(abs(c["distinct_count"] - distinct) <= 0.05 * distinct, f"{tag}: distinct {c['distinct_count']} vs {distinct}")
        ty = types[name]
        numeric = ty in ("BIGINT", "INTEGER", "DOUBLE") or ty.startswith("DECIMAL")
        temporal = ty in ("DATE", "TIMESTAMP")
        if numeric:
            mn, mx, avg, sd, zeros, neg = con.execute(
                f"SELECT min({q})::DOUBLE, max({q})::DOUBLE, avg({q}), stddev_samp({q}), count_if({q} = 0), count_if({q} < 0) FROM {src}").fetchone()
            check(c["min_double"] == mn and c["max_double"] == mx, f"{tag}: range {c['min_double']}..{c['max_double']} != {mn}..{mx}")
            check(math.isclose(c["mean"], avg, rel_tol=1e-9, abs_tol=1e-9), f"{tag}: mean {c['mean']} != {avg}")
            check(math.isclose(c["stddev"], sd, rel_tol=1e-6), f"{tag}: stddev {c['stddev']} != {sd}")
            check((c["zero_count"], c["negative_count"]) == (zeros, neg), f"{tag}: zeros/negatives {c['zero_count']}/{c['negative_count']} != {zeros}/{neg}")
        if numeric or temporal:
            qs = c["quantiles"]
            n_sampled = min(SAMPLE, nn)
            exact = nn <= SAMPLE
            check(qs["exact"] == exact, f"{tag}: quantiles exact flag")
            e = 0 if exact else eps_of(n_sampled)
            for key, p in (("p05", .05), ("p25", .25), ("p50", .5), ("p75", .75), ("p95", .95)):
                lo, hi = con.execute(
                    f"SELECT quantile_disc({q}, {max(p - e, 0)}), quantile_disc({q}, {min(p + e, 1)}) FROM {src}").fetchone()
                ours = qs[key]
                if temporal:
                    lo, hi = lo.isoformat(), hi.isoformat()
                    ours = ours.replace(" ", "T")
                check(lo <= ours <= hi, f"{tag}: {key} {ours} outside [{lo}, {hi}] (rank ±{e:.4f})")
            hist = c["histogram"]
            total = sum(hist["counts"])
            check(abs(total - nn) <= len(hist["counts"]), f"{tag}: histogram counts sum {total} != {nn}")
            if temporal:
                mn, mx = con.execute(f"SELECT epoch_us(min({q})), epoch_us(max({q})) FROM {src}").fetchone()
                check((c["min_timestamp"], c["max_timestamp"]) == (mn, mx), f"{tag}: time range {c['min_timestamp']}..{c['max_timestamp']} != {mn}..{mx}")
        if ty == "VARCHAR":
            mn, mx, lmin, lmax, lavg, blanks = con.execute(
                f"SELECT min({q}), max({q}), min(length({q})), max(length({q})), avg(length({q})), count_if(trim({q}) = '') FROM {src}").fetchone()
            check((c["min_value"], c["max_value"]) == (mn, mx), f"{tag}: min/max {c['min_value']}/{c['max_value']} != {mn}/{mx}")
            check((c["min_length"], c["max_length"]) == (lmin, lmax), f"{tag}: lengths {c['min_length']}..{c['max_length']} != {lmin}..{lmax}")
            check(math.isclose(c["avg_length"], lavg, rel_tol=1e-12), f"{tag}: avg_length {c['avg_length']} != {lavg}")
            check(c["blank_count"] == blanks, f"{tag}: blank_count {c['blank_count']} != {blanks}")
        # Most frequent values: exact counts, or within the stated error.
        truth = {str(v): n for v, n in con.execute(f"SELECT {q}::VARCHAR, count(*) FROM {src} WHERE {q} IS NOT NULL GROUP BY 1").fetchall()}
        top = c.get("top_values", [])
        err = c.get("top_values_error")
        if distinct <= 2048:
            check(err == 0, f"{tag}: top values should be exact, error {err}")
            expect = sorted(truth.values(), reverse=True)[:len(top)]
            check(sorted((t["count"] for t in top), reverse=True) == expect, f"{tag}: top counts {top} != {expect}")
        for t in top:
            v = t["value"]
            if temporal:
                v = v.replace("T", " ")
            real = truth.get(v)
            check(real is not None and abs(real - t["count"]) <= err, f"{tag}: top value {t} vs true count {real} ± {err}")
        checked += 1

    # Semantic types, personal data and the columns with known shares.
    check(cols["email"]["semantic_type"] == "email" and cols["email"]["pii"], f"{kind}: email not recognised")
    share = cols["note"]["semantic_fraction"]
    check(cols["note"]["semantic_type"] == "date" and abs(share - 0.99) <= eps_of(SAMPLE), f"{kind}: note is {cols['note']['semantic_type']} {share}, not date 0.99")
    hot = [t for t in cols["skew"].get("top_values", []) if t["value"] == "hot"]
    check(len(hot) == 1, f"{kind}: the frequent value of skew was not found")
    check(cols["skew"]["top_values_error"] > 0, f"{kind}: skew's top values should be approximate")
    check(table["candidate_keys"] == ["id", "at"], f"{kind}: candidate keys {table['candidate_keys']}")
    check(table["duplicate_rows"] <= 0.02 * rows, f"{kind}: {table['duplicate_rows']} duplicate rows, none exist")

if failures:
    print("profile check FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
    sys.exit(1)
print(f"profile check passed: {checked} columns of a CSV and a Parquet file agree with DuckDB {duckdb.__version__}", file=sys.stderr)
PY
