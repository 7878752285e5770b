"""The package layout's dependency direction (import-linter contracts in pyproject.toml) and no import cycles."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "handlers", "storage")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_import_contracts_catch_a_workflow_that_speaks_http_and_storage_that_reads_the_bot(tmp_path: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    filing = tmp_path / "bot" / "access" / "filing.py"
    filing.write_text("import httpx  # a shortcut around the Cloudflare client\n" + filing.read_text())
    db = tmp_path / "storage" / "db.py"
    db.write_text("from bot.core.clock import SystemClock  # storage reaching up\n" + db.read_text())

    result = lint_imports(tmp_path)

    assert result.returncode != 0
    assert "bot.access.filing -> httpx" in result.stdout
    assert "storage.db -> bot.core.clock" in result.stdout


def test_no_import_cycles_between_modules() -> None:
    graph = grimp.build_graph(*PACKAGES)
    modules = sorted(graph.modules)
    cycles = [
        (a, b)
        for a, b in itertools.permutations(modules, 2)
        if graph.direct_import_exists(importer=a, imported=b) and graph.chain_exists(importer=b, imported=a)
    ]
    assert cycles == []
