#!/usr/bin/env bash
# The README's test command: formatting, lints, and every test. `.ci/run` calls it.
# Set-up is part of it: on a fresh machine it needs only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

# CI builds from a fresh clone; a target directory outside the clone lets a machine that
# ran CI before reuse its compiled dependencies (a cold debug build takes ~10 minutes).
if [ "${CI:-}" = "true" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR="${HOME}/.cache/nuvyn-executor/target"
  mkdir -p "$CARGO_TARGET_DIR"
fi

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo test"
cargo test --locked --all-targets -- --test-threads 2

step "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
