#!/usr/bin/env bash
# The benchmark in one command (docs/performance.md): starts Redis, RabbitMQ, the reference
# data service, Turnstile and the baseline, drives each with wrk, prints one table.
#   bash bench/run.sh [--quick] [--duration 10] [--warmup 3] [--rounds 2] [--rss-requests N]
#                     [--workers 2] [--json FILE] [--profile DIR]
# Python: $PYTHON, else the project's .venv (scripts/test.sh makes it), else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null; else sudo apt-get install -y -qq wrk >/dev/null; fi
fi
exec "$PYTHON" -m bench "$@"
