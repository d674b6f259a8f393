#!/usr/bin/env bash
# Packaging: builds the nuvyn-executor wheel with maturin (pinned, from PyPI; `bindings = "bin"`
# in pyproject.toml), installs it into a fresh virtualenv, and runs the installed
# `nuvyn-executor` from the venv's PATH on the sample data. CI builds the wheel with the dev
# profile to reuse the test build; a release wheel is `maturin build --release --locked`.
set -euo pipefail
cd "$(dirname "$0")/.."
MATURIN_VERSION=1.16.0
TOOLS="${HOME}/.cache/nuvyn-executor/interop-venv"
[ -x "$TOOLS/bin/python" ] || python3 -m venv "$TOOLS"
"$TOOLS/bin/pip" install --quiet --disable-pip-version-check "maturin==${MATURIN_VERSION}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
# The compatibility the bundle (databricks.yml) builds: maturin refuses a binary needing a
# newer glibc than Databricks Runtime 13+'s (Ubuntu 22.04, glibc 2.35).
COMPATIBILITY=manylinux_2_35
"$TOOLS/bin/maturin" build --profile dev --locked --quiet --compatibility "$COMPATIBILITY" --out "$tmp/dist" >&2
wheel="$(ls "$tmp"/dist/nuvyn_executor-*.whl)"
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install --quiet --disable-pip-version-check "$wheel"
# As a cluster would: the binary is found on the PATH the wheel's environment provides.
PATH="$tmp/venv/bin:$PATH"
command -v nuvyn-executor | grep -q "^$tmp/venv/bin/" || { echo "wheel check FAILED: nuvyn-executor is not on the venv's PATH" >&2; exit 1; }
version="$(nuvyn-executor --version)"
EXECUTOR_LOG_LEVEL=warn nuvyn-executor extract tests/data/sample_lake --workflow-id wheel_check \
  --warehouse "$tmp/warehouse" > "$tmp/result.json"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["status"] == "succeeded" and r["written"], r' "$tmp/result.json" \
  || { echo "wheel check FAILED: the installed binary did not run the job" >&2; exit 1; }
echo "wheel check passed: $(basename "$wheel") installs $version on the PATH and runs a job" >&2
