"""Small composable checks of JSON values, with OpenAI's error messages and codes.

Each check takes the value and its parameter path (``messages[0].content``) and raises
:class:`~pilothouse.errors.BadRequest` the way the OpenAI API answers a bad request::

    {"error": {"message": "Invalid 'temperature': decimal above maximum value. Expected a
     value <= 2, but got 3 instead.", "type": "invalid_request_error",
     "param": "temperature", "code": "decimal_above_max_value"}}

They are plain functions built once at import (no per-request allocation beyond the
values themselves), so validating a request costs microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pilothouse.errors import BadRequest

Check = Callable[[Any, str], None]


def invalid_type(value: Any, param: str, expected: str) -> BadRequest:
    got = _json_type(value)
    return BadRequest(
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.",
        param=param,
        code="invalid_type",
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    def check(value: Any, param: str) -> None:
        if not _is_int(value):
            raise invalid_type(value, param, "an integer")
        _bounds(value, param, minimum, maximum, "integer")

    return check


def number(minimum: float | None = None, maximum: float | None = None) -> Check:
    def check(value: Any, param: str) -> None:
        if not _is_number(value):
            raise invalid_type(value, param, "a number")
        _bounds(value, param, minimum, maximum, "decimal")

    return check


def _bounds(value: float, param: str, low: float | None, high: float | None, kind: str) -> None:
    if low is not None and value < low:
        raise BadRequest(
            f"Invalid '{param}': {kind} below minimum value. Expected a value >= {low:g}, "
            f"but got {value:g} instead.",
            param=param,
            code=f"{kind}_below_min_value",
        )
    if high is not None and value > high:
        raise BadRequest(
            f"Invalid '{param}': {kind} above maximum value. Expected a value <= {high:g}, "
            f"but got {value:g} instead.",
            param=param,
            code=f"{kind}_above_max_value",
        )


def boolean(value: Any, param: str) -> None:
    if not isinstance(value, bool):
        raise invalid_type(value, param, "a boolean")


def string(
    choices: Sequence[str] | None = None, pattern: str | None = None, max_length: int | None = None
) -> Check:
    compiled = re.compile(pattern) if pattern is not None else None

    def check(value: Any, param: str) -> None:
        if not isinstance(value, str):
            raise invalid_type(value, param, "a string")
        if choices is not None and value not in choices:
            raise invalid_value(value, param, choices)
        if max_length is not None and len(value) > max_length:
            raise BadRequest(
                f"Invalid '{param}': string too long. Expected a string with maximum length "
                f"{max_length}, but got a string with length {len(value)} instead.",
                param=param,
                code="string_above_max_length",
            )
        if compiled is not None and compiled.fullmatch(value) is None:
            raise BadRequest(
                f"Invalid '{param}': string does not match pattern. Expected a string that "
                f"matches the pattern '{pattern}'.",
                param=param,
                code="invalid_value",
            )

    return check


def invalid_value(value: Any, param: str, choices: Sequence[str]) -> BadRequest:
    listed = ", ".join(f"'{c}'" for c in choices[:-1]) + f", and '{choices[-1]}'"
    shown = value if isinstance(value, str) else _json_type(value)
    return BadRequest(
        f"Invalid value for '{param}': '{shown}'. Supported values are: {listed}.",
        param=param,
        code="invalid_value",
    )


def array(items: Check | None = None, *, min_items: int = 0, max_items: int | None = None) -> Check:
    def check(value: Any, param: str) -> None:
        if not isinstance(value, list):
            raise invalid_type(value, param, "an array")
        if len(value) < min_items:
            code = "empty_array" if min_items == 1 else "array_below_min_length"
            raise BadRequest(
                f"Invalid '{param}': expected an array with minimum length {min_items}, "
                f"but got an array with length {len(value)} instead.",
                param=param,
                code=code,
            )
        if max_items is not None and len(value) > max_items:
            raise BadRequest(
                f"Invalid '{param}': expected an array with maximum length {max_items}, "
                f"but got an array with length {len(value)} instead.",
                param=param,
                code="array_above_max_length",
            )
        if items is not None:
            for i, item in enumerate(value):
                items(item, f"{param}[{i}]")

    return check


def obj(fields: Mapping[str, Check] | None = None, required: Sequence[str] = ()) -> Check:
    """An object; ``fields`` checked when present (``null`` counts as absent), ``required``
    must be present. Other members are allowed (engines take extra parameters)."""

    def check(value: Any, param: str) -> None:
        if not isinstance(value, dict):
            raise invalid_type(value, param, "an object")
        members(value, fields or {}, required, param)

    return check


def members(
    doc: Mapping[str, Any], fields: Mapping[str, Check], required: Sequence[str], prefix: str
) -> None:
    for name in required:
        if doc.get(name) is None:
            path = f"{prefix}.{name}" if prefix else name
            raise BadRequest(
                f"Missing required parameter: '{path}'.",
                param=path,
                code="missing_required_parameter",
            )
    if len(doc) < len(fields):
        # A body names a few of the many fields a table knows: check those present. On a
        # bad one, fall through to the table-order walk below, so the error names the same
        # field whatever order the body lists its fields in.
        try:
            for name, value in doc.items():
                check = fields.get(name)
                if check is not None and value is not None:
                    check(value, f"{prefix}.{name}" if prefix else name)
        except BadRequest:
            pass
        else:
            return
    for name, check in fields.items():
        value = doc.get(name)
        if value is not None:
            check(value, f"{prefix}.{name}" if prefix else name)


def any_of(expected: str, *options: tuple[Callable[[Any], bool], Check]) -> Check:
    """The first option whose guard accepts the value checks it; none: ``invalid_type``."""

    def check(value: Any, param: str) -> None:
        for guard, inner in options:
            if guard(value):
                inner(value, param)
                return
        raise invalid_type(value, param, expected)

    return check


def is_str(value: Any) -> bool:
    return isinstance(value, str)


def is_list(value: Any) -> bool:
    return isinstance(value, list)


def is_dict(value: Any) -> bool:
    return isinstance(value, dict)


def is_int(value: Any) -> bool:
    return _is_int(value)
