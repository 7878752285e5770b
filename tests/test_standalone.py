"""The repository stands alone: a clone installs, runs and passes its tests with nothing beside it,
so no file may point at the reference shelf a developer happens to have next to the checkout, nor
at a path on one machine, and every schema the tests validate against is vendored."""

from __future__ import annotations

import builtins
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import schemas

ROOT = Path(__file__).resolve().parents[1]
# Spelled in pieces so that this file does not match itself.
FORBIDDEN = ("../" + "shared", "/" + "work/")
# .ci/run may name the shelf to prove it is absent; nothing else may.
ALLOWED = {".ci/run"}
# What a checkout grows by running it (see .gitignore); used when there is no git, e.g. in CI's copy.
GENERATED = {".git", ".venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".grimp_cache", "build"}


def repository_files() -> list[str]:
    """Tracked files plus new ones not ignored (so uncommitted work is checked too); without git,
    every file under the root that is not generated."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
        ).stdout
        names = [name for name in listed.decode().split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        names = [
            path.relative_to(ROOT).as_posix()
            for path in ROOT.rglob("*")
            if path.is_file() and not GENERATED & set(path.relative_to(ROOT).parts)
        ]
    return [
        name
        for name in names
        if not GENERATED & set(Path(name).parts) and not name.endswith(".pyc") and ".egg-info" not in name
    ]


def test_no_file_points_outside_the_repository() -> None:
    files = repository_files()
    assert "pyproject.toml" in files and "tests/schemas.py" in files, "the file list is wrong"
    offenders = []
    for name in files:
        if name in ALLOWED or not (ROOT / name).is_file():
            continue
        content = (ROOT / name).read_bytes()
        if b"\0" in content:
            continue  # binary
        for needle in FORBIDDEN:
            offenders += [
                f"{name}:{number}: {needle}"
                for number, line in enumerate(content.decode(errors="replace").splitlines(), 1)
                if needle in line
            ]
    assert offenders == []


@pytest.fixture
def files_opened_by_schemas(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Records every file tests/schemas.py itself opens (not the libraries it calls), uncached."""
    opened: list[Path] = []
    own = Path(schemas.__file__).resolve()

    def called_from_schemas() -> bool:
        return Path(sys._getframe(2).f_code.co_filename).resolve() == own

    real_read_text, real_read_bytes, real_open = Path.read_text, Path.read_bytes, builtins.open

    def read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        if called_from_schemas():
            opened.append(self)
        return real_read_text(self, *args, **kwargs)

    def read_bytes(self: Path) -> bytes:
        if called_from_schemas():
            opened.append(self)
        return real_read_bytes(self)

    def open_(file: Any, *args: Any, **kwargs: Any) -> Any:
        if called_from_schemas():
            opened.append(Path(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.setattr(builtins, "open", open_)
    schemas._load.cache_clear()
    schemas._cloudflare_iam_spec.cache_clear()
    yield opened
    schemas._load.cache_clear()
    schemas._cloudflare_iam_spec.cache_clear()


def test_every_schema_the_tests_read_is_in_the_repository(files_opened_by_schemas: list[Path]) -> None:
    members, member = "/accounts/{account_id}/members", "/accounts/{account_id}/members/{member_id}"
    schemas.cloudflare_request_errors("POST", members, {"email": "a@example.com", "roles": ["r"]})
    schemas.cloudflare_iam_request_errors("PUT", member, {"roles": [{"id": "r"}]})
    schemas.slack_required_arguments("chat.postMessage")
    schemas.slack_known_arguments("chat.postMessage")
    schemas.manifest_errors({"display_information": {"name": "x"}})

    opened = {path.resolve() for path in files_opened_by_schemas}
    assert opened >= {path.resolve() for path in schemas.SCHEMA_FILES}, "SCHEMA_FILES lists what is read"
    for path in opened:
        assert path.is_relative_to(ROOT / "tests" / "vendor"), f"{path} is not vendored in tests/vendor/"
        assert path.is_file(), f"{path} is missing"
        assert path.relative_to(ROOT).as_posix() in repository_files(), f"{path} is not part of the repository"
