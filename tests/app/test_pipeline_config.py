"""pipelines.toml checking: every error collected and reported with its exact FILE:LINE."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
import pytest

import plugins.auth
from app import CheckContext, StepKind, StepType, hookimpl
from app.pipeline.config import PipelineFileError, parse_route
from app.pipeline.registry import load_checked
from app.pipeline.types import INT_PARAM_MAX, INT_PARAM_PATTERN, int_param_in_range
from app.plugins import make_plugin_manager
from tests.app.conftest import CORE_PIPELINES
from tests.fixtures import sample_plugin


def check(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "pipelines.toml"
    path.write_text(text)
    pm = make_plugin_manager(entrypoints=False, extra=[sample_plugin])
    with pytest.raises(PipelineFileError) as info:
        load_checked(path, pm)
    prefix = f"{path}:"
    assert all(str(e).startswith(prefix) for e in info.value.errors)
    return [str(e)[len(str(path)) + 1 :] for e in info.value.errors]


def test_the_core_fixture_file_is_valid() -> None:
    pm = make_plugin_manager(entrypoints=False, extra=[sample_plugin])
    _registry, pipelines = load_checked(CORE_PIPELINES, pm)
    assert [p.name for p in pipelines.pipelines][:2] == ["echo_widget", "get_thing"]
    assert [s.line for s in pipelines.pipelines[0].steps] == [10, 11, 12]


def test_toml_syntax_error_has_its_line(tmp_path: Path) -> None:
    assert check(tmp_path, '[[pipelines]]\nname = "a"\nroute = "GET /a\n') == [
        "3: TOML syntax error: Illegal character '\\n'"
    ]


def test_toml_syntax_error_at_the_end_of_the_file_has_the_last_line(tmp_path: Path) -> None:
    # A bracket left open: tomllib names no line; it was reported as line 1.
    assert check(tmp_path, '[[pipelines]]\nname = "a"\nroute = "GET /a"\nsteps = [{ use = "echo" },\n') == [
        "4: TOML syntax error: Invalid value at the end of the file"
    ]


def test_unknown_step_type(tmp_path: Path) -> None:
    errors = check(tmp_path, """
[[pipelines]]
name = "a"
route = "GET /a"
steps = [
  { use = "tag", name = "x" },
  { use = "ecko" },
]
""")
    assert errors == [
        "7: pipeline 'a', step 2: unknown step type 'ecko' (known: answer, boom, echo, silent, sleep, tag)"
    ]


def test_unknown_missing_and_ill_typed_settings_all_reported(tmp_path: Path) -> None:
    errors = check(tmp_path, """
[[pipelines]]
name = "a"
route = "GET /a"
steps = [
  { use = "tag" },
  { use = "sleep", seconds = "2" },
  { use = "echo", status = 200, colour = "red" },
]
""")
    assert errors == [
        "6: pipeline 'a', step 1 (tag): name: required setting missing",
        "7: pipeline 'a', step 2 (sleep): seconds: expected a number, got '2'",
        "8: pipeline 'a', step 3 (echo): colour: unknown setting 'colour'",
    ]


def test_bad_route(tmp_path: Path) -> None:
    errors = check(tmp_path, '[[pipelines]]\nname = "a"\nroute = "FETCH /a"\nsteps = [{ use = "echo" }]\n')
    assert errors == ["3: pipeline 'a': bad route 'FETCH /a': method must be one of GET, POST, PUT, PATCH, DELETE"]
    errors = check(tmp_path, '[[pipelines]]\nname = "a"\nroute = "GET a/{id"\nsteps = [{ use = "echo" }]\n')
    assert errors[0].startswith("3: pipeline 'a': bad route 'GET a/{id'")


def test_duplicate_route(tmp_path: Path) -> None:
    errors = check(tmp_path, """
[[pipelines]]
name = "a"
route = "GET /x/{id}"
steps = [{ use = "echo" }]

[[pipelines]]
name = "b"
route = "GET /x/{other}"
steps = [{ use = "echo" }]
""")
    assert errors == ["9: pipeline 'b': duplicate route GET /x/{other} (also pipeline 'a' at line 2)"]


def test_placeholder_naming_no_route_parameter(tmp_path: Path) -> None:
    path = tmp_path / "pipelines.toml"
    path.write_text('[[pipelines]]\nname = "a"\nroute = "GET /x/{id}"\nsteps = [{ use = "tmpl", key = "k:{uid}" }]\n')
    import attrs

    from app import StepKind, StepType, hookimpl, template_field

    @attrs.frozen
    class TmplConfig:
        key: str = template_field()

    class TemplatePlugin:
        @hookimpl
        def register_steps(self) -> list[StepType[TmplConfig]]:
            return [StepType(name="tmpl", config_cls=TmplConfig, kind=StepKind.TERMINAL, build=lambda c, x: None)]  # type: ignore[arg-type, return-value]

    pm = make_plugin_manager(entrypoints=False, extra=[TemplatePlugin()])
    with pytest.raises(PipelineFileError) as info:
        load_checked(path, pm)
    assert [str(e) for e in info.value.errors] == [
        f"{path}:4: pipeline 'a', step 1 (tmpl): key: placeholder {{uid}} names no route parameter (route has: id)"
    ]


def test_unregistered_body_model(tmp_path: Path) -> None:
    errors = check(
        tmp_path, '[[pipelines]]\nname = "a"\nroute = "POST /a"\nbody = "Gadget"\nsteps = [{ use = "echo" }]\n'
    )
    assert errors == ["4: pipeline 'a': body model 'Gadget' is not registered (known: Widget)"]


def test_last_step_must_answer(tmp_path: Path) -> None:
    errors = check(tmp_path, '[[pipelines]]\nname = "a"\nroute = "GET /a"\nsteps = [{ use = "tag", name = "t" }]\n')
    assert errors == [
        "4: pipeline 'a': the last step (tag) passes the request on, but nothing follows it: "
        "end with a step that answers (e.g. data-fetch)"
    ]


def test_errors_of_several_pipelines_are_all_collected(tmp_path: Path) -> None:
    errors = check(tmp_path, """
[[pipelines]]
name = "a"
route = "GET /a"
steps = [{ use = "nope" }]

[[pipelines]]
name = "b"
route = "GET b"
steps = [{ use = "echo", status = true }]
""")
    assert [e.split(":")[0] for e in errors] == ["5", "9", "10"]


def test_missing_pipeline_keys(tmp_path: Path) -> None:
    errors = check(tmp_path, '[[pipelines]]\nname = "a"\n')
    assert errors == [
        "1: pipelines[0].route: required setting missing",
        "1: pipelines[0].steps: required setting missing",
    ]


@pytest.mark.parametrize(
    ("value", "in_range"),
    [("0", True), ("7", True), ("9" * 18, True), (str(2**63 - 1), True), ("1" + "0" * 18, True),
     (str(2**63), False), ("9" * 19, False)],
)
def test_int_params_stop_at_the_int64_maximum(value: str, in_range: bool) -> None:
    assert re.fullmatch(INT_PARAM_PATTERN, value)
    assert int_param_in_range(value) is in_range
    assert in_range is (int(value) <= INT_PARAM_MAX)


@pytest.mark.parametrize("value", ["03", "00", "-1", "+1", "1_0", "\u0663", "\uff13", " 1", "1" * 20])
def test_int_params_match_one_spelling_only(value: str) -> None:
    assert re.fullmatch(INT_PARAM_PATTERN, value) is None
    assert "{id:" + INT_PARAM_PATTERN + "}" in parse_route("GET /users/{id:int}").router_path


@attrs.frozen(kw_only=True)
class _CrashConfig:
    """`{ use = "crash-check" }`: a step type whose `check` has a bug."""


class _CrashingCheckPlugin:
    @hookimpl
    def register_steps(self) -> list[StepType[Any]]:
        def crash(config: _CrashConfig, ctx: CheckContext) -> list[str]:
            raise KeyError("check crashed")

        return [StepType(name="crash-check", config_cls=_CrashConfig, kind=StepKind.TERMINAL,
                         build=lambda c, ctx: sample_plugin.AnswerStep(sample_plugin.AnswerConfig()), check=crash)]


def test_a_check_that_raises_is_an_error_at_its_line_and_the_others_are_still_reported(tmp_path: Path) -> None:
    path = tmp_path / "pipelines.toml"
    path.write_text("""
[[pipelines]]
name = "a"
route = "GET /a/{id}"
steps = [{ use = "tag" }, { use = "echo" }]

[[pipelines]]
name = "b"
route = "GET /b"
steps = [{ use = "crash-check" }]
""")
    pm = make_plugin_manager(entrypoints=False, extra=[sample_plugin, _CrashingCheckPlugin()])
    with pytest.raises(PipelineFileError) as info:
        load_checked(path, pm)
    errors = [str(e)[len(str(path)) + 1:] for e in info.value.errors]
    assert len(errors) == 2, errors
    assert errors[1].startswith("10: pipeline 'b', step 1 (crash-check): the check of plugin ")
    assert errors[1].endswith("failed: KeyError: 'check crashed'")


def test_a_list_setting_given_one_string_is_refused_not_split(tmp_path: Path) -> None:
    # cattrs would make ["t", "e", "a", "m"] of it: a rule testing `"team" in pipeline.tags`
    # would silently stop matching.
    errors = check(tmp_path, """
[[pipelines]]
name = "a"
route = "GET /a"
tags = "team"
steps = [{ use = "echo" }]
""")
    assert errors == ["5: pipelines[0].tags: expected a list, got 'team'"]


def test_one_run_reports_the_errors_of_every_table_and_every_stage(tmp_path: Path) -> None:
    # A table with an unknown key no longer hides the others' errors, nor do errors of shape
    # hide a route the service's own routes take: one `turnstile check` lists them all.
    errors = check(tmp_path, """
[[pipelines]]
name = "a"
route = "GET /a"
steps = [{ use = "echo" }]

[[pipelines]]
name = "b"
route = "GET /b/{x}/{x}"
steps = [{ use = "echo" }]

[[pipelines]]
name = "c"
route = "GET /c"
unknown_key = 1
steps = [{ use = "echo" }]

[[pipelines]]
name = "health"
route = "GET /healthz"
steps = [{ use = "echo" }]
""")
    assert [error.split(":", 1)[0] for error in errors] == ["9", "15", "18"]
    assert "parameter {x} appears twice" in errors[0]
    assert "unknown setting 'unknown_key'" in errors[1]
    assert "GET /healthz is taken by" in errors[2]


def test_unknown_keys_do_not_hide_the_files_other_errors(tmp_path: Path) -> None:
    # Fixing a file took one run per stage: an unknown top-level key hid every other error, an
    # unknown setting of a step hid the rest of that step's.
    errors = check(tmp_path, """colour = "blue"
[[pipelines]]
name = "a"
route = "GET /x/{id}"
bogus = 2
steps = [{ use = "echo", bogus = 1, status = "x" }]
""")
    assert errors[0] == "1: colour: unknown setting 'colour'"
    assert "5: pipelines[0].bogus: unknown setting 'bogus'" in errors
    assert "6: pipeline 'a', step 1 (echo): bogus: unknown setting 'bogus'" in errors
    assert any(error.startswith("6: pipeline 'a', step 1 (echo): status:") for error in errors), errors


def test_a_wrapper_before_a_guard_is_an_error_unless_it_only_observes(tmp_path: Path) -> None:
    # A cache before auth answered anonymous callers from it (contract §8: auth runs before
    # the cache, always). An audit-like wrapper (`tag`, observes_only) may see every request.
    path = tmp_path / "pipelines.toml"
    path.write_text("""[[pipelines]]
name = "a"
route = "GET /x/{id}"
steps = [{ use = "tag", name = "audit" }, { use = "answer" }, { use = "auth", allow = ["anyone"] },
         { use = "echo" }]
""")
    pm = make_plugin_manager(entrypoints=False, extra=[plugins.auth, sample_plugin])
    with pytest.raises(PipelineFileError) as info:
        load_checked(path, pm)
    assert [str(e)[len(str(path)) + 1 :] for e in info.value.errors] == [
        "4: pipeline 'a', step 3 (auth): a guard must stand before every wrapper but those that only observe, "
        "and step 2 (answer) would run before it",
    ]
    path.write_text(path.read_text().replace('{ use = "answer" }, ', ""))
    load_checked(path, pm)
