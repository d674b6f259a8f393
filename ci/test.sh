#!/usr/bin/env bash
# The README's test command: formatting, every test (Azure ones against Azurite), the schema
# migration run, the interop check with an independent Delta reader, and lints. `.ci/run`
# calls it. Set-up is part of it: on a fresh machine it needs the Rust toolchain, Node.js/npm
# (Azurite, pinned in ci/azurite/package-lock.json, started on 127.0.0.1), python3 with
# venv (the `deltalake` reader, pyspark, databricks-bundles, databricks-sdk, pinned, from
# PyPI) and Java 17 for pyspark (installed from Debian's packages when missing and root).
set -euo pipefail
cd "$(dirname "$0")/.."

# CI builds from a fresh clone; a target directory outside the clone lets a machine that
# ran CI before reuse its compiled dependencies (a cold debug build takes ~15 minutes).
if [ "${CI:-}" = "true" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="${HOME}/.cache/nuvyn-executor/target"
  mkdir -p "$CARGO_TARGET_DIR"
fi

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "module imports run one way, from the CLI down to storage (ci/module-layers.py)"
python3 ci/module-layers.py

step "Azurite (Azure Storage emulator, pinned in ci/azurite/package-lock.json)"
az_out="$(bash ci/azurite/start.sh)"
read -r az_dir az_port <<<"$az_out"
trap 'bash ci/azurite/stop.sh "$az_dir"' EXIT
export NUVYN_AZURITE_BLOB="http://127.0.0.1:${az_port}/devstoreaccount1"
echo "Azurite on 127.0.0.1:${az_port}" >&2

step "cargo test"
cargo test --locked --all-targets -- --test-threads 2

step "schema migration run (ci/migration-check.sh)"
bash ci/migration-check.sh

step "interop: an independent Delta reader (ci/interop-check.sh)"
bash ci/interop-check.sh

step "profiles against DuckDB's exact answers (ci/profile-check.sh)"
bash ci/profile-check.sh

step "Databricks: pyspark, databricks-bundles, databricks-sdk (pinned, ci/databricks-venv.sh)"
dbx_python="$(bash ci/databricks-venv.sh)"
export SPARK_LOCAL_IP=127.0.0.1

step "Spark's own SQL parser on every statement we ship or generate (ci/spark-sql-check.py)"
"$dbx_python" ci/spark-sql-check.py "${CARGO_TARGET_DIR:-target}/debug/nuvyn-executor"

step "Databricks notebooks, bundle and job settings (ci/databricks-check.py)"
"$dbx_python" ci/databricks-check.py "${CARGO_TARGET_DIR:-target}/debug/nuvyn-executor"

step "packaging: the maturin wheel (ci/wheel-check.sh)"
bash ci/wheel-check.sh

step "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
