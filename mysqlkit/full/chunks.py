"""Splitting a table into chunks: contiguous ranges of its chunk key (PK or NOT NULL UK).

The ranges cover every row exactly once: the first is unbounded below, the last unbounded
above, and each boundary belongs to the range it opens. The plan depends only on the data
(exact counts, no optimizer estimates), so the same data always gives the same chunks and
chunk indexes can serve as checkpoint ids.

Run the planning inside the dump's snapshot transaction to plan exactly what is dumped; on
any other connection, rows written in between still land in exactly one range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import asyncmy

from mysqlkit.schema.tableinfo import ColumnInfo, TableInfo, key_literal_expr, order_expr
from mysqlkit.upstream import as_text as _text
from mysqlkit.upstream import fetchall as _fetchall

__all__ = ["Chunk", "plan_chunks", "range_condition"]


@dataclass(frozen=True)
class Chunk:
    schema: str
    table: str
    index: int  # 0-based position in the table's plan: stable for the same data
    # An SQL condition on the chunk key with its literals inlined (no parameters), or None
    # for the whole table.
    where: str | None
    est_rows: int




def _compare(exprs: Sequence[str], literals: Sequence[str], op: str) -> str:
    """Lexicographic `(e1, e2, ...) op (l1, l2, ...)` for op in '<' / '>='.

    Spelled out as an OR of ANDs rather than a row constructor: MariaDB's range optimizer
    does not use an index for row-constructor comparisons, but does for this form.
    """
    strict = "<" if op == "<" else ">"
    terms = []
    for i in range(len(exprs)):
        eqs = [f"{exprs[j]} = {literals[j]}" for j in range(i)]
        last = op if i == len(exprs) - 1 else strict
        terms.append(" AND ".join([*eqs, f"{exprs[i]} {last} {literals[i]}"]))
    if len(terms) == 1:
        return terms[0]
    return "(" + " OR ".join(f"({t})" for t in terms) + ")"


def range_condition(exprs: Sequence[str], lower: Sequence[str] | None,
                    upper: Sequence[str] | None) -> str | None:
    """`lower <= key < upper` with either end open (None); None if both are."""
    parts = []
    if lower is not None:
        parts.append(_compare(exprs, lower, ">="))
    if upper is not None:
        parts.append(_compare(exprs, upper, "<"))
    return " AND ".join(parts) if parts else None


def _chunks_from_bounds(info: TableInfo, exprs: Sequence[str],
                        bounds: Sequence[Sequence[str]], rows: Sequence[int]) -> list[Chunk]:
    edges: list[Sequence[str] | None] = [None, *bounds, None]
    return [
        Chunk(info.schema, info.table, i, range_condition(exprs, edges[i], edges[i + 1]),
              rows[i])
        for i in range(len(bounds) + 1)
    ]


async def plan_chunks(conn: asyncmy.Connection, info: TableInfo,
                      rows_per_chunk: int = 100_000) -> list[Chunk]:
    """Split `info`'s table into ranges of about `rows_per_chunk` rows.

    - no chunk key: one chunk (where None);
    - a single integer key: COUNT, MIN and MAX give n = ceil(count / rows_per_chunk)
      equal-width ranges of the key space (uneven for sparse keys, but cheap);
    - any other key: boundaries are the rows at every `rows_per_chunk` in key order, found
      by stepping `WHERE key >= previous ORDER BY key LIMIT 1 OFFSET rows_per_chunk`
      through the index (one index scan overall); each chunk has exactly that many rows.
    """
    if rows_per_chunk < 1:
        raise ValueError("rows_per_chunk must be positive")
    whole = [Chunk(info.schema, info.table, 0, None, info.est_rows)]
    if not info.chunk_key:
        return whole
    cols = [info.column(name) for name in info.chunk_key]
    if len(cols) == 1 and cols[0].is_integer:
        return await _plan_integer(conn, info, cols[0], rows_per_chunk)
    return await _plan_sampled(conn, info, cols, rows_per_chunk)


async def _plan_integer(conn: asyncmy.Connection, info: TableInfo, col: ColumnInfo,
                        rows_per_chunk: int) -> list[Chunk]:
    q = order_expr(col)
    [(lo, hi, count)] = await _fetchall(
        conn, f"SELECT MIN({q}), MAX({q}), COUNT(*) FROM {info.quoted_name}")
    count = int(count)
    if count <= rows_per_chunk or lo is None:
        return [Chunk(info.schema, info.table, 0, None, count)]
    lo, hi = int(lo), int(hi)
    n = math.ceil(count / rows_per_chunk)
    step = max(1, math.ceil((hi - lo + 1) / n))
    bounds = []
    b = lo + step
    while b <= hi:
        bounds.append([str(b)])
        b += step
    per = math.ceil(count / (len(bounds) + 1))
    return _chunks_from_bounds(info, [q], bounds, [per] * (len(bounds) + 1))


async def _plan_sampled(conn: asyncmy.Connection, info: TableInfo, cols: list[ColumnInfo],
                        rows_per_chunk: int) -> list[Chunk]:
    exprs = [order_expr(c) for c in cols]
    literals = ", ".join(key_literal_expr(c) for c in cols)
    order = ", ".join(exprs)
    bounds: list[list[str]] = []
    while True:
        where = range_condition(exprs, bounds[-1] if bounds else None, None)
        rows = await _fetchall(
            conn,
            f"SELECT {literals} FROM {info.quoted_name}"
            f"{' WHERE ' + where if where else ''} "
            f"ORDER BY {order} LIMIT 1 OFFSET {rows_per_chunk}")
        if not rows:
            break
        bounds.append([_text(v) for v in rows[0]])
    # The last range holds at most rows_per_chunk rows: count them, bounded by a LIMIT.
    where = range_condition(exprs, bounds[-1] if bounds else None, None)
    [(last,)] = await _fetchall(
        conn,
        f"SELECT COUNT(*) FROM (SELECT 1 FROM {info.quoted_name}"
        f"{' WHERE ' + where if where else ''} LIMIT {rows_per_chunk}) AS t")
    return _chunks_from_bounds(info, exprs, bounds, [rows_per_chunk] * len(bounds)
                               + [int(last)])
