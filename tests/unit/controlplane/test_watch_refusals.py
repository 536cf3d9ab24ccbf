"""The file watcher of ``up -f``: a refused edit is logged and the last good spec kept."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from pilothouse.cli import cli
from pilothouse.config.fleet import FleetSpec, load_fleet
from pilothouse.controlplane.changes import ApplyReport
from pilothouse.controlplane.watch import watch_spec
from pilothouse.errors import ConfigError, EngineError

GOOD = (
    "models: [{name: m, engine: sim, replicas: %d}]\n"
    "local: {watch_interval_s: 0.01, watch_debounce_s: 0}\n"
)
NOT_UTF8 = b"models: [{name: m\xff\xfe, engine: sim}]\n"


def test_a_non_utf8_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_bytes(NOT_UTF8)
    with pytest.raises(ConfigError, match="not UTF-8") as caught:
        load_fleet(path)
    assert str(path) in str(caught.value)


async def _until(condition: object, what: str) -> None:
    for _ in range(2000):  # a bound on polls, never on elapsed time
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


@pytest.mark.parametrize(
    ("bad", "why"),
    [(NOT_UTF8, "not UTF-8"), (b"models: [{name: m, engine: nope}]\n", "models[0].engine")],
)
async def test_a_refused_edit_is_logged_and_later_edits_still_apply(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bad: bytes, why: str
) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(GOOD % 1)
    applied: list[FleetSpec] = []

    def apply(spec: FleetSpec) -> ApplyReport:
        applied.append(spec)
        return ApplyReport((), ())

    caplog.set_level(logging.INFO, logger="pilothouse.watch")
    task = asyncio.create_task(watch_spec(path, load_fleet(path).local, apply))
    await asyncio.sleep(0)  # the watcher takes the file's first stamp
    try:
        path.write_bytes(bad)
        await _until(lambda: "keeping the running spec" in caplog.text, "the refusal logged")
        assert why in caplog.text
        assert not task.done()
        path.write_text(GOOD % 3)
        await _until(lambda: applied, "the next valid edit applied")
        assert applied[-1].models[0].replicas == 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_apply_that_fails_is_logged_and_the_watch_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(GOOD % 1)
    calls: list[int] = []

    def apply(spec: FleetSpec) -> ApplyReport:
        calls.append(spec.models[0].replicas or 0)
        if len(calls) == 1:
            raise EngineError("vLLM is not installed")
        return ApplyReport((), ())

    task = asyncio.create_task(watch_spec(path, load_fleet(path).local, apply))
    await asyncio.sleep(0)  # the watcher takes the file's first stamp
    try:
        path.write_text(GOOD % 2)
        await _until(lambda: "vLLM is not installed" in caplog.text, "the refusal logged")
        path.write_text(GOOD % 33)
        await _until(lambda: len(calls) == 2, "the next edit applied")
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize(
    "args", [["up", "-f", "{file}", "--log-dir", "{dir}"], ["validate", "-f", "{file}"]]
)
def test_a_non_utf8_fleet_file_is_one_error_line_not_a_traceback(
    tmp_path: Path, args: list[str]
) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_bytes(NOT_UTF8)
    argv = [a.format(file=path, dir=tmp_path) for a in args]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 1
    assert "is not UTF-8 text: byte 0xff on line 1" in result.output
    assert not isinstance(result.exception, UnicodeDecodeError)
    assert not (tmp_path / "m-0.log").exists()  # nothing started
