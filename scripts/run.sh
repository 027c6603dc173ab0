#!/usr/bin/env bash
# Run Turnstile on its embedded defaults (in-process data service on SQLite, memory cache,
# events to the log and ./var/events.jsonl) from a fresh Debian machine with Python 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q -e .
exec .venv/bin/turnstile serve "$@"
