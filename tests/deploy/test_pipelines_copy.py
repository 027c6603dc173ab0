"""The chart ships a copy of the repository's pipelines.toml (Helm cannot read outside the chart)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ROOT_FILE = REPO_ROOT / "pipelines.toml"
CHART_COPY = REPO_ROOT / "deploy" / "helm" / "turnstile" / "files" / "pipelines.toml"


@pytest.mark.skipif(not ROOT_FILE.exists(), reason="the repository has no pipelines.toml yet")
def test_chart_copy_matches_the_repository_pipelines_byte_for_byte() -> None:
    assert CHART_COPY.read_bytes() == ROOT_FILE.read_bytes(), (
        "deploy/helm/turnstile/files/pipelines.toml differs from pipelines.toml: copy the root file over it"
    )


def test_chart_copy_exists() -> None:
    assert CHART_COPY.is_file()
