-- Uncached read: a fresh user id every request (ids from <first id> upwards, each read once,
-- so every request misses the cache and goes to the data service).
-- args: <first id> <access token>
require("report").install()

local headers = {}
local next_id = 0
last_id = nil

function init(args)
  next_id = tonumber(args[1])
  headers["Authorization"] = "Bearer " .. args[2]
end

function request()
  local id = next_id
  next_id = next_id + 1
  last_id = id
  return wrk.format("GET", "/api/v1/users/" .. id, headers)
end
