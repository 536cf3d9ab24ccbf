"""The layer contracts of ARCHITECTURE.md hold, and would catch a wrong import.

`make lint` runs `lint-imports` on the tree; these tests run it on a copy so that a
deliberately wrong import can be shown to break the contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("layers")
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    shutil.copytree(
        ROOT / "src" / "pilothouse",
        copy / "src" / "pilothouse",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return copy


def test_the_layers_are_kept(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "message"),
    [
        # a pure layer reaching up into a front door
        ("scheduling/types.py", "import pilothouse.gateway.app", "pilothouse.scheduling"),
        # the wire layer reaching into the simulator
        ("kvevents.py", "import pilothouse.sim.cluster", "pilothouse.kvevents"),
        # two front doors importing each other
        ("epp/server.py", "import pilothouse.gateway.app", "pilothouse.epp"),
    ],
)
def test_a_wrong_import_breaks_the_contract(
    tree: Path, module: str, wrong_import: str, message: str
) -> None:
    path = tree / "src" / "pilothouse" / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n{wrong_import}  # noqa: E402\n")
        result = _lint(tree)
    finally:
        path.write_text(original)
    assert result.returncode != 0, result.stdout
    assert f"{message} is not allowed to import" in result.stdout
