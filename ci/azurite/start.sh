#!/usr/bin/env bash
# Starts Azurite's blob service on 127.0.0.1 (the first free port from ${AZURITE_PORT:-10000})
# with a temporary data folder, waits until it answers, and creates the test containers.
# Prints "<data folder> <port>"; the PID is in <data folder>/pid. Installs the pinned Azurite
# (package-lock.json) with `npm ci` when it is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
port="${AZURITE_PORT:-10000}"
for _ in $(seq 1 20); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
  port=$((port + 1))
done
if [ ! -x "$here/node_modules/.bin/azurite-blob" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi
data="$(mktemp -d -t azurite.XXXXXX)"
"$here/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" \
  --location "$data" --silent --skipApiVersionCheck --loose >"$data/azurite.log" 2>&1 &
pid=$!
echo "$pid" > "$data/pid"
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    AZURITE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:$port/devstoreaccount1;" \
      node "$here/containers.js" lake warehouse conformance >&2
    echo "$data $port"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "Azurite exited at start:" >&2; cat "$data/azurite.log" >&2; exit 1
  fi
  sleep 0.2
done
echo "Azurite did not answer on 127.0.0.1:$port within 20 s" >&2
kill "$pid" 2>/dev/null || true
exit 1
