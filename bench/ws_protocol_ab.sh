#!/usr/bin/env bash
# A/B uvicorn's WebSocket implementations: 1,000 sessions feeding back to back, 20 s each.
# Usage: bash bench/ws_protocol_ab.sh auto websockets-sansio   (server on port 8077)
set -u
cd "$(dirname "$0")/.." || exit 1
mkdir -p bench/results/ws_protocol
for proto in "$@"; do
  LSTM_SERVE_WS_PROTOCOL="$proto" LSTM_SERVE_PORT=8077 .venv/bin/lstm-serve >"/tmp/ws_$proto.log" 2>&1 &
  pid=$!
  for _ in $(seq 60); do curl -sf localhost:8077/readyz >/dev/null && break; sleep 0.5; done
  echo "== $proto"
  .venv/bin/lstm-serve-bench ws --url http://127.0.0.1:8077 --concurrency 1000 --processes 2 \
    --duration-s 20 --warmup-s 3 --json "bench/results/ws_protocol/$proto.json" 2>&1 |
    grep -E "operation|ws_feed|client CPU"
  kill -TERM "$pid"
  wait "$pid"
done
