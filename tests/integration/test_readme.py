"""The README's curl session, run as printed against a live `turnstile serve`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.test_cli import free_port
from tests.services import ROOT

README = ROOT / "README.md"
SESSION = re.compile(r"<!-- curl-session:.*?-->\n```sh\n(.*?)```", re.DOTALL)


def readme_session() -> str:
    match = SESSION.search(README.read_text())
    assert match is not None, "the README lost its curl session"
    return match.group(1)


@pytest.mark.timeout(90)
def test_readme_curl_session_works_as_printed(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    port = free_port()
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TURNSTILE_VAR_DIR": str(tmp_path / "var"),
        "PIPELINES_FILE": str(ROOT / "pipelines.toml"),
        "TURNSTILE_ADMIN_EMAIL": "admin@example.com",
        "TURNSTILE_ADMIN_PASSWORD": "change-me-admin-1",
        "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "8", "ARGON2_PARALLELISM": "1",
        "PORT": str(port), "HOST": "127.0.0.1", "TURNSTILE_DRAIN_SECONDS": "0.1",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait = f"until curl -sf localhost:{port}/readyz >/dev/null; do sleep 0.2; done"
        subprocess.run(["bash", "-c", wait], timeout=30, check=True)
        script = "set -euo pipefail\n" + readme_session().replace("localhost:8080", f"localhost:{port}")
        result = subprocess.run(
            ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False,
        )
    finally:
        server.terminate()
        server.wait(30)
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert '"email":"ann@example.com"' in lines[0]
    assert '"roles":["user"]' in lines[0]
    assert lines[1].lower() == "x-cache: miss"
    assert '"full_name":"Ann Smith"' in lines[2]
    # forgot-password, reset, the old session, the token again; then the deletion
    assert lines[3:] == ["202", "204", "401", "400", "204", "401"]
