#!/usr/bin/env bash
# Run Turnstile on its embedded defaults (in-process data service on SQLite, memory cache,
# events to the log and ./var/events.jsonl) from a fresh Debian machine with Python 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# at the versions the tests and the image run with (constraints.txt): the Redis client's repairs
# (app/clients/redis/patches.py) are written against its pinned release
.venv/bin/python -m pip install -q -c constraints.txt -e .
exec .venv/bin/turnstile serve "$@"
