"""Engine-kind knowledge lives in the adapters: no module compares an engine to a name.

A comparison such as ``model.engine == "vllm"`` or ``plan.engine in ("sim", "vllm")``
outside ``pilothouse.engines`` is a branch the kind's adapter should answer instead.
``config`` keeps the Fleet schema's own checks (it sits below the adapters).
"""

from __future__ import annotations

import ast
from pathlib import Path

from pilothouse import errors

SRC = Path(errors.__file__).resolve().parent
ALLOWED = ("engines/", "config/")


def _is_engine(node: ast.expr) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return name == "engine"


def _is_literal(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Tuple | ast.Set | ast.List):
        return bool(node.elts) and all(_is_literal(e) for e in node.elts)
    return False


def engine_branches(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        where = str(path.relative_to(root))
        if where.startswith(ALLOWED):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Compare)
                and _is_engine(node.left)
                and any(_is_literal(c) for c in node.comparators)
            ):
                found.append(f"{where}:{node.lineno}")
    return found


def test_no_module_branches_on_an_engine_name() -> None:
    assert engine_branches(SRC) == []


def test_the_check_sees_a_branch(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        'if model.engine == "vllm": pass\n'
        'if plan.engine in ("sim", "vllm"): pass\n'
        "if engine != SIM: pass\n"  # a constant's name: not caught, kept out by review
        'if kind.name == "vllm": pass\n'
    )
    assert engine_branches(tmp_path) == ["m.py:1", "m.py:2"]
