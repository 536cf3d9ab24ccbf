"""The watched endpoints file: parsing with field paths, change detection, bad edits."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from pilothouse.endpoints.file_source import FileSource, parse_endpoints
from pilothouse.errors import ConfigError
from pilothouse.scheduling.types import Endpoint


def test_defaults_and_every_field() -> None:
    text = """
- address: 10.0.0.1:8000
- name: b
  address: 10.0.0.2:8000
  model: llama
  engine: sglang
  labels: {llm-d.ai/role: decode}
"""
    a, b = parse_endpoints(text)
    assert (a.name, a.address, a.model, a.engine, dict(a.labels)) == (
        "10.0.0.1:8000",
        "10.0.0.1:8000",
        "default",
        "vllm",
        {},
    )
    assert (b.name, b.model, b.engine, dict(b.labels)) == (
        "b",
        "llama",
        "sglang",
        {"llm-d.ai/role": "decode"},
    )


@pytest.mark.parametrize(
    ("text", "path"),
    [
        pytest.param("- {name: a}", "[0].address", id="missing-address"),
        pytest.param("- {address: nohost}", "[0].address", id="no-port"),
        pytest.param("- {address: 'h:0'}", "[0].address", id="port-zero"),
        pytest.param("- {address: 'h:1'}\n- {address: 'h:99999'}", "[1].address", id="port-big"),
        pytest.param("- {address: 'h:1', colour: red}", "[0].colour", id="unknown-key"),
        pytest.param("- {address: 'h:1'}\n- {address: 'h:1'}", "[1].name", id="duplicate"),
        pytest.param("- {address: 'h:1', labels: [a]}", "[0].labels", id="labels-not-map"),
        pytest.param("- 3", "[0]", id="not-a-mapping"),
    ],
)
def test_errors_name_the_field(text: str, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_endpoints(text)
    assert caught.value.path == path


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "[]"])
def test_an_empty_file_is_an_empty_pool(text: str) -> None:
    assert parse_endpoints(text) == []


def test_a_mapping_or_bad_yaml_is_an_error() -> None:
    with pytest.raises(ConfigError, match="must be a list"):
        parse_endpoints("address: h:1")
    with pytest.raises(ConfigError, match="invalid YAML"):
        parse_endpoints("- [unclosed")


def _touch(path: Path, text: str, bump: int) -> None:
    path.write_text(text)
    stamp = 1_700_000_000_000_000_000 + bump * 1_000_000_000
    os.utime(path, ns=(stamp, stamp))  # coarse filesystem clocks cannot hide a change


async def test_reports_the_set_then_changes_and_ignores_bad_edits(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    _touch(path, "- {address: '10.0.0.1:1'}\n", 0)
    reports: list[list[str]] = []
    changed = asyncio.Event()

    def sink(endpoints: Sequence[Endpoint]) -> None:
        reports.append([e.address for e in endpoints])
        changed.set()

    task = asyncio.create_task(FileSource(path, poll_interval_s=0.01).run(sink))
    try:
        for bump, text in [
            (1, "- {address: '10.0.0.1:1'}\n- {address: '10.0.0.2:1'}\n"),
            (2, "- {address: broken}\n"),  # ignored: the last good set stays
            (3, "[]\n"),
        ]:
            changed.clear()
            await asyncio.sleep(0.05)
            _touch(path, text, bump)
            if bump != 2:
                await asyncio.wait_for(changed.wait(), 5)
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert reports == [["10.0.0.1:1"], ["10.0.0.1:1", "10.0.0.2:1"], []]


async def test_a_missing_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        await FileSource(tmp_path / "absent.yaml").run(lambda endpoints: None)


def test_poll_interval_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="poll_interval_s"):
        FileSource(tmp_path / "x.yaml", poll_interval_s=0)
