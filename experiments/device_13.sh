#!/usr/bin/env bash
# Issue 13's GPU half in one bounded run (about 5 minutes on one H200):
#   - the CUDA tests (tests/test_gpu.py, tests/test_graphs.py);
#   - session-steps/s of the inference thread alone (bench.micro.step_rate), 10,000 live
#     sessions, bundled and 2 x 650 model, CUDA graphs off and on;
#   - the whole engine's one-word feeds/s with 10,000 sessions (engine_bench --parts feeds),
#     same four variants, and a py-spy profile of one of them;
#   - HTTP predict and WebSocket feeds with 1, 2, 4 and 8 API processes (bench.http.api_scaling).
# The device machine has torch but not the web stack: the wheels travel in .whl/, and wrk,
# its LuaJIT, py-spy and the predict bodies in .gpu/ (both git-ignored; see BENCHMARKS.md).
#   run: command "bash experiments/device_13.sh", carry [".whl", ".gpu"]
# Results: $OUT/summary.txt and $OUT/results.tgz (re-packed after every phase, so a run cut
# short still brings back what it finished).
set -u
OUT=${OUT:-runs/device13}
PY=${PY:-python3}
# A dry run on a CPU box checks the script itself: DEV=cpu SESSIONS=1000 WORKERS=1,2
DEV=${DEV:-cuda}
SESSIONS=${SESSIONS:-10000}
WORKERS=${WORKERS:-1,2,4,8}
PHASES=${PHASES:-tests,steps,feeds,profile,predict,scaling,serverprof}  # a rerun can name fewer
want() { [[ ",$PHASES," == *",$1,"* ]]; }
R=runs/dev13
rm -rf "$R" bench/out/api-scaling  # a warm machine keeps the last run's files
mkdir -p "$OUT" "$R"
export PYTHONUNBUFFERED=1 LSTM_SERVE_STATE_KEY=device-run
if [ -d .whl ] && ! "$PY" -c "import fastapi, zmq" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl .gpu/*.whl >"$R/pip.log" 2>&1 || { cat "$R/pip.log"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PWD/.gpu:$PATH
  export LD_LIBRARY_PATH=$PWD/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
ulimit -n 65536 2>/dev/null || ulimit -n 8192
started=$(date +%s)
stamp() { echo "[$(($(date +%s) - started))s] $*" | tee -a "$R/summary.txt"; }
pack() { (cd "$R" && tar czf - .) >"$OUT/results.tgz"; cp "$R/summary.txt" "$OUT/summary.txt"; }
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
  nproc; "$PY" -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
  wrk --version 2>&1 | head -1; } >"$R/env.txt" 2>&1
cat "$R/env.txt" >>"$R/summary.txt"

if want tests; then
stamp "CUDA tests"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_graphs.py \
  >"$R/tests.log" 2>&1
tail -3 "$R/tests.log" | tee -a "$R/summary.txt"
pack
fi

if want steps; then
stamp "step rate (inference thread alone)"
for model in default medium; do
  timeout 90 "$PY" -m bench.micro.step_rate --model models/$model --device $DEV \
    --sessions $SESSIONS --batch-sizes 64,256,1024 --graphs off,on --duration-s 1.5 \
    --json "$R/step_rate_$model.json" 2>>"$R/errors.log" | tee -a "$R/summary.txt"
done
pack
fi

FEEDS=(--parts feeds --device $DEV --feed-sessions $SESSIONS --duration-s 4 --threads 4)
if want feeds; then
stamp "engine feeds, 10,000 sessions"
for model in default medium; do
  for graphs in "" --cuda-graphs; do
    tag=${model}${graphs:+-graphs}
    timeout 90 "$PY" -m bench.micro.engine_bench --model models/$model "${FEEDS[@]}" $graphs \
      --feed-concurrency 1024 --max-batch-size 1024 --json "$R/feeds_$tag.json" \
      2>>"$R/errors.log" | grep feeds | sed "s/^/$tag: /" | tee -a "$R/summary.txt"
  done
done
timeout 90 "$PY" -m bench.micro.engine_bench --model models/default "${FEEDS[@]}" --cuda-graphs \
  --feed-concurrency 256 --max-batch-size 256 --json "$R/feeds_default-graphs-c256.json" \
  2>>"$R/errors.log" | grep feeds | sed "s/^/default-graphs c256: /" | tee -a "$R/summary.txt"
pack
fi

if want profile; then
stamp "py-spy over 4 s of engine feeds"  # where a feed's time goes on this machine
timeout 90 "$PY" -m bench.micro.engine_bench --model models/default "${FEEDS[@]}" --cuda-graphs \
  --duration-s 10 --feed-concurrency 1024 --max-batch-size 1024 >"$R/profiled.log" 2>&1 &
bench=$!
sleep 6
timeout 20 py-spy record -p "$(pgrep -n -P $bench)" -d 4 -r 200 --threads --format raw -o "$R/feeds.pyspy.txt" \
  >"$R/pyspy.log" 2>&1
wait $bench
grep feeds "$R/profiled.log" | tee -a "$R/summary.txt"
pack
fi

if want predict; then
stamp "engine alone: predict (bodies, k=5)"
timeout 90 "$PY" -m bench.micro.engine_bench --model models/default --device $DEV --cuda-graphs \
  --parts lone,predict --levels 64,256 --batch-sizes 256 --duration-s 3 \
  --bodies .gpu/bodies.jsonl --json "$R/engine_predict.json" 2>>"$R/errors.log" \
  | grep -E "lone|predict" | tee -a "$R/summary.txt"
pack
fi

if want scaling; then
stamp "API processes 1, 2, 4, 8 (graphs on)"
timeout 300 "$PY" -m bench.http.api_scaling --workers $WORKERS --device $DEV --cuda-graphs \
  --bodies .gpu/bodies.jsonl --connections 256 --wrk-threads 4 --duration-s 6 \
  --ws-sessions 2000 --ws-processes 4 \
  --max-queue 8192 --max-batch-size 1024 --out "$R/api_scaling.json" 2>>"$R/errors.log" \
  | tee -a "$R/summary.txt"
cp -r bench/out/api-scaling "$R/" 2>/dev/null
fi
if want serverprof; then
stamp "py-spy of the engine process under wrk, 4 API processes"
LSTM_SERVE_PORT=18777 LSTM_SERVE_API_WORKERS=4 LSTM_SERVE_DEVICE=$DEV LSTM_SERVE_CUDA_GRAPHS=1 \
  LSTM_SERVE_MAX_BATCH_SIZE=1024 LSTM_SERVE_MAX_QUEUE=8192 LSTM_SERVE_LOG_LEVEL=warning \
  timeout 80 "$PY" -m service >"$R/serverprof-server.log" 2>&1 &
sup=$!
"$PY" -c "import httpx, time
for _ in range(120):
    try:
        if httpx.get('http://127.0.0.1:18777/readyz').status_code == 200: break
    except httpx.HTTPError: pass
    time.sleep(0.5)"
super=$(pgrep -n -P $sup)
engine=$(pgrep -o -P "$super" -f spawn_main)
LSTM_SERVE_BENCH_BODIES=.gpu/bodies.jsonl timeout 30 wrk -t4 -c256 -d10s --latency \
  -s bench/http/wrk_bodies.lua http://127.0.0.1:18777 >"$R/serverprof-wrk.txt" 2>&1 &
sleep 4
timeout 20 py-spy record -p "$engine" -d 4 -r 200 --threads --format raw \
  -o "$R/engine.pyspy.txt" >"$R/serverprof-pyspy.log" 2>&1
wait %2 2>/dev/null; kill -TERM "$super" 2>/dev/null; wait $sup
grep -E "Requests/sec|99%" "$R/serverprof-wrk.txt" | tee -a "$R/summary.txt"
pack
fi
stamp "all done"
pack
tail -5 "$R/errors.log" 2>/dev/null
