#!/usr/bin/env bash
# How long a *new* connection waits during open-loop overload: paced wrk offers RATE
# req/s (default 3200) over 1,024 connections for 10 s against a server with a queue of
# 256; 3 s in, three curls open fresh connections one second apart and print their times.
# Extra arguments are server settings, e.g.:
#   bash bench/http/overload_new_connections.sh LSTM_SERVE_SHED_LOOP_LAG_MS=0   # shedding off
set -u
cd "$(dirname "$0")/../.." || exit 1
port=${PORT:-8078}
env LSTM_SERVE_PORT="$port" LSTM_SERVE_MAX_QUEUE=256 LSTM_SERVE_LOG_LEVEL=warning "$@" \
  .venv/bin/lstm-serve >/tmp/overload_new_connections.log 2>&1 &
server=$!
for _ in $(seq 120); do curl -sf "localhost:$port/readyz" >/dev/null && break; sleep 0.5; done
LSTM_SERVE_BENCH_THREAD_RATE=$((${RATE:-3200} / 2)) wrk -t2 -c1024 -d10s --timeout 10s \
  -s bench/http/wrk_paced.lua "http://127.0.0.1:$port" >/tmp/overload_new_connections.wrk &
load=$!
sleep 3
for _ in 1 2 3; do
  curl -s -o /dev/null -X POST -H 'content-type: application/json' \
    -d '{"text": "the company said"}' "http://127.0.0.1:$port/v1/predict" \
    -w "new connection: connect %{time_connect} s, answer after %{time_total} s, status %{http_code}\n" &
  sleep 1
done
wait "$load"
grep -E "requests in|status" /tmp/overload_new_connections.wrk
kill -TERM "$server"
wait "$server"
