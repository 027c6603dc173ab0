-- Cached read: the same path every request (a user Turnstile or the baseline has cached, or
-- a reference handler's route for it), with a bearer token.
-- args: <path> <access token>
require("report").install()

function init(args)
  wrk.method = "GET"
  wrk.path = args[1]
  wrk.headers["Authorization"] = "Bearer " .. args[2]
end
