-- PATCH full_name of users cycling over <count> ids from <first id>: invalidates the cache
-- key and publishes user.updated. args: <first id> <count> <access token>
require("report").install()

local headers = {["Content-Type"] = "application/json"}
local first, count, n = 0, 1, 0

function init(args)
  first, count = tonumber(args[1]), tonumber(args[2])
  headers["Authorization"] = "Bearer " .. args[3]
end

function request()
  local id = first + (n % count)
  n = n + 1
  local body = string.format('{"full_name": "bench %d"}', n)
  return wrk.format("PATCH", "/api/v1/users/" .. id, headers, body)
end
