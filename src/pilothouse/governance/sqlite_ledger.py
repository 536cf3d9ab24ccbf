"""The ledger's batch INSERT on SQLite: few statements, few statement texts.

The driver's own statement, not SQLAlchemy's compiled INSERT … RETURNING: the ledger is the
one write whose cost grows with traffic, and this halves its CPU per row (14 → 7 µs; the
gateway's own CPU). Same semantics: a known entry id is skipped (``ON CONFLICT DO
NOTHING``), and sqlite3 sums the rows each statement changed into ``rowcount`` (0 for a
skipped one).

Many rows per statement: sqlite3 releases the GIL around every step, and a step per row made
the ledger's worker thread and the event loop trade the GIL hundreds of times per batch
(context switches the gateway paid for). Statements of a power of two rows only (250 rows:
256, padded; 200 rows: 128 + 64 + 8): a handful of texts that sqlite3 keeps compiled, where
one statement per batch size compiled a new one for nearly every batch (a third more CPU per
row).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from itertools import chain
from typing import Any

from sqlalchemy import Connection

from pilothouse.governance import schema

_ROW = f"({', '.join('?' for _ in schema.LEDGER_COLUMNS)})"
ROWS_PER_STATEMENT = 2048
"""Rows per multi-row INSERT at most (12 parameters each, 24,576 in all: below SQLite's
32,766); a power of two, as every statement's row count is. A default batch (2,000) is one
statement."""
_PAD_SHARE = 8
"""A statement may be padded by up to 1/8 of its real rows (see :func:`statement_size`)."""


def insert_rows(conn: Connection, rows: Sequence[Sequence[Any]]) -> int:
    """Insert ``rows`` (values in :data:`schema.LEDGER_COLUMNS` order, unique ids) into the
    ledger, skipping ids it has; the number inserted."""
    inserted = 0
    start = 0
    while start < len(rows):
        taken, size = statement_size(len(rows) - start)
        chunk = list(rows[start : start + taken])
        if size > taken:  # copies of the last row: conflicts, skipped
            chunk += [chunk[-1]] * (size - taken)
        result = conn.exec_driver_sql(_insert(size), tuple(chain.from_iterable(chunk)))
        inserted += result.rowcount
        start += taken
    return inserted


def statement_size(left: int) -> tuple[int, int]:
    """``(rows, size)``: how many of ``left`` rows the next INSERT takes, and its row count.

    The size is a power of two (a handful of statement texts, kept compiled); when the next
    power up is within an eighth of ``rows`` the statement is padded with copies of its last
    row, which ``ON CONFLICT DO NOTHING`` skips (no change counted): a batch of 2,000 is one
    statement, not six (each one a step that trades the GIL with the event loop twice)."""
    ceiling = 1 << (left - 1).bit_length()
    if ceiling <= ROWS_PER_STATEMENT and ceiling - left <= left // _PAD_SHARE:
        return left, ceiling
    size = min(ROWS_PER_STATEMENT, 1 << (left.bit_length() - 1))
    return size, size


@functools.lru_cache(maxsize=16)
def _insert(rows: int) -> str:
    return (
        f"INSERT INTO ledger ({', '.join(schema.LEDGER_COLUMNS)}) "
        f"VALUES {', '.join([_ROW] * rows)} "
        "ON CONFLICT (id) DO NOTHING"
    )
