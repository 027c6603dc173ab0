-- Cached read: the same user id every request, with a bearer token.
-- args: <user id> <access token>
require("report").install()

function init(args)
  wrk.method = "GET"
  wrk.path = "/api/v1/users/" .. args[1]
  wrk.headers["Authorization"] = "Bearer " .. args[2]
end
