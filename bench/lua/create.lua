-- Create a user per request (admin): argon2 hash, data service insert, user.created event.
-- Emails are unique per run through <prefix> and a counter; a 429 or 503 is retried after
-- its Retry-After. args: <prefix> <access token>
require("report").install_honouring_retry_after()

local headers = {["Content-Type"] = "application/json"}
local prefix, n = "", 0

function init(args)
  prefix = args[1]
  headers["Authorization"] = "Bearer " .. args[2]
end

function request()
  n = n + 1
  local body = string.format(
    '{"email": "%s-%d@bench.example.com", "password": "bench-password-1", "full_name": "Bench %d"}',
    prefix, n, n)
  return wrk.format("POST", "/api/v1/users", headers, body)
end
