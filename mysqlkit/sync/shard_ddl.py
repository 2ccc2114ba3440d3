"""Shard merge DDL: what one shard table's DDL does to the table its group merges into.

With a task's `shard_mode` set, the upstream tables that route to one target table are a
sharding group. A DDL of one shard must not be replayed as it is: the second shard's
`ADD COLUMN c` would fail on a target that already has `c`, and one shard's `DROP TABLE`
would drop every shard's rows. dmray keeps the target's structure the union of its
shards' structures, the rule of DM's optimistic mode, in both modes:

- a column, index or table is added when the first shard adds it, and the same addition
  by the other shards is skipped (a column of another type is a conflict: 36102);
- a column or index is dropped only when no other shard still has it (the rows of the
  shards that have not dropped it yet still carry it); while that is not known, it stays;
- MODIFY of a column runs at once when it widens the column (every value of the old type
  fits the new one); otherwise once every other shard has the new type, since their rows
  may not fit it before (a narrowed VARCHAR would truncate them);
- renaming a column of a group with other shards is a conflict (the others' rows would
  name the old column); a RENAME TABLE, DROP TABLE or TRUNCATE TABLE of a shard, and a DROP
  DATABASE, are not run on the merged table (DM's rule too);
- all other alterations (options, charsets, constraints) run as they are.

`decide` is pure: the caller gives the target's structure and the other shards'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from errors import SYNC_SHARD_DDL
from mysqlkit.schema.ddl import DDL, AlterSpec, Column, Index
from mysqlkit.schema.tracker import TableSchema

__all__ = ["Decision", "decide"]


@dataclass(frozen=True)
class Decision:
    ddl: DDL | None  # what to run on the target (to be routed), None: nothing
    skipped: tuple[str, ...] = ()  # what is not run and why, for the log


def decide(ddl: DDL, target: TableSchema | None,
           peers: Sequence[TableSchema] | None) -> Decision:
    """`target`: the merged table's structure (None: it does not exist); `peers`: the
    current structures of the group's other shards (None: not all of them are known).

    Raises SYNC_SHARD_DDL when the DDL conflicts with the other shards."""
    kind = ddl.kind
    if kind in ("drop_table", "truncate_table", "rename_table", "drop_database"):
        return Decision(None, (f"{ddl.event_type} of a shard is not run on the merged "
                               f"table",))
    if kind == "create_table":
        if target is not None:
            return Decision(None, ("the merged table exists",))
        return Decision(ddl)
    if kind == "create_index":
        assert ddl.index is not None
        why = _index_exists(ddl.index, target)
        return Decision(None, (why,)) if why else Decision(ddl)
    if kind == "drop_index":
        why = _drop_index_skip(ddl.index_name, target, peers)
        return Decision(None, (why,)) if why else Decision(ddl)
    if kind != "alter_table" or target is None:
        return Decision(ddl)
    drop: list[int] = []
    why_all: list[str] = []
    for i, spec in enumerate(ddl.alters):
        why = _alter_skip(ddl, spec, target, peers)
        if why:
            drop.append(i)
            why_all.append(why)
    return Decision(ddl.without_alters(drop) if drop else ddl, tuple(why_all))


def _alter_skip(ddl: DDL, spec: AlterSpec, target: TableSchema,
                peers: Sequence[TableSchema] | None) -> str:
    """Why this alteration is not run on the merged table ("" = run it)."""
    op = spec.op
    if op == "add_column":
        assert spec.column is not None
        have = target.column(spec.column.name)
        if have is None:
            return ""
        if _type_key(have) == _type_key(spec.column):
            return f"column {spec.column.name} exists"
        raise _conflict(ddl, f"column {spec.column.name} is {have.column_type} on the "
                             f"target, this shard adds it as {spec.column.column_type}")
    if op == "drop_column":
        if target.column(spec.name) is None:
            return f"column {spec.name} is not there"
        if peers is None:
            return f"column {spec.name} stays: not every shard is known yet"
        holders = [p.table for p in peers if p.column(spec.name) is not None]
        if holders:
            return f"column {spec.name} stays: shard(s) {', '.join(holders)} still have it"
        return ""
    if op == "add_index":
        assert spec.index is not None
        return _index_exists(spec.index, target)
    if op == "drop_index":
        return _drop_index_skip(spec.name, target, peers)
    if op == "drop_primary_key":
        if not target.primary_key:
            return "the primary key is not there"
        if peers is None or any(p.primary_key for p in peers):
            return "the primary key stays while other shards have one"
        return ""
    if op in ("modify_column", "change_column"):
        return _modify_skip(ddl, spec, target, peers)
    if op == "rename_column":
        return _rename(ddl, spec.name, spec.new_name, target, peers)
    if op == "rename_table":
        return "a shard's RENAME is not run on the merged table"
    return ""


def _modify_skip(ddl: DDL, spec: AlterSpec, target: TableSchema,
                 peers: Sequence[TableSchema] | None) -> str:
    """MODIFY/CHANGE on one shard: run it when it widens the column or every shard has it
    now; a rename is a rename."""
    assert spec.column is not None
    renames = spec.name.casefold() != spec.column.name.casefold()
    if renames:
        return _rename(ddl, spec.name, spec.column.name, target, peers)
    have = target.column(spec.name)
    if have is None:
        return ""  # the server says what is wrong
    if have.definition == spec.column.definition:
        return f"column {spec.name} is already so"
    if _widens(have, spec.column):
        return ""
    if peers is not None and all(
            (c := p.column(spec.name)) is not None and _type_key(c) == _type_key(
                spec.column) and c.nullable == spec.column.nullable for p in peers):
        return ""  # the last shard to change it
    return (f"column {spec.name} keeps {have.column_type} until every shard has "
            f"{spec.column.column_type}: the other shards' rows may not fit it")


def _rename(ddl: DDL, old: str, new: str, target: TableSchema,
            peers: Sequence[TableSchema] | None) -> str:
    if target.column(old) is None and target.column(new) is not None:
        return f"column {old} is already renamed to {new}"
    if peers is not None and not peers:
        return ""
    raise _conflict(ddl, f"renaming column {old} to {new} on one shard of a group: the "
                         f"other shards' rows still name {old}")


def _index_exists(ix: Index, target: TableSchema | None) -> str:
    if target is None:
        return ""
    if ix.kind == "primary":
        return "the primary key exists" if target.primary_key else ""
    cols = tuple(c.casefold() for c in ix.columns)
    for have in target.indexes:
        if (ix.name and have.name.casefold() == ix.name.casefold()) or (
                not ix.name and tuple(c.casefold() for c in have.columns) == cols
                and have.kind == ix.kind):
            return f"index {have.name} exists"
    return ""


def _drop_index_skip(name: str, target: TableSchema | None,
                     peers: Sequence[TableSchema] | None) -> str:
    if target is None:
        return ""

    def has(ts: TableSchema) -> bool:
        return any(ix.name.casefold() == name.casefold() for ix in ts.indexes)

    if not has(target):
        return f"index {name} is not there"
    if peers is None or any(has(p) for p in peers):
        return f"index {name} stays while other shards have it"
    return ""


_INTEGERS = frozenset({"tinyint", "smallint", "mediumint", "int", "integer", "bigint"})


_RANKS = {t: i for i, t in enumerate(("tinyint", "smallint", "mediumint", "int", "bigint"))}
_RANKS.update({t: i for i, t in enumerate(("tinytext", "text", "mediumtext", "longtext"))})
_RANKS.update({t: i for i, t in enumerate(("tinyblob", "blob", "mediumblob", "longblob"))})
_FAMILIES = (_INTEGERS, frozenset({"tinytext", "text", "mediumtext", "longtext"}),
             frozenset({"tinyblob", "blob", "mediumblob", "longblob"}))


def _widens(old: Column, new: Column) -> bool:
    """Every value of `old` fits `new`, and `new` takes NULL if `old` does: a change the
    other shards' rows cannot break. Conservative: False when unsure."""
    if old.nullable and not new.nullable:
        return False
    # A DDL's column without CHARACTER SET takes the table's, which the target prints.
    if old.charset and new.charset and old.charset != new.charset:
        return False
    a, b = old.data_type, new.data_type
    if any(a in f and b in f for f in _FAMILIES):
        return _RANKS[b] >= _RANKS[a] and (a not in _INTEGERS or old.unsigned == new.unsigned)
    if a != b or old.unsigned != new.unsigned:
        return False
    x, y = _args(old.column_type), _args(new.column_type)
    if a in ("varchar", "char", "varbinary", "binary", "bit") and len(x) == len(y) == 1:
        return y[0] >= x[0]
    if a == "decimal" and len(x) == len(y) == 2:
        return y[1] >= x[1] and y[0] - y[1] >= x[0] - x[1]
    return _type_key(old) == _type_key(new)  # same type: a default or a comment changes


def _args(column_type: str) -> list[int]:
    inside = column_type.partition("(")[2].partition(")")[0]
    try:
        return [int(v) for v in inside.split(",")] if inside else []
    except ValueError:
        return []


def _type_key(c: Column) -> tuple[str, ...]:
    """A column's type for comparison: SHOW CREATE TABLE prints `int(11)` for a DDL's
    `INT`, so integers compare without their display width."""
    if c.data_type in _INTEGERS:
        return ("int" if c.data_type == "integer" else c.data_type, str(c.unsigned))
    return ("".join(c.column_type.casefold().split()),)


def _conflict(ddl: DDL, why: str) -> Exception:
    return SYNC_SHARD_DDL(ddl.sql, why)
