#!/usr/bin/env bash
# Load test of `GET /v1/jobs/{id}` (a completed job with 2 artifacts, so 2 signed URLs per
# answer) against the server example on the memory store, with wrk on the same machine.
# Loopback only. Needs wrk (Debian package `wrk`).
#
#   bash benches/http_get.sh            # 10 s per run
#   DURATION=30s bash benches/http_get.sh
#   SERVER=/tmp/server-old bash benches/http_get.sh   # another build, to compare
set -euo pipefail
cd "$(dirname "$0")/.."
port=${PORT:-18181}
duration=${DURATION:-10s}
binary=${SERVER:-}
if [ -z "$binary" ]; then
    cargo build --release --quiet --features http --example server
    binary=./target/release/examples/server
fi
"$binary" --store memory --addr "127.0.0.1:$port" >/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
base="http://127.0.0.1:$port/v1"
for _ in $(seq 1 50); do curl -sf "$base/openapi.json" -o /dev/null && break; sleep 0.1; done
auth="Authorization: Bearer demo-acme"
id=$(curl -sf -H "$auth" -H 'content-type: application/json' \
    -d '{"type": "RENDER", "input": {"title": "bench"}}' "$base/jobs" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
curl -sf -H "$auth" "$base/jobs/$id?wait=5" -o /dev/null
echo "GET $base/jobs/$id"
for spec in "1 16" "1 64" "2 64"; do
    set -- $spec
    echo "== wrk -t$1 -c$2 -d$duration"
    wrk -t"$1" -c"$2" -d"$duration" --latency -H "$auth" "$base/jobs/$id" |
        grep -E "Requests/sec|Latency  |50%|99%|Non-2xx"
done
