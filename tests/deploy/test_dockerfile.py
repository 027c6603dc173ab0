"""The Dockerfile, read as text (no Docker engine is needed): the properties the image must have."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
SECRET_LOOKING = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE|CREDENTIAL|_URL$", re.IGNORECASE)

Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    pairs = []
    for line in joined:
        word, _, rest = line.partition(" ")
        pairs.append((word.upper(), rest.strip()))
    return pairs


def stages() -> list[list[Instruction]]:
    """Instructions grouped by build stage; each stage starts with its FROM."""
    grouped: list[list[Instruction]] = []
    for pair in instructions():
        if pair[0] == "FROM":
            grouped.append([])
        if grouped:
            grouped[-1].append(pair)
    return grouped


def final_stage() -> list[Instruction]:
    return stages()[-1]


def args_of(stage: list[Instruction], name: str) -> list[str]:
    return [rest for word, rest in stage if word == name]


def env_names(rest: str) -> list[str]:
    if "=" not in rest.split(" ", 1)[0]:  # legacy `ENV NAME value`
        return [rest.split(" ", 1)[0]]
    return re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", rest)


def test_build_is_multi_stage_on_python_3_11_slim() -> None:
    build_args = dict(rest.split("=", 1) for word, rest in instructions() if word == "ARG" and "=" in rest)
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert len(froms) >= 2
    assert froms[0].endswith(" AS builder")
    resolved = [re.sub(r"\$\{(\w+)\}", lambda m: build_args[m.group(1)], f.split(" ")[0]) for f in froms]
    assert resolved[-1] == "python:3.11-slim"
    copied_from_builder = [rest for rest in args_of(final_stage(), "COPY") if rest.startswith("--from=builder")]
    assert copied_from_builder, "the final stage takes only the builder's output"


def test_final_stage_installs_no_build_tools() -> None:
    runs = " ".join(args_of(final_stage(), "RUN"))
    for tool in ("pip install", "apt-get install", "gcc", "build-essential"):
        assert tool not in runs


def test_runs_as_the_non_root_user_10001() -> None:
    users = args_of(final_stage(), "USER")
    assert users, "the final stage sets USER"
    assert users[-1].split(":")[0] == "10001"
    # nothing after the last USER switches back to root
    words = [word for word, _ in final_stage()]
    assert "USER" not in words[words.index("USER") + 1 :]


def test_workdir_port_command_and_pipelines() -> None:
    stage = final_stage()
    assert args_of(stage, "WORKDIR")[-1] == "/app"
    assert args_of(stage, "EXPOSE") == ["8080"]
    assert json.loads(args_of(stage, "CMD")[-1]) == ["turnstile", "serve"]
    assert not args_of(stage, "ENTRYPOINT"), "Kubernetes probes and args assume the plain CMD"
    assert any(rest.split()[0] == "pipelines.toml" for rest in args_of(stage, "COPY"))


@pytest.mark.parametrize("kind", ["ENV", "ARG"])
def test_no_secret_is_baked_into_the_image(kind: str) -> None:
    names = [name for word, rest in instructions() if word == kind for name in env_names(rest)]
    assert names, f"expected some {kind} instructions to check"
    assert [name for name in names if SECRET_LOOKING.search(name)] == []


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (last matching rule wins)."""
    verdict = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for rule in patterns:
        negated = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.removeprefix("**/")) for p in prefixes):
            verdict = not negated
    return verdict


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = dockerignore_patterns()
    for path in (
        ".git",
        ".venv",
        "var",
        "var/events.jsonl",
        "app/__pycache__/x.pyc",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        "tests/conftest.py",
        "turnstile.egg-info",
        ".env",
    ):
        assert ignored(path, patterns), f"{path} would be sent to the Docker build"


def copy_sources() -> list[str]:
    """What COPY takes from the build context (not from another stage)."""
    sources: list[str] = []
    for rest in args_of([pair for stage in stages() for pair in stage], "COPY"):
        words = rest.split()
        if any(word.startswith("--from") for word in words):
            continue
        sources += [word for word in words[:-1] if not word.startswith("--")]
    return sources


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = dockerignore_patterns()
    sources = copy_sources()
    assert {"pyproject.toml", "setup.cfg", "app", "plugins", "pipelines.toml"} <= set(sources)
    for source in sources:
        for path in (source, f"{source}/module.py"):
            assert not ignored(path.replace("*", ""), patterns), f"{path} is copied but ignored"
