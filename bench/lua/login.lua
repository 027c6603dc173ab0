-- Log in with email and password (argon2 verify, token pair issued).
-- args: <email> <password>
require("report").install()

function init(args)
  wrk.method = "POST"
  wrk.path = "/api/v1/auth/login"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = string.format('{"email": "%s", "password": "%s"}', args[1], args[2])
end
