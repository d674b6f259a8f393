#!/usr/bin/env bash
# Stops the Azurite that start.sh started (its data folder is the argument) and removes the
# folder once the process has exited (it may still be flushing files until then).
dir="$1"
[ -n "$dir" ] && [ -d "$dir" ] || exit 0
pid="$(cat "$dir/pid" 2>/dev/null || true)"
if [ -n "$pid" ]; then
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
fi
rm -rf "$dir"
