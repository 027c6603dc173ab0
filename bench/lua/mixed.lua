-- The memory scenario, read-heavy as a cache-fronted service sees it: of every ten requests,
-- eight cached reads, one uncached read and one PATCH. Uncached ids count up from <first id>
-- (each read once, so each misses); PATCHes cycle over <count> ids from <first patch id>.
-- args: <cached user id> <first id> <first patch id> <count> <access token>
require("report").install()

local read_headers, write_headers = {}, {["Content-Type"] = "application/json"}
local cached, next_id, first_patch, count, n = "", 0, 0, 1, 0
last_id = nil

function init(args)
  cached = "/api/v1/users/" .. args[1]
  next_id, first_patch, count = tonumber(args[2]), tonumber(args[3]), tonumber(args[4])
  read_headers["Authorization"] = "Bearer " .. args[5]
  write_headers["Authorization"] = read_headers["Authorization"]
end

function request()
  n = n + 1
  local turn = n % 10
  if turn > 1 then
    return wrk.format("GET", cached, read_headers)
  elseif turn == 1 then
    local id = next_id
    next_id = next_id + 1
    last_id = id
    return wrk.format("GET", "/api/v1/users/" .. id, read_headers)
  end
  local body = string.format('{"full_name": "mixed %d"}', n)
  return wrk.format("PATCH", "/api/v1/users/" .. (first_patch + (n % count)), write_headers, body)
end
