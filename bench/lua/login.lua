-- Log in with email and password (argon2 verify, token pair issued); a 429 or 503 is
-- retried after its Retry-After, as a client following the protocol does.
-- args: <email> <password>
require("report").install_honouring_retry_after()

function init(args)
  wrk.method = "POST"
  wrk.path = "/api/v1/auth/login"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = string.format('{"email": "%s", "password": "%s"}', args[1], args[2])
end
