#!/usr/bin/env bash
# The whole GPU work of issues #2 and #8 in one bounded run (about 7 minutes on one H100):
#   - the 2 x 650 tied LSTM (recipe medium-wd, then weight averaging), valid/test perplexity;
#   - experiment 2: every cell on PTB at 2 x 200, recipe small, 13 epochs, all at once;
#   - experiment 1: long dependencies, every cell, on the GPU;
#   - the GPU test and an engine benchmark on CUDA, once the GPU is quiet again.
# Results go to runs/device/ (or $OUT) as results.tgz.part-* plus summary.txt.
#   DATA=../shared/data/ptb bash experiments/device_run.sh
# Measured on its first run (2026-11-27, one H100, no MPS): the 13 training processes
# time-slice the GPU, so each ran 5-10x slower than alone (2 x 650: 71-112 s per epoch
# instead of 15 s). Give the 2 x 650 model the GPU to itself when time is short.
set -u
OUT=${OUT:-runs/device}
PY=${PY:-python3}
DATA=${DATA:-.devdata/ptb}
R=runs/dev
rm -rf "$R"  # a warm machine keeps the last run's files
mkdir -p "$OUT" "$R"
export PYTHONUNBUFFERED=1
# the tests read ../shared/data like CI does
if [ ! -d ../shared/data/ptb ]; then mkdir -p ../shared/data && cp -r "$DATA" ../shared/data/; fi
{ date -u; nvidia-smi; nproc; "$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"; } >"$R/env.txt" 2>&1
started=$(date +%s)
stamp() { echo "[$(($(date +%s) - started))s] $*"; }

stamp "GPU test"
timeout 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py >"$R/test_gpu.log" 2>&1
tail -3 "$R/test_gpu.log"

medium() {
  local id=ptb-lstm-2x650-tied
  timeout 260 "$PY" -m models.train --recipe medium-wd --data "$DATA" --out "$R/medium" \
    --threads 2 --max-time-s 200 --anneal-epochs 0 --model-id $id
  timeout 150 "$PY" -m models.train --recipe medium-wd --data "$DATA" --out "$R/medium-avg" \
    --resume "$R/medium/last" --average --threads 2 --max-time-s 90 --model-id $id
  local best="$R/medium-avg/best"
  [ -f "$best/config.json" ] || best="$R/medium/best"
  cp -r "$best" "$R/medium-final"
  for split in valid test; do
    timeout 60 "$PY" -m models.evaluate --checkpoint "$R/medium-final" --data "$DATA" --split $split --device cuda
  done
}
medium >"$R/medium.log" 2>&1 &

timeout 330 "$PY" -m experiments.ptb_cells --device cuda --threads 1 --data "$DATA" --out "$R/cells" \
  --epochs 13 --max-time-s 260 --json "$R/ptb_cells.json" >"$R/cells.log" 2>&1 &

LD=(--device cuda --steps 2000 --batch 256 --test-size 2000)
timeout 320 "$PY" -m experiments.long_dependency --cells lstm,gru,rnn "${LD[@]}" \
  --json "$R/ld_fused.json" >"$R/ld_fused.log" 2>&1 &
for cell in lstm_peephole lstm_cifg; do
  timeout 320 "$PY" -m experiments.long_dependency --cells $cell --jobs 3 "${LD[@]}" \
    --json "$R/ld_$cell.json" >"$R/ld_$cell.log" 2>&1 &
done
wait
stamp "training done"

timeout 80 "$PY" -m bench.micro.engine_bench --device cuda --parts lone,predict,feeds,generation \
  --duration-s 2 --json "$R/engine_cuda.json" >"$R/engine_cuda.log" 2>&1
stamp "engine bench done"

{
  cat "$R/env.txt"; tail -3 "$R/test_gpu.log"
  grep -E "^epoch [0-9]+:|perplexity|budget|extending" "$R/medium.log"
  tail -8 "$R/cells.log"; for f in "$R"/ld_*.log; do tail -6 "$f"; done
  grep -v "^ *$" "$R/engine_cuda.log" | tail -30
} >"$OUT/summary.txt" 2>&1
(cd "$R" && tar czf - medium-final env.txt ./*.log ./*.json cells/*.log) | split -b 15M - "$OUT/results.tgz.part-"
cat "$OUT/summary.txt"
ls -la "$OUT"
stamp "all done"
