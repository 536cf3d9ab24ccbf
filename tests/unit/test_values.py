"""``@value``: frozen for the type checker, a plain slotted dataclass at run time."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

from mypy import api as mypy_api

from pilothouse.scheduling.types import Endpoint
from pilothouse.values import value


@value
class _Pair:
    a: int
    b: str = "x"


def test_a_value_compares_hashes_and_replaces_by_its_fields() -> None:
    pair = _Pair(1)
    assert pair == _Pair(1, "x")
    assert pair != _Pair(2)
    assert hash(pair) == hash(_Pair(1))
    assert {pair: 1}[_Pair(1)] == 1
    assert dataclasses.replace(pair, a=2) == _Pair(2)
    assert [f.name for f in dataclasses.fields(pair)] == ["a", "b"]
    assert not hasattr(pair, "__dict__")  # slotted


def test_assigning_a_field_is_a_type_error(tmp_path: Path) -> None:
    """What ``frozen=True`` enforced at run time, mypy enforces on every change."""
    source = tmp_path / "mutate.py"
    source.write_text(
        textwrap.dedent(
            """
            from pilothouse.scheduling.types import Endpoint
            from pilothouse.values import value

            @value
            class Pair:
                a: int

            Pair(1).a = 2
            Endpoint(name="e", address="h:1", model="m").in_flight = 3
            """
        )
    )
    out, _, status = mypy_api.run(
        [str(source), "--no-incremental", "--cache-dir", str(tmp_path / "cache")]
    )
    assert status == 1
    assert 'Property "a" defined in "Pair" is read-only' in out
    assert 'Property "in_flight" defined in "Endpoint" is read-only' in out


def test_the_request_path_records_are_values() -> None:
    """Built per request: no ``object.__setattr__`` per field (the module's docstring)."""
    endpoint = Endpoint(name="e", address="h:1", model="m")
    assert not type(endpoint).__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert endpoint == Endpoint(name="e", address="h:1", model="m")
