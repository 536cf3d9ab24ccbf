"""``pilothouse epp`` options, errors and a real process that starts and stops on a signal."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pilothouse.epp.cli import READY_PREFIX, epp_command


def test_help_needs_no_grpc() -> None:
    result = CliRunner().invoke(epp_command, ["--help"])
    assert result.exit_code == 0
    for option in ("--endpoints-file", "--pool-name", "--scheduler", "--health-port"):
        assert option in result.output


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="no-source"),
        pytest.param(["--endpoints-file", "x.yaml", "--pool-name", "p"], id="two-sources"),
    ],
)
def test_exactly_one_discovery_source(args: list[str]) -> None:
    result = CliRunner().invoke(epp_command, args)
    assert result.exit_code == 2
    assert "exactly one of --endpoints-file and --pool-name" in result.output


def test_a_bad_endpoints_file_fails_with_the_field(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text("- {address: nope}\n")
    result = CliRunner().invoke(epp_command, ["--endpoints-file", str(path)])
    assert result.exit_code == 2
    assert "[0].address" in result.output


def test_an_unknown_scheduler_fails_before_listening(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text("[]\n")
    result = CliRunner().invoke(epp_command, ["--endpoints-file", str(path), "--scheduler", "zz"])
    assert result.exit_code == 2
    assert "neither a builtin scheduler config" in result.output


def test_kubernetes_discovery_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pilothouse.endpoints.kubernetes", None)
    result = CliRunner().invoke(epp_command, ["--pool-name", "vllm"])
    assert result.exit_code == 2
    assert "Kubernetes discovery is not available" in result.output


def test_the_process_announces_itself_and_stops_on_sigterm(tmp_path: Path) -> None:
    pytest.importorskip("grpc")
    pytest.importorskip("envoy.service.ext_proc.v3.external_processor_pb2")
    path = tmp_path / "endpoints.yaml"
    path.write_text("[]\n")
    args = ["--endpoints-file", str(path), "--port", "0", "--health-port", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pilothouse.epp", *args, "--metrics-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], 60)
        assert readable, "the picker printed nothing within 60 s"
        line = proc.stdout.readline()
        assert line.startswith(READY_PREFIX + "grpc://127.0.0.1:"), line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_pool_name_selects_inferencepool_discovery_keyed_by_the_pool() -> None:
    pytest.importorskip("pilothouse.endpoints.kubernetes")
    from pilothouse.epp.cli import _source

    source, key = _source({"endpoints_file": None, "pool_name": "vllm", "pool_namespace": "ns"})
    assert type(source).__name__ == "InferencePoolSource"
    assert (source.pool_name, source.namespace, key) == ("vllm", "ns", "vllm")  # type: ignore[attr-defined]
