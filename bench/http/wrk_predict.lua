-- wrk script: POST /v1/predict with varied bodies (sentence prefixes, k), non-2xx counted.
--
--   wrk -t2 -c64 -d30s --latency -s bench/http/wrk_predict.lua http://127.0.0.1:8000
--
-- wrk is a C client (closed loop, keep-alive): it shows the raw HTTP ceiling with far less
-- client CPU than Python. Note: wrk's percentiles are coordinated-omission prone; use
-- lstm-serve-bench --rate for latency under a fixed arrival rate.

local sentences = {
  "The clouds over the harbour were heavy with rain when the ferry finally left the dock.",
  "She said the new bridge would open next spring if the steel arrived on time.",
  "It's hard to tell whether the market will recover before the end of the year.",
  "The committee voted 7 to 2 to delay the decision until more data was available.",
  "Prices for fresh vegetables rose sharply after the storm damaged farms in the valley.",
  "We don't know yet how many people will come to the meeting on Thursday night.",
  "The company reported a profit of 12 million dollars in the third quarter.",
  "Our train was delayed for an hour because a tree had fallen across the tracks.",
  "Investors worried that higher interest rates would slow the growth of new homes.",
  "The airline plans to add 30 new routes and hire hundreds of pilots next year.",
  "Scientists have found a new species of frog in the forests of the southern hills.",
  "Sales of electric cars doubled last year as prices fell and more chargers were built.",
}
local ks = { 1, 5, 5, 10, 20 }
local bodies = {}
local counter = 0
local threads = {}

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

-- Build every body up front: request() runs per request and must stay cheap.
for _, sentence in ipairs(sentences) do
  local words = {}
  for word in sentence:gmatch("%S+") do words[#words + 1] = word end
  for cut = 3, #words - 1, 2 do
    local prefix = table.concat(words, " ", 1, cut)
    local k = ks[(#bodies % #ks) + 1]
    bodies[#bodies + 1] = '{"text": ' .. json_string(prefix) .. ', "k": ' .. k .. '}'
  end
end

function setup(thread)
  thread:set("id", #threads)
  threads[#threads + 1] = thread
end

function init(args)
  statuses = {}
  counter = id * 7919  -- threads start at different bodies
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  local key = os.getenv("LSTM_SERVE_BENCH_API_KEY")
  if key and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
end

function request()
  counter = counter + 1
  return wrk.format(nil, "/v1/predict", nil, bodies[(counter % #bodies) + 1])
end

function response(status, headers, body)
  if status >= 300 then statuses[status] = (statuses[status] or 0) + 1 end
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do total[status] = (total[status] or 0) + n end
  end
  io.write(string.format("%d distinct bodies; non-2xx by status:", #bodies))
  local any = false
  for status, n in pairs(total) do io.write(string.format(" %d=%d", status, n)); any = true end
  io.write(any and "\n" or " none\n")
end
