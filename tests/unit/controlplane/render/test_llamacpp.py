"""llama.cpp models (the embedded default fleet) rendered for Kubernetes: the pilothouse image
running `pilothouse engine llamacpp`, the http port only, fixed replicas (no metrics to scale
on), and the same picker / pool / route as the other engines."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pilothouse.config.fleet import FleetSpec
from pilothouse.controlplane.render.bundle import render_fleet
from pilothouse.controlplane.render.helm import render_chart, write_chart
from pilothouse.controlplane.render.options import Autoscaling, RenderOptions, Resources
from pilothouse.errors import ConfigError
from pilothouse.servers.cli import llamacpp as llamacpp_command
from tests.unit.controlplane.render.conftest import EMBEDDED_EXAMPLE

Manifest = dict[str, Any]
NAME = "smollm2-135m-instruct"


def objects(fleet: FleetSpec, options: RenderOptions | None = None) -> list[Manifest]:
    return list(render_fleet(fleet, options or RenderOptions()).manifests)


def one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    (found,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def server(manifests: list[Manifest], name: str = NAME) -> Manifest:
    result: Manifest = one(manifests, "Deployment", name)["spec"]["template"]["spec"]["containers"][
        0
    ]
    return result


def _fleet(*models: dict[str, Any]) -> FleetSpec:
    return FleetSpec.model_validate({"models": list(models)})


def _with(model: dict[str, Any]) -> FleetSpec:
    return _fleet({"name": "m", "engine": "llamacpp", **model})


def test_embedded_example_runs_the_llamacpp_engine_in_the_pilothouse_image(
    embedded_fleet: FleetSpec,
) -> None:
    manifests = objects(embedded_fleet)
    container = server(manifests)
    assert container["image"] == "ghcr.io/pilothouse/pilothouse:0.1.0"
    assert container["command"] == ["python", "-m", "pilothouse", "engine", "llamacpp"]
    assert container["args"] == [
        "--source", "embedded", "--served-name", NAME, "--host", "0.0.0.0", "--port", "8000",
        "--threads", "1",
    ]  # fmt: skip
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert "env" not in container  # POD_IP only feeds the KV-event topic
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    # threads: 1 in the Fleet → one core requested; no GPU.
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"memory": "1Gi"},
    }
    template = one(manifests, "Deployment", NAME)["spec"]["template"]
    assert template["metadata"]["labels"]["llm-d.ai/engine-type"] == "llamacpp"
    assert "annotations" not in template["metadata"]  # nothing for Prometheus to scrape
    assert "volumes" not in template["spec"]
    pool = one(manifests, "InferencePool", NAME)
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]
    assert pool["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert pool["spec"]["endpointPickerRef"]["name"] == f"{NAME}-epp"
    one(manifests, "HTTPRoute", NAME)
    picker = server(manifests, f"{NAME}-epp")
    assert "--kv-events" not in picker["args"]


def test_rendered_args_are_accepted_by_the_llamacpp_command(embedded_fleet: FleetSpec) -> None:
    container = server(objects(embedded_fleet))
    ctx = llamacpp_command.make_context("llamacpp", list(container["args"]))
    assert ctx.params == {
        "source": "embedded",
        "served_name": NAME,
        "host": "0.0.0.0",
        "port": 8000,
        "n_ctx": 4096,
        "threads": 1,
        "max_tokens": 256,
    }


@pytest.mark.parametrize("kind", ["hpa", "keda", "none"])
def test_fixed_replicas_and_no_autoscaler_whatever_the_kind(
    embedded_fleet: FleetSpec, kind: str
) -> None:
    options = RenderOptions(autoscaling=Autoscaling(kind=kind))  # type: ignore[arg-type]
    manifests = objects(embedded_fleet, options)
    assert one(manifests, "Deployment", NAME)["spec"]["replicas"] == 2
    kinds = {m["kind"] for m in manifests}
    assert not kinds & {"HorizontalPodAutoscaler", "ScaledObject"}


def test_a_mixed_fleet_autoscales_the_sim_model_only() -> None:
    fleet = _fleet({"name": "local", "engine": "llamacpp"}, {"name": "sim", "engine": "sim"})
    manifests = objects(fleet)
    assert "replicas" not in one(manifests, "Deployment", "sim")["spec"]
    assert one(manifests, "Deployment", "local")["spec"]["replicas"] == 2
    assert [m["metadata"]["name"] for m in manifests if m["kind"] == "HorizontalPodAutoscaler"] == [
        "sim"
    ]


@pytest.mark.parametrize("kind", ["hpa", "keda"])
def test_an_autoscaling_block_is_refused(kind: str) -> None:
    fleet = _with({"autoscaling": {"min_replicas": 0, "max_replicas": 3}})
    options = RenderOptions(autoscaling=Autoscaling(kind=kind))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="publishes no metrics") as caught:
        render_fleet(fleet, options)
    assert caught.value.path == "models[0].autoscaling"
    assert "--autoscaling none" in str(caught.value)


def test_an_autoscaling_block_renders_its_minimum_without_an_autoscaler() -> None:
    fleet = _with({"autoscaling": {"min_replicas": 1, "max_replicas": 3}})
    manifests = objects(fleet, RenderOptions(autoscaling=Autoscaling(kind="none")))
    assert one(manifests, "Deployment", "m")["spec"]["replicas"] == 1


@pytest.mark.parametrize(
    ("cpu", "threads"), [(None, "1"), ("500m", "1"), ("2", "2"), ("2500m", "3"), ("1.5", "2")]
)
def test_threads_follow_the_cpu_request_unless_given(cpu: str | None, threads: str) -> None:
    fleet = _with({"resources": {"cpu": cpu}} if cpu else {})
    container = server(objects(fleet), "m")
    args = container["args"]
    assert args[args.index("--threads") + 1] == threads
    assert container["resources"]["requests"]["cpu"] == (cpu or "1")
    # The --cpu flag overrides the spec, and an explicit threads arg wins over both.
    options = replace(RenderOptions(), resources=Resources(cpu="4"))
    pinned = server(objects(_with({"args": {"threads": 2}}), options), "m")
    assert pinned["args"].count("--threads") == 1
    assert pinned["args"][pinned["args"].index("--threads") + 1] == "2"
    assert pinned["resources"]["requests"]["cpu"] == "4"


def test_engine_args_pass_through_and_owned_ones_are_refused() -> None:
    container = server(objects(_with({"args": {"n_ctx": 2048, "max-tokens": 64}})), "m")
    assert container["args"][-6:] == ["--n-ctx", "2048", "--max-tokens", "64", "--threads", "1"]
    for key in ("port", "served-name", "source", "host"):
        with pytest.raises(ConfigError) as caught:
            render_fleet(_with({"args": {key: "x"}}), RenderOptions())
        assert caught.value.path == f"models[0].args.{key}"


@pytest.mark.parametrize("source", ["/models/tiny.gguf", "file:///models/tiny.gguf"])
def test_an_absolute_gguf_path_in_the_image(source: str) -> None:
    args = server(objects(_with({"source": source, "image": "registry/llm:1"})), "m")["args"]
    assert args[args.index("--source") + 1] == "/models/tiny.gguf"


@pytest.mark.parametrize("source", ["models/tiny.gguf", "./tiny.gguf", "~/tiny.gguf"])
def test_a_relative_gguf_path_is_refused(source: str) -> None:
    with pytest.raises(ConfigError, match="absolute path of the GGUF file inside the image") as e:
        render_fleet(_with({"source": source}), RenderOptions())
    assert e.value.path == "models[0].source"


@pytest.mark.parametrize("source", ["hf://bartowski/SmolLM2-GGUF", "s3://models/smol.gguf"])
def test_a_remote_source_is_refused(source: str) -> None:
    # The Fleet spec already refuses it for llama.cpp; the renderer does too, on its own.
    with pytest.raises(ValueError, match=r"llama\.cpp runs 'embedded' or a local GGUF path"):
        _with({"source": source})
    fleet = _with({})
    model = fleet.models[0].model_copy(update={"source": source})  # copies skip validation
    fleet = fleet.model_copy(update={"models": [model]})
    with pytest.raises(ConfigError, match="does not download") as caught:
        render_fleet(fleet, RenderOptions())
    assert caught.value.path == "models[0].source"


def test_a_helm_chart_of_the_embedded_fleet_renders_the_same_objects(
    embedded_fleet: FleetSpec, tmp_path: Path
) -> None:
    write_chart(embedded_fleet, RenderOptions(), tmp_path, command=f"-f {EMBEDDED_EXAMPLE.name}")
    chart = render_chart(tmp_path, namespace="default")

    def key(m: Manifest) -> tuple[str, str]:
        return m["kind"], m["metadata"]["name"]

    assert sorted(chart, key=key) == sorted(objects(embedded_fleet), key=key)
    scaled = render_chart(tmp_path, values={"models": {NAME: {"replicas": 5}}})
    assert one(scaled, "Deployment", NAME)["spec"]["replicas"] == 5
