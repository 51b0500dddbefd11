#!/usr/bin/env bash
# A/B server settings under the same load, back to back in one run (this machine is noisy:
# compare the ratio, and alternate rounds). Each variant is LABEL[@CHECKOUT][:ENV=V,ENV=V]:
# settings as environment variables, and optionally another checkout's code (for example a
# `git worktree add /tmp/before HEAD~1`), served with this checkout's virtualenv and model.
#
#   bash bench/server_ab.sh predict base:LSTM_SERVE_GIL_SWITCH_INTERVAL_MS=5 new
#   bash bench/server_ab.sh ws base:LSTM_SERVE_THREADS=2 new
#
# predict: wrk, 64 connections, 15 s, the varied bodies of bench/wrk_predict.lua.
# ws: lstm-serve-bench ws, 1,000 sessions feeding back to back, 20 s, 2 client processes.
# ROUNDS (default 2) repeats the whole list; results go to bench/results/ab/<scenario>/.
set -u
cd "$(dirname "$0")/.." || exit 1
scenario=$1
shift
rounds=${ROUNDS:-2}
port=${PORT:-8077}
out=bench/results/ab/$scenario
mkdir -p "$out"
for round in $(seq "$rounds"); do
  for variant in "$@"; do
    name=${variant%%:*}
    label=${name%%@*}
    code=$PWD
    [[ $name == *@* ]] && code=${name#*@}
    envs=()
    [[ $variant == *:* ]] && IFS=, read -r -a envs <<<"${variant#*:}"
    env PYTHONPATH="$code" LSTM_SERVE_PORT="$port" LSTM_SERVE_LOG_LEVEL=warning \
      LSTM_SERVE_MODEL_PATH="$PWD/models/default" "${envs[@]}" \
      .venv/bin/python -P -c "import service.cli as c; print(c.__file__, flush=True); c.main()" \
      >"/tmp/server_ab_$label.log" 2>&1 &
    pid=$!
    for _ in $(seq 120); do curl -sf "localhost:$port/readyz" >/dev/null && break; sleep 0.5; done
    case $scenario in
      predict)
        wrk -t1 -c64 -d3s -s bench/wrk_predict.lua "http://127.0.0.1:$port" >/dev/null
        wrk -t1 -c64 -d15s --latency -s bench/wrk_predict.lua "http://127.0.0.1:$port" \
          >"$out/${label}_$round.txt"
        printf '%-12s round %d: %8s req/s  p99 %s\n' "$label" "$round" \
          "$(awk '/Requests\/sec/ {print $2}' "$out/${label}_$round.txt")" \
          "$(awk '$1 == "99%" {print $2}' "$out/${label}_$round.txt")"
        ;;
      ws)
        .venv/bin/lstm-serve-bench ws --url "http://127.0.0.1:$port" --concurrency 1000 \
          --processes 2 --duration-s 20 --warmup-s 3 --json "$out/${label}_$round.json" \
          >"$out/${label}_$round.txt" 2>&1
        printf '%-12s round %d: %s\n' "$label" "$round" "$(grep -E "ws_feed" "$out/${label}_$round.txt" | head -1)"
        ;;
      *) echo "unknown scenario $scenario (predict or ws)"; kill "$pid"; exit 2 ;;
    esac
    kill -TERM "$pid"
    wait "$pid"
  done
done
