"""SQL that applies binlog row changes to the target, in order, a batch at a time.

Values arrive as the text of SQL literals ("12", "NULL", "_binary'a'", "'2024-01-01'"),
positional per column, so building a statement is pure string joining; what depends only
on the table (quoted names, statement heads) is built once per table and cached.

Row identity. A row is found by its key columns (`RowChange.key`: the primary key, or a
unique key) when none of its key values is NULL. Otherwise - a table without a key, or a
nullable unique key holding NULL, which identifies nothing since such keys may repeat -
the row is found by comparing every non-generated column (`IS NULL` for NULLs) with
`LIMIT 1`, so exactly one of several identical rows is touched, as DM does. Comparing
with `=` is inexact for FLOAT/DOUBLE columns (the binlog's text of a float need not compare
equal to the stored value) and loose for case- or accent-insensitive collations; DM has the
same limits: give such tables a key.

Merging never reorders two operations on one row:
- only consecutive changes of the same kind on the same table merge;
- INSERT rows of one statement are applied in order, so a multi-row INSERT equals the single
  INSERTs as long as no key repeats; a repeated (non-NULL) key starts a new statement, so
  the duplicate fails exactly where the single INSERTs would. REPLACE applies its rows in
  order too, later rows overwriting earlier ones, so safe mode needs no split;
- the rows of a DELETE run are distinct live rows (or repeats, deleted once either way), so
  deletes commute and one statement per run is exact; rows found by all columns need
  `LIMIT 1` each, hence a statement each;
- non-safe UPDATEs that keep their key (the same literal text) merge into one
  `UPDATE … SET c = CASE WHEN key=… THEN … END, … WHERE key IN (…)` per run when the
  change allows it (`RowChange.merge_updates`: a NOT NULL key compared exactly, no other
  unique key whose values could move between the rows in binlog order); a repeated key
  starts a new statement, since CASE takes the first match. Other updates are one
  statement per row (a key may change: `SET` all columns `WHERE` the before key).
  Safe-mode updates become REPLACE of the after row, preceded by a DELETE
  of the before row when its key changes or the row has no usable key; consecutive
  REPLACE rows share one statement, a DELETE splitting it.

Safe mode (REPLACE/DELETE by key) makes replaying a window of already applied changes
converge, but only for rows with a non-NULL key: without one, REPLACE is a plain INSERT and
a replayed insert duplicates the row (DM has the same limit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from errors import SYNC_COLUMN_MISMATCH
from mysqlkit.sqlquote import quote_ident

__all__ = [
    "DEFAULT_MAX_ROWS",
    "NULL",
    "RowChange",
    "TableSQL",
    "build_batch",
    "row_identity",
    "table_sql",
]

ChangeKind = Literal["insert", "update", "delete"]

# The literal text of SQL NULL, as the binlog reader writes it.
NULL = "NULL"

# Rows per multi-row statement: bounds the statement size well under max_allowed_packet for
# ordinary rows, and keeps MariaDB's IN-list-to-subquery conversion (1000 values) away.
DEFAULT_MAX_ROWS = 512

# Rows per merged UPDATE: each row's CASEs (one per column set) compare its key with
# every WHEN of the statement, so the server's work grows with rows^2 * columns; wide tables
# merge fewer rows (the text also repeats every key once per column).
MAX_MERGED_UPDATES = 64
MERGED_CELLS = 1024  # rows * columns set, per merged UPDATE

_CACHE_LIMIT = 4096


@dataclass(slots=True)
class RowChange:
    """One row event, routed to its target table.

    `columns` names every column of the binlog row, positionally; `skip` holds the indexes
    of generated columns, never written; `key` the indexes of the identifying columns (empty:
    the table has no key). `before` is set for update/delete, `after` for insert/update.
    `merge_updates`: key-preserving updates of this table may share one statement (the
    key identifies rows exactly: NOT NULL, compared without case or accent folding, and
    the table has no other unique key).
    """

    kind: ChangeKind
    schema: str
    table: str
    columns: tuple[str, ...]
    skip: frozenset[int] = frozenset()
    key: tuple[int, ...] = ()
    before: tuple[str, ...] | None = None
    after: tuple[str, ...] | None = None
    merge_updates: bool = False


class TableSQL:
    """Per-table statement parts, built once per (schema, table, columns, skip, key)."""

    __slots__ = (
        "delete_head", "insert_head", "key", "key_eq", "name", "ncols",
        "null_cond", "replace_head", "update_head", "value_eq", "write", "write_eq",
    )

    def __init__(self, schema: str, table: str, columns: tuple[str, ...],
                 skip: frozenset[int], key: tuple[int, ...]) -> None:
        n = len(columns)
        if any(not 0 <= i < n for i in key) or any(not 0 <= i < n for i in skip):
            raise ValueError(f"key or skip index out of range for {schema}.{table}")
        self.name = f"{quote_ident(schema)}.{quote_ident(table)}"
        self.ncols = n
        quoted = [quote_ident(c) for c in columns]
        self.write = tuple(i for i in range(n) if i not in skip)
        if not self.write:
            raise ValueError(f"table {schema}.{table} has no column to write")
        col_list = ",".join(quoted[i] for i in self.write)
        self.insert_head = f"INSERT INTO {self.name} ({col_list}) VALUES "
        self.replace_head = f"REPLACE INTO {self.name} ({col_list}) VALUES "
        self.update_head = f"UPDATE {self.name} SET "
        self.delete_head = f"DELETE FROM {self.name} WHERE "
        self.key = key
        self.key_eq = tuple(quoted[i] + "=" for i in key)
        # Key columns may be generated (a unique index on a stored generated column): they
        # can be compared, only never written.
        self.write_eq = tuple(quoted[i] + "=" for i in self.write)
        # The written columns outside the key: what a key-preserving update sets.
        self.value_eq = tuple((i, quoted[i] + "=") for i in self.write if i not in key)
        self.null_cond = tuple(quoted[i] + " IS NULL" for i in self.write)

    def check(self, values: tuple[str, ...] | None, change: RowChange) -> tuple[str, ...]:
        if values is None:
            raise ValueError(f"{change.kind} of {self.name} lacks a row image")
        if len(values) != self.ncols:
            raise SYNC_COLUMN_MISMATCH(self.ncols, len(values), self.name)
        return values

    def row(self, values: tuple[str, ...]) -> str:
        return "(" + ",".join([values[i] for i in self.write]) + ")"

    def key_values(self, values: tuple[str, ...]) -> tuple[str, ...] | None:
        """The key of a row, or None when the row must be found by all its columns."""
        if not self.key:
            return None
        kv = tuple([values[i] for i in self.key])
        return None if NULL in kv else kv

    def key_cond(self, kv: tuple[str, ...]) -> str:
        return " AND ".join([eq + v for eq, v in zip(self.key_eq, kv, strict=True)])

    def full_cond(self, values: tuple[str, ...]) -> str:
        """All written columns equal (NULL-safe); used with LIMIT 1."""
        parts = []
        for eq, isnull, i in zip(self.write_eq, self.null_cond, self.write, strict=True):
            v = values[i]
            parts.append(isnull if v == NULL else eq + v)
        return " AND ".join(parts)

    def where(self, values: tuple[str, ...]) -> str:
        """` WHERE …` finding the row with these values (`LIMIT 1` without a usable key)."""
        kv = self.key_values(values)
        if kv is not None:
            return " WHERE " + self.key_cond(kv)
        return " WHERE " + self.full_cond(values) + " LIMIT 1"

    def keys_cond(self, keys: list[tuple[str, ...]]) -> str:
        """A condition matching the rows with these (non-NULL, several) keys."""
        if len(self.key) == 1:
            return self.key_eq[0][:-1] + " IN (" + ",".join([k[0] for k in keys]) + ")"
        # OR of ANDs rather than `(a,b) IN ((..),(..))`: MariaDB's range optimizer handles
        # the former on any version (see tests/mariadb/test_dml_apply.py's EXPLAIN check).
        return " OR ".join(["(" + self.key_cond(k) + ")" for k in keys])

    def delete_keys(self, keys: list[tuple[str, ...]]) -> str:
        """One DELETE of rows with these (non-NULL) keys."""
        if len(keys) == 1:
            return self.delete_head + self.key_cond(keys[0])
        return self.delete_head + self.keys_cond(keys)

    def update_keys(self, keys: list[tuple[str, ...]], afters: list[tuple[str, ...]]) -> str:
        """One UPDATE giving each row found by its key (unchanged, non-NULL, distinct) the
        values of its after image: a CASE per written non-key column."""
        whens = [" WHEN " + self.key_cond(k) + " THEN " for k in keys]
        sets = [eq + "CASE" + "".join([w + a[i] for w, a in zip(whens, afters, strict=True)])
                + " END" for i, eq in self.value_eq]
        return self.update_head + ",".join(sets) + " WHERE " + self.keys_cond(keys)


_cache: dict[tuple[str, str, tuple[str, ...], frozenset[int], tuple[int, ...]], TableSQL] = {}


def table_sql(change: RowChange) -> TableSQL:
    """The cached statement parts of the change's table."""
    ck = (change.schema, change.table, change.columns, change.skip, change.key)
    t = _cache.get(ck)
    if t is None:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()  # schema changes leave stale entries; start over, rarely
        t = _cache[ck] = TableSQL(*ck)
    return t


def row_identity(change: RowChange, values: tuple[str, ...]) -> tuple[str, ...]:
    """What identifies the row with these values: its key values, or every non-generated
    value when it has no usable key (the same rule the statements use)."""
    if change.key:
        kv = tuple([values[i] for i in change.key])
        if NULL not in kv:
            return kv
    skip = change.skip
    return tuple([v for i, v in enumerate(values) if i not in skip]) if skip else values


def _same_table(a: RowChange, b: RowChange) -> bool:
    return (a.table == b.table and a.schema == b.schema
            and (a.columns is b.columns or a.columns == b.columns)
            and a.skip == b.skip and a.key == b.key)


def build_batch(changes: Sequence[RowChange], safe_mode: bool,
                max_rows: int = DEFAULT_MAX_ROWS) -> list[str]:
    """Statements applying `changes` in order (see the module doc for why merging is exact).

    Raises SYNC_COLUMN_MISMATCH when a row image does not have one value per column.
    """
    if max_rows < 1:
        raise ValueError("max_rows must be at least 1")
    out: list[str] = []
    i, n = 0, len(changes)
    while i < n:
        first = changes[i]
        j = i + 1
        while j < n and changes[j].kind == first.kind and _same_table(changes[j], first):
            j += 1
        t = table_sql(first)
        run = changes[i:j]
        if first.kind == "insert":
            _inserts(t, run, safe_mode, max_rows, out)
        elif first.kind == "delete":
            _deletes(t, run, max_rows, out)
        elif first.kind == "update":
            if safe_mode:
                _safe_updates(t, run, max_rows, out)
            elif first.merge_updates and t.value_eq:
                rows = min(max_rows, MAX_MERGED_UPDATES, MERGED_CELLS // len(t.value_eq))
                _merged_updates(t, run, max(2, rows), out)
            else:
                _updates(t, run, out)
        else:
            raise ValueError(f"unknown row change kind {first.kind!r}")
        i = j
    return out


def _inserts(t: TableSQL, run: Sequence[RowChange], safe_mode: bool, max_rows: int,
             out: list[str]) -> None:
    head = t.replace_head if safe_mode else t.insert_head
    # Only INSERT can fail on a repeated key; with no key nothing can repeat.
    seen: set[tuple[str, ...]] | None = None if safe_mode or not t.key else set()
    rows: list[str] = []
    for c in run:
        values = t.check(c.after, c)
        if seen is not None:
            kv = t.key_values(values)
            if kv is not None:
                if kv in seen:
                    out.append(head + ",".join(rows))
                    rows = []
                    seen.clear()
                seen.add(kv)
        rows.append(t.row(values))
        if len(rows) >= max_rows:
            out.append(head + ",".join(rows))
            rows = []
            if seen is not None:
                seen.clear()
    if rows:
        out.append(head + ",".join(rows))


def _deletes(t: TableSQL, run: Sequence[RowChange], max_rows: int, out: list[str]) -> None:
    keys: list[tuple[str, ...]] = []
    for c in run:
        values = t.check(c.before, c)
        kv = t.key_values(values)
        if kv is None:
            # Deletes commute, so this one may go before the keyed statement of its run.
            out.append(t.delete_head + t.full_cond(values) + " LIMIT 1")
            continue
        keys.append(kv)
        if len(keys) >= max_rows:
            out.append(t.delete_keys(keys))
            keys = []
    if keys:
        out.append(t.delete_keys(keys))


def _updates(t: TableSQL, run: Sequence[RowChange], out: list[str]) -> None:
    for c in run:
        before = t.check(c.before, c)
        after = t.check(c.after, c)
        out.append(t.update_head + _sets(t, after) + t.where(before))


def _merged_updates(t: TableSQL, run: Sequence[RowChange], max_rows: int,
                    out: list[str]) -> None:
    keys: list[tuple[str, ...]] = []
    afters: list[tuple[str, ...]] = []
    seen: set[tuple[str, ...]] = set()

    def flush() -> None:
        if len(keys) == 1:
            _update_one(t, keys[0], afters[0], out)
        elif keys:
            out.append(t.update_keys(keys, afters))
        keys.clear()
        afters.clear()
        seen.clear()

    for c in run:
        before = t.check(c.before, c)
        after = t.check(c.after, c)
        kb = t.key_values(before)
        if kb is None or kb != t.key_values(after):
            flush()  # the key changes (or finds nothing exactly): a statement of its own
            out.append(t.update_head + _sets(t, after) + t.where(before))
            continue
        if kb in seen:
            flush()  # CASE would take the first of two updates of one row
        seen.add(kb)
        keys.append(kb)
        afters.append(after)
        if len(keys) >= max_rows:
            flush()
    flush()


def _update_one(t: TableSQL, key: tuple[str, ...], after: tuple[str, ...],
                out: list[str]) -> None:
    out.append(t.update_head + ",".join([eq + after[i] for i, eq in t.value_eq])
               + " WHERE " + t.key_cond(key))


def _sets(t: TableSQL, after: tuple[str, ...]) -> str:
    return ",".join([eq + after[i] for eq, i in zip(t.write_eq, t.write, strict=True)])


def _safe_updates(t: TableSQL, run: Sequence[RowChange], max_rows: int,
                  out: list[str]) -> None:
    rows: list[str] = []
    for c in run:
        before = t.check(c.before, c)
        after = t.check(c.after, c)
        kb = t.key_values(before)
        if kb is None or kb != t.key_values(after):
            # REPLACE only removes the row holding the after key; the before row must go
            # first, after the REPLACE rows ahead of it (one of them may have written it).
            if rows:
                out.append(t.replace_head + ",".join(rows))
                rows = []
            if kb is None:
                out.append(t.delete_head + t.full_cond(before) + " LIMIT 1")
            else:
                out.append(t.delete_head + t.key_cond(kb))
        rows.append(t.row(after))
        if len(rows) >= max_rows:
            out.append(t.replace_head + ",".join(rows))
            rows = []
    if rows:
        out.append(t.replace_head + ",".join(rows))
