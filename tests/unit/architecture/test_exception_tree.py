"""One exception tree: every exception pilothouse defines is a PilothouseError, drawn in
the tree of errors.py's docstring.

Read from the sources (not by importing every module), so optional extras that are not
installed cannot hide an exception from the check.
"""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import pytest

from pilothouse import errors

SRC = Path(errors.__file__).resolve().parent
BUILTIN_EXCEPTIONS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}


def _bases(node: ast.ClassDef) -> list[str]:
    """Base names as written (``Exception``, ``RequestError``, ``errors.ConfigError``)."""
    return [ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases]


def exception_classes(root: Path) -> dict[str, tuple[str, list[str]]]:
    """``name → (module path, base names)`` of every class whose bases lead to an exception."""
    classes = {
        node.name: (str(path.relative_to(root)), _bases(node))
        for path in sorted(root.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
    }
    found: dict[str, tuple[str, list[str]]] = {}
    changed = True
    while changed:  # a class is an exception when one of its bases is
        changed = False
        for name, (where, bases) in classes.items():
            if name not in found and any(b in BUILTIN_EXCEPTIONS or b in found for b in bases):
                found[name] = (where, bases)
                changed = True
    return found


def outside_the_tree(found: dict[str, tuple[str, list[str]]]) -> list[str]:
    """Exceptions none of whose bases is a pilothouse exception (builtins only)."""
    return sorted(
        f"{where}: {name}({', '.join(bases)})"
        for name, (where, bases) in found.items()
        if name != "PilothouseError" and all(b in BUILTIN_EXCEPTIONS for b in bases)
    )


def test_every_exception_derives_from_pilothouse_error() -> None:
    assert outside_the_tree(exception_classes(SRC)) == []


def test_every_exception_is_drawn_in_the_tree() -> None:
    drawn = errors.__doc__ or ""
    missing = [name for name in exception_classes(SRC) if not re.search(rf"\b{name}\b", drawn)]
    assert missing == []


def test_the_check_catches_an_exception_outside_the_tree(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(
        "class PilothouseError(Exception): ...\n"
        "class Inside(PilothouseError): ...\n"
        "class AlsoValue(Inside, ValueError): ...\n"
        "class Outside(ValueError): ...\n"
    )
    assert outside_the_tree(exception_classes(tmp_path)) == ["a.py: Outside(ValueError)"]


@pytest.mark.parametrize(
    "name", ["SpecProblems", "KVEventDecodeError", "_Missing", "_Expired", "_HttpError"]
)
def test_the_former_outsiders_are_found(name: str) -> None:
    assert name in exception_classes(SRC)
