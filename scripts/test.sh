#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Python 3.11 and Node.js:
# a virtualenv, the project with its dev extra at the locked versions (constraints.txt), Redis,
# a 3-master Redis Cluster and RabbitMQ (installed and started unless REDIS_URL /
# REDIS_CLUSTER_URL / RABBITMQ_URL point at reachable servers), wrk, Chromium, promtool,
# busybox and the AsyncAPI parser (npm), then ruff, mypy and pytest: once on standalone Redis
# (the multi-instance suite uses the cluster too), then the Redis suites (cache, auth, rate
# limits, outbox and events) again on the cluster. Extra arguments go to both pytest runs;
# TURNSTILE_CLUSTER_RUN=0 skips the second.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# the versions in constraints.txt, the ones the image is built with (scripts/lock.sh)
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
# A team's plugin package (its own pyproject.toml), found through its entry point like any other,
# for the tests only: on their path (its metadata made here; tests/conftest.py), never installed in .venv, so
# the run command serves Turnstile alone. (Earlier checkouts installed it: taken out again.)
if .venv/bin/python -m pip show -q acme-turnstile-plugin 2>/dev/null; then
  .venv/bin/python -m pip uninstall -q -y acme-turnstile-plugin
fi
(cd examples/acme-plugin && ../../.venv/bin/python -W ignore -c 'import setuptools; setuptools.setup()' -q egg_info)

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
export REDIS_CLUSTER_URL=${REDIS_CLUSTER_URL:-redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002}
export RABBITMQ_URL=${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/}
# The cluster's nodes, for scripts/services.sh (which starts, stops and restarts them).
TURNSTILE_REDIS_CLUSTER_PORTS=$(.venv/bin/python - "$REDIS_CLUSTER_URL" <<'PY'
import sys
hosts = sys.argv[1].split("://", 1)[1].rpartition("@")[2].split("/", 1)[0]
print(" ".join(item.rpartition(":")[2] for item in hosts.split(",")))
PY
)
export TURNSTILE_REDIS_CLUSTER_PORTS
# Install (Debian packages, only what is missing) and start the servers that are not reachable;
# wrk drives the benchmark's quick run, Chromium loads the events page, promtool checks and
# unit-tests the chart's alert rules, busybox runs the chart's `helm test` script.
tools=(wrk chromium promtool busybox)
servers=()
# shellcheck disable=SC2046
reachable $(hostport "$REDIS_URL" 6379) || servers+=(redis)
# shellcheck disable=SC2046
reachable $(hostport "$RABBITMQ_URL" 5672) || servers+=(rabbitmq)
bash scripts/services.sh install "${tools[@]}" "${servers[@]}" redis
for service in "${servers[@]}"; do
  # A broker this run starts begins empty: the queues earlier runs left behind would only slow
  # its start while it recovers them.
  if [ "$service" = rabbitmq ]; then bash scripts/services.sh reset rabbitmq; fi
  bash scripts/services.sh start "$service"
done
bash scripts/services.sh start cluster  # returns at once when it is up already

# The official AsyncAPI parser the tests check the events' document with (pinned by its lock
# file; install scripts off: the parser needs none).
if [ ! -d tests/asyncapi/node/node_modules ]; then
  (cd tests/asyncapi/node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
.venv/bin/pytest "$@"
if [ "${TURNSTILE_CLUSTER_RUN:-1}" != 0 ]; then
  echo "== pytest on the Redis Cluster"
  REDIS_URL=$REDIS_CLUSTER_URL .venv/bin/pytest "$@" \
    tests/clients/test_cache.py tests/clients/test_outbox.py tests/clients/test_counters.py \
    tests/plugins/cache tests/plugins/auth tests/plugins/rate_limit \
    tests/integration/test_cache.py tests/integration/test_auth_api.py tests/integration/test_sessions.py \
    tests/integration/test_events.py tests/integration/test_subscriptions.py
fi
