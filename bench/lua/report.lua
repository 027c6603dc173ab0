-- Shared by every scenario script: counts statuses per thread (and the 429/503 answers
-- that say when to retry) and, when wrk is done, prints one line "BENCH_JSON {...}" that
-- bench/wrk.py parses.
local M = {}
local threads = {}

statuses = {}
retry_after = 0

function M.setup(thread)
  table.insert(threads, thread)
end

function M.response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if (status == 429 or status == 503) and (headers["Retry-After"] or headers["retry-after"]) then
    retry_after = retry_after + 1
  end
end

local function percentile(latency, p)
  return latency:percentile(p)
end

function M.done(summary, latency, requests)
  local counts, extra, retries = {}, {}, 0
  for _, thread in ipairs(threads) do
    retries = retries + thread:get("retry_after")
    local s = thread:get("statuses")
    for status, n in pairs(s) do
      counts[tostring(status)] = (counts[tostring(status)] or 0) + n
    end
    local last = thread:get("last_id")
    if last then table.insert(extra, last) end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%s": %d', status, n))
  end
  local last_ids = {}
  for _, id in ipairs(extra) do table.insert(last_ids, tostring(id)) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"statuses": {%s}, "last_ids": [%s], "retry_after": %d}\n',
    summary.requests, summary.duration, percentile(latency, 50), percentile(latency, 90),
    percentile(latency, 99), latency.max, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ", "), table.concat(last_ids, ", "), retries))
end

-- Installs setup/response/done as the script's wrk callbacks.
function M.install()
  setup = M.setup
  response = M.response
  done = M.done
end

-- Also makes each connection wait, after a 429 or 503, the seconds its Retry-After says
-- before its next request, as a client following the protocol does (the argon2 scenarios:
-- a client that retries at once is what the rate limits, lifted here, exist to refuse).
-- wrk asks delay() for a connection right after handling its response, so the waits owed
-- are handed out oldest first; its latency counts from the send, so a wait is not billed.
function M.install_honouring_retry_after()
  M.install()
  local waits = {}
  response = function(status, headers, body)
    M.response(status, headers, body)
    local after = headers["Retry-After"] or headers["retry-after"]
    if (status == 429 or status == 503) and after then
      table.insert(waits, (tonumber(after) or 1) * 1000)
    end
  end
  delay = function()
    return table.remove(waits, 1) or 0
  end
end

return M
