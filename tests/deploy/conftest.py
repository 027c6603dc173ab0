from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.deploy.rendering import Chart, Manifest

# The Helm SDK is imported lazily: the Dockerfile and pipelines-copy tests run without it.


@pytest.fixture(scope="session")
def chart() -> Iterator[Chart]:
    from tests.deploy import rendering

    with rendering.load_chart() as loaded:
        yield loaded


@pytest.fixture(scope="session")
def minimal_values() -> dict[str, Any]:
    """Chart defaults plus only what production requires."""
    from tests.deploy import rendering

    return rendering.REQUIRED_VALUES


@pytest.fixture(scope="session")
def full_values() -> dict[str, Any]:
    """tests/deploy/values-full.yaml: every optional resource and every existing Secret on."""
    from tests.deploy import rendering

    return rendering.full_values()


@pytest.fixture(scope="session")
def minimal_manifests(chart: Chart, minimal_values: dict[str, Any]) -> list[Manifest]:
    from tests.deploy import rendering

    return rendering.render(chart, minimal_values)


@pytest.fixture(scope="session")
def full_manifests(chart: Chart, full_values: dict[str, Any]) -> list[Manifest]:
    from tests.deploy import rendering

    return rendering.render(chart, full_values)
