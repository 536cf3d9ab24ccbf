"""``bench overhead --baseline-rev``: the gateway's code at another commit, from git."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pilothouse.bench.overhead.baseline import BASELINE, extract_source
from pilothouse.bench.overhead.run import OverheadConfig
from pilothouse.bench.processes import BenchError


def test_the_source_at_a_revision_is_importable(tmp_path: Path) -> None:
    source = extract_source("HEAD", tmp_path)
    assert (source / "pilothouse" / "__init__.py").exists()
    shown = subprocess.run(
        [sys.executable, "-c", "import pilothouse; print(pilothouse.__file__)"],
        env={"PYTHONPATH": str(source)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert shown.stdout.strip().startswith(str(source))


def test_an_unknown_revision_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="cannot read 'no-such-rev'"):
        extract_source("no-such-rev", tmp_path)


def test_the_baseline_is_one_more_interleaved_target() -> None:
    config = OverheadConfig(concurrency=(16,), baseline_rev="HEAD~1")
    assert config.targets[-1] == BASELINE
    assert "gateway" in config.targets
