"""The image runs the versions the tests ran with: constraints.txt is the test environment, the test
command installs with it, and the Dockerfile installs the dependencies with it before the code."""

from __future__ import annotations

import configparser
import re
import shlex
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.test_dockerfile import Instruction, stages

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK = REPO_ROOT / "constraints.txt"
TEST_COMMAND = REPO_ROOT / "scripts" / "test.sh"
# What `pip freeze` leaves out by default, the project itself (installed from its source), and
# the example team plugin the test command installs from examples/ (not part of the image).
NOT_LOCKED = {"pip", "setuptools", "wheel", "distribute", "turnstile", "acme-turnstile-plugin"}


def locked() -> dict[str, str]:
    """constraints.txt as {canonical name: version}."""
    pins: dict[str, str] = {}
    for raw in LOCK.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"constraints.txt: {line!r} is not an exact pin (name==version)"
        assert version, f"constraints.txt: {line!r} has no version"
        pins[canonicalize_name(name)] = version
    return pins


def installed() -> dict[str, str]:
    """The test environment as {canonical name: version}."""
    found = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    return {name: version for name, version in found.items() if name not in NOT_LOCKED}


def runtime_requirements() -> list[Requirement]:
    """setup.cfg's install_requires: what the Dockerfile installs."""
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.strip().startswith("#")]


def runtime_closure() -> set[str]:
    """Every distribution the runtime requirements pull in on this platform, as installed here."""
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [(r, frozenset[str]()) for r in runtime_requirements()]
    while pending:
        requirement, parent_extras = pending.pop()
        # a dependency's marker may name the extra of its parent that asked for it
        if requirement.marker and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in (parent_extras or {""})
        ):
            continue
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        for line in metadata.requires(requirement.name) or []:
            pending.append((Requirement(line), key[1]))
    return {name for name, _ in seen}


def test_the_lock_pins_exactly_the_test_environment() -> None:
    lock, env = locked(), installed()
    assert {n: v for n, v in env.items() if lock.get(n) != v} == {}, (
        "installed here but not at this version in constraints.txt: run scripts/lock.sh, then the tests"
    )
    assert {n: v for n, v in lock.items() if env.get(n) != v} == {}, (
        "pinned in constraints.txt but not installed at that version: reinstall with scripts/test.sh"
    )


def test_every_runtime_dependency_is_pinned_so_the_image_gets_the_tested_versions() -> None:
    lock = locked()
    closure = runtime_closure()
    assert {"aiohttp", "coredis", "aiormq", "argon2-cffi", "pyjwt", "cryptography"} <= closure
    assert sorted(closure - set(lock)) == []
    for requirement in runtime_requirements():
        assert requirement.specifier.contains(lock[canonicalize_name(requirement.name)], prereleases=True), (
            f"constraints.txt pins {requirement.name} outside setup.cfg's {requirement}"
        )


def test_the_test_command_installs_with_the_lock() -> None:
    commands = [shlex.split(line) for line in TEST_COMMAND.read_text().splitlines() if "pip install" in line]
    installs = [words for words in commands if "-e" in words]
    assert installs, "scripts/test.sh installs the project"
    for words in installs:
        assert words[words.index("-c") + 1] == "constraints.txt"


def copies(instruction: Instruction) -> list[str]:
    words = instruction[1].split()
    return [w for w in words[:-1] if not w.startswith("--")] if instruction[0] == "COPY" else []


def test_the_image_installs_its_dependencies_from_the_lock_before_the_code() -> None:
    builder = stages()[0]
    copied_at = {source: i for i, instruction in enumerate(builder) for source in copies(instruction)}
    lock_install = "pip install -c constraints.txt"
    installs = [i for i, (word, rest) in enumerate(builder) if word == "RUN" and lock_install in rest]
    assert installs, "the builder installs with `pip install -c constraints.txt`"
    dependencies = installs[0]
    assert copied_at["constraints.txt"] < dependencies
    # the code comes after: a code change reuses the dependency layer
    assert dependencies < copied_at["app"]
    assert dependencies < copied_at["plugins"]
    # and the project goes in alone, so nothing is resolved again past the lock
    project = [rest for word, rest in builder[copied_at["app"] :] if word == "RUN" and "pip install" in rest]
    assert project
    assert all(re.search(r"pip install --no-deps", rest) for rest in project)
