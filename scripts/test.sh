#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Python 3.11:
# a virtualenv, the project with its dev extra, Redis and RabbitMQ (installed and started
# unless REDIS_URL / RABBITMQ_URL point at reachable servers), then ruff, mypy and pytest.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'
# A team's plugin package (its own pyproject.toml), found through its entry point like any other.
.venv/bin/python -m pip install -q -e examples/acme-plugin

reachable() {  # host port
  .venv/bin/python - "$1" "$2" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}
hostport() {  # URL -> "host port" (default port given)
  .venv/bin/python - "$1" "$2" <<'PY'
import sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
print(u.hostname or "127.0.0.1", u.port or int(sys.argv[2]))
PY
}

export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export RABBITMQ_URL=${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/}
# Install (Debian packages, only what is missing) and start the servers that are not reachable;
# wrk drives the benchmark's quick run.
need=(wrk)
# shellcheck disable=SC2046
reachable $(hostport "$REDIS_URL" 6379) || need+=(redis)
# shellcheck disable=SC2046
reachable $(hostport "$RABBITMQ_URL" 5672) || need+=(rabbitmq)
bash scripts/services.sh install "${need[@]}"
for service in "${need[@]:1}"; do bash scripts/services.sh start "$service"; done

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/pytest "$@"
