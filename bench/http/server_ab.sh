#!/usr/bin/env bash
# A/B server settings under the same load, back to back in one run (this machine is noisy:
# compare the ratio, and alternate rounds). Each variant is LABEL[@CHECKOUT][:ENV=V,ENV=V]:
# settings as environment variables, and optionally another checkout's code (for example a
# `git worktree add /tmp/before HEAD~1`), served with this checkout's virtualenv and model.
#
#   bash bench/http/server_ab.sh predict base:LSTM_SERVE_GIL_SWITCH_INTERVAL_MS=5 new
#   bash bench/http/server_ab.sh ws base:LSTM_SERVE_THREADS=2 new
#
# predict: wrk, 64 connections, 15 s, the varied bodies of bench/http/wrk_predict.lua.
# ws: lstm-serve-bench ws, 1,000 sessions feeding back to back, 20 s, 2 client processes.
# wsopen: bench/wsload (C), 1,000 sessions: 6 s back to back, then an open loop at RATE
#   feeds/s in all (default 4900) for 18 s, the first 3 s left out.
# overload: paced wrk (bench/http/wrk_paced.lua), RATE req/s in all (default 2400) over 1,024
#   connections for 15 s, against LSTM_SERVE_MAX_QUEUE=256 (add it to a variant to change).
# ROUNDS (default 2) repeats the whole list; results go to bench/out/ab/<scenario>/ (git-ignored).
# Each line also gives the server's CPU per model row (a predict or a feed), from /proc: the
# supervisor and all its children (the engine process and the API processes) together.
set -u
cd "$(dirname "$0")/../.." || exit 1
scenario=$1
shift
rounds=${ROUNDS:-2}
port=${PORT:-8077}
out=bench/out/ab/$scenario
mkdir -p "$out"
# CPU-seconds (utime+stime) of PID and its children (engine and API processes).
tree_cpu() {
  local tick pid
  tick=$(getconf CLK_TCK)
  for pid in "$1" $(ps -o pid= --ppid "$1"); do
    cat "/proc/$pid/stat" 2>/dev/null
  done | awk -v tick="$tick" '{sub(/^.*\) /, ""); t += ($12 + $13) / tick} END {printf "%.2f", t}'
}

# CPU-seconds of each worker process of PID, oldest first: the engine (the supervisor
# starts it first), then the API processes.
worker_cpus() {
  local tick child
  tick=$(getconf CLK_TCK)
  for child in $(ps -o pid= --ppid "$1"); do
    grep -q spawn_main "/proc/$child/cmdline" 2>/dev/null && cat "/proc/$child/stat"
  done | awk -v tick="$tick" '{sub(/^.*\) /, ""); print $20, ($12 + $13) / tick}' |
    sort -n | awk '{printf "%s ", $2}'
}

# Requests and feeds the model has answered so far (one batch row each), from /metrics.
model_rows() {
  curl -s "localhost:$port/metrics" |
    awk '/^lstm_serve_batch_size_sum/ {n += $2} END {printf "%d", n}'
}

# Server CPU microseconds per request since BEFORE (CPU-seconds, all processes together;
# WORKERS_BEFORE: worker_cpus then), and the engine's and the API processes' shares.
cpu_per_request() {
  local pid=$1 before=$2 requests=$3 workers_before=$4
  awk -v a="$before" -v b="$(tree_cpu "$pid")" -v n="$requests" \
    -v wa="$workers_before" -v wb="$(worker_cpus "$pid")" 'BEGIN {
      if (n <= 0) exit
      split(wa, x, " "); k = split(wb, y, " ")
      for (i = 2; i <= k; i++) api += y[i] - x[i]
      printf "server CPU/request: %.0f us (all processes; engine %.0f, API processes %.0f)",
        (b - a) * 1e6 / n, (y[1] - x[1]) * 1e6 / n, api * 1e6 / n }'
}

for round in $(seq "$rounds"); do
  for variant in "$@"; do
    name=${variant%%:*}
    label=${name%%@*}
    code=$PWD
    [[ $name == *@* ]] && code=${name#*@}
    envs=()
    [[ $variant == *:* ]] && IFS=, read -r -a envs <<<"${variant#*:}"
    queue=()
    [[ $scenario == overload ]] && queue=(LSTM_SERVE_MAX_QUEUE=256)
    env PYTHONPATH="$code" LSTM_SERVE_PORT="$port" LSTM_SERVE_LOG_LEVEL=warning "${queue[@]}" \
      LSTM_SERVE_MODEL_PATH="$PWD/models/default" "${envs[@]}" \
      .venv/bin/python -P -c "import service.cli as c; print(c.__file__, flush=True); c.main()" \
      >"/tmp/server_ab_$label.log" 2>&1 &
    pid=$!
    for _ in $(seq 120); do curl -sf "localhost:$port/readyz" >/dev/null && break; sleep 0.5; done
    before=""
    case $scenario in
      predict)
        wrk -t1 -c64 -d3s -s bench/http/wrk_predict.lua "http://127.0.0.1:$port" >/dev/null
        before=$(tree_cpu "$pid")
        workers_before=$(worker_cpus "$pid")
        rows_before=$(model_rows)
        wrk -t1 -c64 -d15s --latency -s bench/http/wrk_predict.lua "http://127.0.0.1:$port" \
          >"$out/${label}_$round.txt"
        answered=$(($(model_rows) - rows_before))
        printf '%-12s round %d: %8s req/s  p99 %-9s %s\n' "$label" "$round" \
          "$(awk '/Requests\/sec/ {print $2}' "$out/${label}_$round.txt")" \
          "$(awk '$1 == "99%" {print $2}' "$out/${label}_$round.txt")" \
          "$(cpu_per_request "$pid" "$before" "$answered" "$workers_before")"
        ;;
      ws)
        before=$(tree_cpu "$pid")
        workers_before=$(worker_cpus "$pid")
        rows_before=$(model_rows)
        .venv/bin/lstm-serve-bench ws --url "http://127.0.0.1:$port" --concurrency 1000 \
          --processes 2 --duration-s 20 --warmup-s 3 --json "$out/${label}_$round.json" \
          >"$out/${label}_$round.txt" 2>&1
        answered=$(($(model_rows) - rows_before))
        printf '%-12s round %d: %s\n    %s\n' "$label" "$round" \
          "$(grep -E "ws_feed" "$out/${label}_$round.txt" | head -1)" \
          "$(cpu_per_request "$pid" "$before" "$answered" "$workers_before")"
        ;;
      wsopen)
        .venv/bin/python -m bench.http.wsload --url "http://127.0.0.1:$port" --duration-s 6 \
          --json "$out/${label}_${round}_closed.json" >/dev/null 2>&1
        before=$(tree_cpu "$pid")
        workers_before=$(worker_cpus "$pid")
        rows_before=$(model_rows)
        .venv/bin/python -m bench.http.wsload --url "http://127.0.0.1:$port" \
          --rate "${RATE:-4900}" --duration-s 18 --json "$out/${label}_$round.json" \
          >"$out/${label}_$round.txt" 2>&1
        answered=$(($(model_rows) - rows_before))
        printf '%-12s round %d: %s\n    %s\n' "$label" "$round" \
          "$(grep -E "open loop" "$out/${label}_$round.txt" | sed 's/^wsload: //' | head -1)" \
          "$(cpu_per_request "$pid" "$before" "$answered" "$workers_before")"
        ;;
      overload)
        LSTM_SERVE_BENCH_THREAD_RATE=$((${RATE:-2400} / 2)) wrk -t2 -c1024 -d15s --timeout 10s \
          --latency -s bench/http/wrk_paced.lua "http://127.0.0.1:$port" >"$out/${label}_$round.txt"
        printf '%-12s round %d: %s answers, %s x 429, p50 %s p99 %s, socket errors: %s\n' \
          "$label" "$round" "$(awk '/requests in/ {print $1}' "$out/${label}_$round.txt")" \
          "$(grep -oP '429=\K[0-9]+' "$out/${label}_$round.txt" || echo 0)" \
          "$(awk '$1 == "50%" {print $2}' "$out/${label}_$round.txt")" \
          "$(awk '$1 == "99%" {print $2}' "$out/${label}_$round.txt")" \
          "$(grep -oP 'Socket errors: \K.*' "$out/${label}_$round.txt" || echo none)"
        ;;
      *) echo "unknown scenario $scenario (predict, ws, wsopen or overload)"; kill "$pid"; exit 2 ;;
    esac
    kill -TERM "$pid"
    wait "$pid"
  done
done
