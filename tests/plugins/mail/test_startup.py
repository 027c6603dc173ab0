"""`turnstile serve` refuses to start on bad mail settings or templates, one line each, and
never echoes a password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.app.test_cli import free_port
from tests.services import ROOT, TEST_PYTHONPATH


def serve(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RABBITMQ_URL", "DATA_SERVICE_URL")}
    base.update(
        PIPELINES_FILE=str(ROOT / "pipelines.toml"), TURNSTILE_VAR_DIR=str(tmp_path / "var"),
        HOST="127.0.0.1", PORT=str(free_port()), PYTHONPATH=TEST_PYTHONPATH, **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "app", "serve"], capture_output=True, text=True, timeout=60, env=base, cwd=ROOT,
        check=False,
    )


def test_bad_mail_settings_stop_start_up_with_one_line_each(tmp_path: Path) -> None:
    result = serve(tmp_path, SMTP_URL="smtp+ssl://relay:hunter22@mail.test", MAIL_QUEUE_SIZE="none")
    assert result.returncode == 2, result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("turnstile: ")]
    assert [p.split(":")[1].split("=")[0].strip() for p in problems] == ["SMTP_URL", "MAIL_QUEUE_SIZE"]
    assert "hunter22" not in result.stderr


def test_a_bad_template_override_stops_start_up_naming_the_file(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "verify-email.subject").write_text("Welcome, $first_name\n")
    result = serve(tmp_path, MAIL_TEMPLATES_DIR=str(templates))
    assert result.returncode == 2, result.stderr
    assert "turnstile: MAIL_TEMPLATES_DIR: verify-email.subject: unknown placeholder $first_name" in result.stderr
