-- wrk script: POST /v1/predict with the bodies of a JSON-lines file, round robin per thread.
--
--   .venv/bin/python -m bench.http.bodies            # writes bench/out/bodies.jsonl
--   LSTM_SERVE_BENCH_BODIES=bench/out/bodies.jsonl \
--     wrk -t2 -c64 -d15s --latency -s bench/http/wrk_bodies.lua http://127.0.0.1:8000
--
-- LSTM_SERVE_BENCH_PATH changes the path (LitServe serves /predict). Non-2xx are counted
-- by wrk itself ("Non-2xx or 3xx responses").

local path = os.getenv("LSTM_SERVE_BENCH_PATH") or "/v1/predict"
local file = os.getenv("LSTM_SERVE_BENCH_BODIES") or "bench/out/bodies.jsonl"
local bodies = {}
for line in io.lines(file) do
  if #line > 0 then bodies[#bodies + 1] = line end
end
local counter = 0

function init(args)
  counter = math.random(#bodies)
end

function request()
  counter = counter % #bodies + 1
  return wrk.format("POST", path, { ["Content-Type"] = "application/json" }, bodies[counter])
end
