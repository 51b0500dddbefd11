#!/usr/bin/env bash
# Overload with a C client: 512 connections against a server whose queue holds 64.
# Prints wrk's summary (non-2xx counted by status by the Lua script) and /readyz during it.
#   bash bench/http/overload_wrk.sh [PORT]
set -euo pipefail
cd "$(dirname "$0")/../.."
port=${1:-8199}
LSTM_SERVE_PORT=$port LSTM_SERVE_MAX_QUEUE=64 .venv/bin/python -m service >/tmp/overload-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 150); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
(for _ in $(seq 30); do curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$port/readyz"; sleep 0.5; done) >/tmp/overload-readyz.txt &
poller=$!
wrk -t2 -c512 -d15s --latency -s bench/http/wrk_predict.lua "http://127.0.0.1:$port"
wait $poller
echo "readyz during overload: $(sort /tmp/overload-readyz.txt | uniq -c | tr '\n' ' ')"
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^lstm_serve_requests_total\{.*predict' || true
