from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

import plugins.data_fetch
from app.converter import converter, structure_errors
from app.hookspecs import hookimpl
from app.pipeline.config import PipelineFileError
from app.pipeline.registry import load_checked
from app.plugins import make_plugin_manager
from plugins.data_fetch.config import DataFetchConfig


def test_minimal_config_answers_200() -> None:
    config = converter.structure({"call": "GET /api/v1/users/{id}"}, DataFetchConfig)

    assert (config.method, config.path, config.status, config.response) == ("GET", "/api/v1/users/{id}", 200, None)


def test_full_config() -> None:
    config = converter.structure(
        {"call": "POST /api/v1/users/", "status": 201, "response": "User"}, DataFetchConfig
    )

    assert (config.method, config.status, config.response) == ("POST", 201, "User")


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, ["call: required setting missing"]),
        ({"call": "FETCH /x"}, ["call must be 'METHOD /path' with METHOD one of GET, POST, PUT, PATCH, "
                                "DELETE, got 'FETCH /x'"]),
        ({"call": "GET users"}, ["call must be 'METHOD /path' with METHOD one of GET, POST, PUT, PATCH, "
                                 "DELETE, got 'GET users'"]),
        ({"call": "GET /u/{id:int}"}, ["call: bad template '/u/{id:int}': placeholder {id:int} must be a bare "
                                       "name such as {id}"]),
        ({"call": "GET /u/{id}", "status": 500}, ["'status' must be <= 299: 500"]),
        ({"call": "GET /u/{id}", "status": "200"}, ["status: expected an integer, got '200'"]),
        ({"call": "GET /u/{id}", "cache": True}, ["cache: unknown setting 'cache'"]),
    ],
)
def test_bad_config_is_reported_per_field(settings: dict[str, Any], expected: list[str]) -> None:
    assert structure_errors(settings, DataFetchConfig) == expected


def test_unregistered_response_model_is_reported_with_its_line(tmp_path: Path) -> None:
    from app.pipeline.config import PipelineFileError
    from app.pipeline.registry import load_checked
    from app.plugins import make_plugin_manager

    path = tmp_path / "pipelines.toml"
    path.write_text('[[pipelines]]\nname = "a"\nroute = "GET /a"\nsteps = [\n'
                    '  { use = "data-fetch", call = "GET /a", response = "Nope" },\n]\n')
    with pytest.raises(PipelineFileError) as info:
        load_checked(path, make_plugin_manager())
    assert len(info.value.errors) == 1
    assert str(info.value.errors[0]).startswith(
        f"{path}:5: pipeline 'a', step 1 (data-fetch): response: model 'Nope' is not registered (known: "
    )


@attrs.frozen(kw_only=True)
class Thing:
    """A thing."""

    id: int


def location_problems(tmp_path: Path, settings: str) -> list[str]:
    path = tmp_path / "pipelines.toml"
    path.write_text(f"""
[[pipelines]]
name = "make_thing"
route = "POST /things"
steps = [{{ use = "data-fetch", call = "POST /api/v1/things", status = 201, {settings} }}]
""")

    class Models:
        @hookimpl
        def register_models(self) -> list[type[Any]]:
            return [Thing]

    pm = make_plugin_manager(entrypoints=False, extra=[plugins.data_fetch, Models()])
    try:
        load_checked(path, pm)
    except PipelineFileError as exc:
        return [error.message.split(": ", 1)[1] for error in exc.errors]
    return []


def test_location_names_fields_of_a_response_model(tmp_path: Path) -> None:
    # The same checks `turnstile check` makes: a Location template needs the answer's fields.
    assert location_problems(tmp_path, 'location = "/things/{id}", response = "Thing"') == []
    assert location_problems(tmp_path, 'location = "/things/{name}", response = "Thing"') == [
        "location: placeholder {name} names no field of the answer (Thing)"
    ]
    assert location_problems(tmp_path, 'location = "/things/{id}"') == [
        "location: names fields of the answer, so it needs a response model (and a status other than 204)"
    ]
