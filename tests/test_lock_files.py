"""The lock files hold everything pyproject.toml asks for, at one version each, with hashes.

``.ci/smoke.py`` proves the runtime lock by installing it alone and running the gateway; these
tests catch a stale lock before that, and say which package is missing.
"""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from importlib.metadata import requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
CLIENT_PYPROJECT = tomllib.loads((REPO / "client" / "pyproject.toml").read_text())


def pins(lock: str) -> dict[str, str]:
    """Package name -> pinned version; fails on a pin without a hash."""
    text = (REPO / lock).read_text()
    found: dict[str, str] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        match = re.match(r"([A-Za-z0-9_.\-\[\],]+)==([^\s;\\]+)", block)
        if match is None:
            continue
        assert "--hash=sha256:" in block, f"{lock}: {match.group(1)} has no hash"
        found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def declared(group: str | None = None) -> list[Requirement]:
    project = PYPROJECT["project"]
    items = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [Requirement(item) for item in items]


def test_runtime_lock_pins_every_runtime_dependency_within_its_range() -> None:
    locked = pins("requirements.txt")
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is declared but not in requirements.txt: run make lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"requirements.txt pins {name}=={locked[name]}, outside {requirement.specifier}"
        )


@pytest.mark.parametrize("group", ["test", "bench"])
def test_dev_lock_pins_every_extra(group: str) -> None:
    locked = pins("requirements-dev.txt")
    for requirement in declared(group):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} ({group}) is not in requirements-dev.txt: run make lock"
        assert requirement.specifier.contains(locked[name], prereleases=True)


def test_dev_lock_pins_every_dependency_of_the_client() -> None:
    locked = pins("requirements-dev.txt")
    for item in CLIENT_PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(item)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} (client) is not in requirements-dev.txt: run make lock"
        assert requirement.specifier.contains(locked[name], prereleases=True)


def test_dev_lock_runs_the_runtime_packages_at_the_same_versions() -> None:
    runtime, dev = pins("requirements.txt"), pins("requirements-dev.txt")
    assert {name: dev.get(name) for name in runtime} == runtime


def test_runtime_lock_holds_what_the_redis_transport_imports() -> None:
    """kombu's Redis transport imports ``packaging`` and ``redis``: a plain install needs both."""
    locked = pins("requirements.txt")
    redis_extra = [
        Requirement(item)
        for item in requires("kombu") or []
        if Requirement(item).marker is not None
        and Requirement(item).marker.evaluate({"extra": "redis"})  # type: ignore[union-attr]
    ]
    assert {canonicalize_name(r.name) for r in redis_extra} >= {"redis", "packaging"}
    for requirement in redis_extra:
        assert canonicalize_name(requirement.name) in locked


def test_docker_image_installs_the_lock_with_hashes_and_nothing_else() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install --no-cache-dir --require-hashes -r requirements.txt" in dockerfile
    assert "pip install --no-cache-dir --no-deps ." in dockerfile


def test_readme_commands_install_from_the_lock_files() -> None:
    readme = (REPO / "README.md").read_text()
    assert ".venv/bin/pip install -q -r requirements.txt && " in readme
    assert ".venv/bin/pip install -q -r requirements-dev.txt && " in readme
    assert "pip install --require-hashes -r requirements.txt" in readme


def test_ci_runs_the_readmes_test_command_word_for_word() -> None:
    readme = (REPO / "README.md").read_text()
    command = next(
        line for line in readme.splitlines() if "requirements-dev.txt" in line and "pytest" in line
    )
    assert "--no-deps -e ./client" in command  # the client's tests need it installed
    assert command in (REPO / ".ci" / "run").read_text().splitlines()


def test_installed_packages_carry_every_file_beside_their_code() -> None:
    """A non-Python file under a package reaches the wheel only through package-data."""
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["*"]
    for package in ("gateway", "jobs", "providers"):
        for path in (REPO / package).rglob("*"):
            if path.is_dir() or path.suffix in {".py", ".pyc"} or "__pycache__" in path.parts:
                continue
            home = next(d for d in path.parents if (d / "__init__.py").exists())
            inside = path.relative_to(home)  # package-data globs are relative to the package
            assert any(fnmatch(str(inside), p) for p in patterns), path
