"""Exact table comparison between two MariaDB servers, for replication tests.

    assert_same_tables(source, target, [(("wl", "t_int"), ("wl_copy", "t_int"))])
    wait_until_equal(source, target, pairs, timeout=60)   # polls, then asserts

Every value is fetched as the bytes of its text form (`CAST(col AS BINARY)`, FLOAT widened
to DOUBLE first, TIMESTAMP in UTC), so floats, binary strings and temporal values compare
exactly and NULL stays distinct from ''. Rows are matched by the source's primary key (or
by the whole row on a table without one) in Python, so the target's collation cannot
reorder or merge them. A difference raises `TablesDiffer` (an AssertionError) whose message
names the table, counts missing/extra/duplicated/differing rows and shows the first few.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pymysql

from testbed.mariadb import MariaDBServer

TableRef = tuple[str, str]
Pair = tuple[TableRef, TableRef]
Row = tuple[bytes | None, ...]

MAX_SHOWN = 5  # examples shown per kind of difference
MAX_VALUE = 80  # characters shown of one value


class TablesDiffer(AssertionError):
    pass


@dataclass(frozen=True)
class Column:
    name: str
    column_type: str
    data_type: str


@dataclass
class RowDiff:
    """Differences of one table pair's rows; keys and rows are the compared byte values."""

    columns: list[str]
    key_cols: list[str]
    source_rows: int = 0
    target_rows: int = 0
    missing: list[Row] = field(default_factory=list)  # in source only
    extra: list[Row] = field(default_factory=list)  # in target only
    duplicated: list[tuple[Row, int, int]] = field(default_factory=list)  # row, src n, tgt n
    differing: list[tuple[Row, Row]] = field(default_factory=list)  # source row, target row

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.duplicated or self.differing)


def show(value: bytes | None) -> str:
    """A value readably: NULL, a quoted string when it is UTF-8 text, else 0x-hex."""
    if value is None:
        return "NULL"
    try:
        text = repr(value.decode("utf-8"))
    except UnicodeDecodeError:
        text = "0x" + value.hex()
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."


def _show_row(columns: Sequence[str], row: Row) -> str:
    return "{" + ", ".join(f"{c}={show(v)}" for c, v in zip(columns, row, strict=True)) + "}"


def diff_rows(columns: Sequence[str], key_cols: Sequence[str],
              source_rows: Iterable[Row], target_rows: Iterable[Row]) -> RowDiff:
    """Match rows by key_cols (all columns when empty) and list what differs."""
    idx = [columns.index(c) for c in key_cols] if key_cols else list(range(len(columns)))
    src: dict[Row, list[Row]] = {}
    tgt: dict[Row, list[Row]] = {}
    d = RowDiff(list(columns), list(key_cols))
    for rows, into in ((source_rows, src), (target_rows, tgt)):
        for row in rows:
            into.setdefault(tuple(row[i] for i in idx), []).append(tuple(row))
    d.source_rows = sum(map(len, src.values()))
    d.target_rows = sum(map(len, tgt.values()))
    for key, s_rows in src.items():
        t_rows = tgt.get(key)
        if not t_rows:
            d.missing += s_rows
            continue
        if len(s_rows) == 1 and len(t_rows) == 1:
            if s_rows[0] != t_rows[0]:
                d.differing.append((s_rows[0], t_rows[0]))
            continue
        # Same key more than once on one side: compare as multisets.
        sc, tc = Counter(s_rows), Counter(t_rows)
        for row in sc.keys() | tc.keys():
            if sc[row] and tc[row] and sc[row] != tc[row]:
                d.duplicated.append((row, sc[row], tc[row]))
            elif not tc[row]:
                d.missing += [row] * sc[row]
            elif not sc[row]:
                d.extra += [row] * tc[row]
    for key, t_rows in tgt.items():
        if key not in src:
            d.extra += t_rows
    return d


def format_diff(pair: Pair, d: RowDiff) -> str:
    (ss, st), (ts, tt) = pair
    cols = d.columns
    lines = [f"{ss}.{st} -> {ts}.{tt}: {len(d.missing)} missing in target, {len(d.extra)} "
             f"extra in target, {len(d.duplicated)} duplicated, {len(d.differing)} differing "
             f"(source {d.source_rows} rows, target {d.target_rows} rows)"]
    key = d.key_cols or cols

    def key_of(row: Row) -> str:
        return ", ".join(f"{c}={show(row[cols.index(c)])}" for c in key)

    for row in d.missing[:MAX_SHOWN]:
        lines.append(f"  missing in target: {_show_row(cols, row)}")
    for row in d.extra[:MAX_SHOWN]:
        lines.append(f"  extra in target: {_show_row(cols, row)}")
    for row, ns, nt in d.duplicated[:MAX_SHOWN]:
        lines.append(f"  duplicated: {ns}x in source, {nt}x in target: {_show_row(cols, row)}")
    for s_row, t_row in d.differing[:MAX_SHOWN]:
        diffs = "; ".join(f"{c}: source {show(a)} != target {show(b)}"
                          for c, a, b in zip(cols, s_row, t_row, strict=True) if a != b)
        lines.append(f"  differing at ({key_of(s_row)}): {diffs}")
    return "\n".join(lines)


# --- reading from the servers ------------------------------------------------------------------

def table_columns(server: MariaDBServer, schema: str, table: str) -> list[Column]:
    return [Column(*r) for r in server.query(
        "SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
        (schema, table))]


def primary_key(server: MariaDBServer, schema: str, table: str) -> list[str]:
    return [r[0] for r in server.query(
        "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
        "AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
        (schema, table))]


def _expr(c: Column) -> str:
    col = f"`{c.name}`"
    if c.data_type == "float":
        col = f"({col} + 0e0)"  # DOUBLE's text is exact, FLOAT's is rounded
    return f"CAST({col} AS BINARY)"


def fetch_rows(server: MariaDBServer, schema: str, table: str,
               columns: Sequence[Column]) -> list[Row]:
    exprs = ", ".join(_expr(c) for c in columns)
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")  # TIMESTAMPs as stored
        cur.execute(f"SELECT {exprs} FROM `{schema}`.`{table}`")
        return [tuple(r) for r in cur.fetchall()]


def compare_pair(source: MariaDBServer, target: MariaDBServer, pair: Pair,
                 ignore_columns: Sequence[str] = (), check_types: bool = True) -> str | None:
    """None when the tables hold the same columns and rows, else a readable report."""
    (ss, st), (ts, tt) = pair
    name = f"{ss}.{st} -> {ts}.{tt}"
    ignore = set(ignore_columns)
    s_cols = [c for c in table_columns(source, ss, st) if c.name not in ignore]
    t_cols = [c for c in table_columns(target, ts, tt) if c.name not in ignore]
    if not s_cols:
        return f"{name}: source table does not exist"
    if not t_cols:
        return f"{name}: target table does not exist"

    def col_list(cols: list[Column]) -> list[str]:
        return [f"{c.name} {c.column_type}" if check_types else c.name for c in cols]

    if col_list(s_cols) != col_list(t_cols):
        return (f"{name}: columns differ\n  source: {', '.join(col_list(s_cols))}\n"
                f"  target: {', '.join(col_list(t_cols))}")
    key = [k for k in primary_key(source, ss, st) if k not in ignore]
    d = diff_rows([c.name for c in s_cols], key, fetch_rows(source, ss, st, s_cols),
                  fetch_rows(target, ts, tt, t_cols))
    return None if d.equal else format_diff(pair, d)


def compare_tables(source: MariaDBServer, target: MariaDBServer, pairs: Sequence[Pair],
                   ignore_columns: Sequence[str] = (), check_types: bool = True) -> list[str]:
    reports = []
    for pair in pairs:
        report = compare_pair(source, target, pair, ignore_columns, check_types)
        if report is not None:
            reports.append(report)
    return reports


def assert_same_tables(source: MariaDBServer, target: MariaDBServer, pairs: Sequence[Pair],
                       ignore_columns: Sequence[str] = (), check_types: bool = True) -> None:
    """Raise TablesDiffer naming every table pair that differs, with examples."""
    reports = compare_tables(source, target, pairs, ignore_columns, check_types)
    if reports:
        raise TablesDiffer(f"{len(reports)} of {len(pairs)} tables differ:\n"
                           + "\n".join(reports))


def wait_until_equal(source: MariaDBServer, target: MariaDBServer, pairs: Sequence[Pair],
                     timeout: float = 60.0, *, ignore_columns: Sequence[str] = (),
                     check_types: bool = True, interval: float = 0.5,
                     check: Callable[[], None] | None = None) -> float:
    """Poll until the tables are equal (replication caught up); returns the seconds it took.
    On timeout, raises TablesDiffer with the last differences. `check` runs on each poll
    and may raise to fail fast (e.g. when the replica stopped with an error)."""
    t0 = time.monotonic()
    while True:
        if check is not None:
            check()
        try:
            reports = compare_tables(source, target, pairs, ignore_columns, check_types)
        except pymysql.MySQLError as exc:
            # A DDL that lands between reading the columns and the rows; try again.
            reports = [f"comparison failed: {exc}"]
        elapsed = time.monotonic() - t0
        if not reports:
            return elapsed
        if elapsed > timeout:
            raise TablesDiffer(f"still {len(reports)} of {len(pairs)} tables differ after "
                               f"{timeout:.0f}s:\n" + "\n".join(reports))
        time.sleep(interval)


def checksum_tables(server: MariaDBServer, tables: Iterable[TableRef]) -> dict[TableRef, Any]:
    """CHECKSUM TABLE of each table (None for a missing one); a cheap first look."""
    refs = list(tables)
    names = ", ".join(f"`{s}`.`{t}`" for s, t in refs)
    return dict(zip(refs, (r[1] for r in server.query(f"CHECKSUM TABLE {names}")), strict=True))
