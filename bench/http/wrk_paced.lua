-- wrk script: the bodies of wrk_predict.lua, sent on a fixed schedule (open loop).
--
--   LSTM_SERVE_BENCH_THREAD_RATE=1400 wrk -t2 -c1024 -d20s -s bench/http/wrk_paced.lua URL
--
-- Each wrk thread sends LSTM_SERVE_BENCH_THREAD_RATE requests per second: every request
-- waits (wrk's delay hook) for its slot on the thread's schedule, whatever earlier answers
-- did. With enough connections that some are always free (fast 429s keep them free), the
-- offered rate is the schedule's, so slow answers cannot lower the load they are under.
-- If every connection is busy the schedule slips; compare wrk's request count to rate x
-- duration. Run from the repository root (it loads bench/http/wrk_predict.lua).

dofile("bench/http/wrk_predict.lua")

local ffi = require("ffi")
ffi.cdef([[
  typedef struct { long tv_sec; long tv_nsec; } lstm_serve_timespec;
  int clock_gettime(int clock_id, lstm_serve_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("lstm_serve_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

local predict_init = init
local interval_ms = nil
local next_at = nil

function init(args)
  predict_init(args)
  local rate = tonumber(os.getenv("LSTM_SERVE_BENCH_THREAD_RATE") or "")
  if not rate or rate <= 0 then
    error("set LSTM_SERVE_BENCH_THREAD_RATE to the requests per second of each thread")
  end
  interval_ms = 1000 / rate
end

function delay()
  local now = now_ms()
  if next_at == nil then next_at = now end
  local slot = next_at
  next_at = next_at + interval_ms
  if slot <= now then return 0 end
  return slot - now
end
