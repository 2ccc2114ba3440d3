"""The structure of every upstream table as of the current binlog position.

Row events carry values only, so the syncer decodes them with the structure the tracker
holds: it starts from SHOW CREATE TABLE (`set_table`) and follows each DDL of the binlog
(`apply`). The state is plain data (`to_dict`) and is persisted with the checkpoint.

Not tracked (they do not change which columns a row image has, nor the keys): table
options other than the default charset, ALTER COLUMN SET/DROP DEFAULT, partitioning,
index visibility. Column and index names compare case-insensitively, as in MySQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import asyncmy

from errors import SCHEMA_INVALID_SQL
from mysqlkit.schema.ddl import (
    DDL,
    TEXT_TYPES,
    AlterSpec,
    Column,
    Constraint,
    Index,
    TableDef,
    not_null_definition,
    parse_create_table,
    without_charset,
)
from mysqlkit.sqlquote import quote_ident
from mysqlkit.upstream import as_text, fetchall

__all__ = ["Column", "Constraint", "Index", "SchemaTracker", "TableSchema", "load_table"]

_FORMAT = 1


@dataclass(frozen=True)
class TableSchema:
    schema: str
    table: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    unique_keys: tuple[tuple[str, ...], ...]  # in definition order
    indexes: tuple[Index, ...] = ()  # all keys, the primary one included
    constraints: tuple[Constraint, ...] = ()  # FOREIGN KEY / CHECK, as written
    options: str = ""  # table options as written
    charset: str | None = None  # default charset, when known

    @staticmethod
    def build(schema: str, table: str, columns: tuple[Column, ...],
              indexes: tuple[Index, ...], constraints: tuple[Constraint, ...] = (),
              options: str = "", charset: str | None = None) -> TableSchema:
        """Derives primary_key/unique_keys from the indexes and names unnamed indexes."""
        named: list[Index] = []
        for ix in indexes:
            if not ix.name:
                ix = replace(ix, name=_auto_name(ix.columns[0], named))
            named.append(ix)
        # The server's order (MariaDB's sort_keys): primary, unique on NOT NULL columns,
        # other unique, plain keys, fulltext; otherwise as declared.
        not_null = {c.name.casefold() for c in columns if not c.nullable}

        def rank(ix: Index) -> int:
            if ix.kind == "primary":
                return 0
            if ix.kind == "unique":
                return 1 if all(c.casefold() in not_null for c in ix.columns) else 2
            return 4 if ix.kind == "fulltext" else 3

        named.sort(key=rank)
        pk = next((ix.columns for ix in named if ix.kind == "primary"), ())
        uks = tuple(ix.columns for ix in named if ix.kind == "unique")
        return TableSchema(schema, table, columns, pk, uks, tuple(named), constraints,
                           options, charset)

    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def insert_columns(self) -> tuple[str, ...]:
        """The columns an INSERT lists: generated ones are computed by the target."""
        return tuple(c.name for c in self.columns if not c.generated)

    def column(self, name: str) -> Column | None:
        i = _find(self.columns, name)
        return None if i < 0 else self.columns[i]

    def key_columns(self) -> tuple[str, ...]:
        """What identifies a row: the PK, else the first UK whose columns are all NOT NULL,
        else the first UK, else () meaning all columns."""
        if self.primary_key:
            return self.primary_key
        for uk in self.unique_keys:
            if all(not c.nullable for name in uk if (c := self.column(name)) is not None):
                return uk
        return self.unique_keys[0] if self.unique_keys else ()

    def create_sql(self, schema: str | None = None, table: str | None = None) -> str:
        """A CREATE TABLE for this structure, named `schema`.`table` (default: its own)."""
        lines = [c.definition for c in self.columns]
        lines += [ix.definition() for ix in self.indexes]
        lines += [c.definition for c in self.constraints]
        name = f"{quote_ident(schema or self.schema)}.{quote_ident(table or self.table)}"
        body = ",\n  ".join(lines)
        return f"CREATE TABLE {name} (\n  {body}\n)" + (f" {self.options}" if self.options
                                                        else "")

    # --- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema, "table": self.table,
            "columns": [{"name": c.name, "column_type": c.column_type,
                         "data_type": c.data_type, "unsigned": c.unsigned,
                         "nullable": c.nullable, "generated": c.generated,
                         "charset": c.charset or "", "definition": c.definition}
                        for c in self.columns],
            "indexes": [{"name": ix.name, "kind": ix.kind, "columns": list(ix.columns),
                         "suffixes": list(ix.suffixes), "options": ix.options}
                        for ix in self.indexes],
            "constraints": [{"name": c.name, "kind": c.kind, "definition": c.definition}
                            for c in self.constraints],
            "options": self.options, "charset": self.charset or "",
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TableSchema:
        cols = tuple(Column(c["name"], c["column_type"], c["data_type"], c["unsigned"],
                            c["nullable"], c["generated"], c["charset"] or None,
                            c["definition"]) for c in d["columns"])
        ixs = tuple(Index(i["name"], i["kind"], tuple(i["columns"]), tuple(i["suffixes"]),
                          i["options"]) for i in d["indexes"])
        cons = tuple(Constraint(c["name"], c["kind"], c["definition"])
                     for c in d["constraints"])
        return TableSchema.build(d["schema"], d["table"], cols, ixs, cons, d["options"],
                                 d["charset"] or None)


class _Named(Protocol):
    @property
    def name(self) -> str: ...


def _find(items: Sequence[_Named], name: str) -> int:
    key = name.casefold()
    for i, it in enumerate(items):
        if it.name.casefold() == key:
            return i
    return -1


def _existing(items: Sequence[_Named], name: str, if_exists: bool, what: str) -> int:
    """Index of the named column/key; -1 when it is missing and IF EXISTS allows that
    (the alteration is then a no-op); otherwise a missing one does not fit."""
    i = _find(items, name)
    if i < 0 and not if_exists:
        raise _Invalid(f"{what} {name} does not exist")
    return i


def _auto_name(first_column: str, existing: list[Index]) -> str:
    """MySQL's name for an unnamed key: its first column, then _2, _3, ..."""
    name, n = first_column, 2
    while _find(existing, name) >= 0 or name.casefold() == "primary":
        name, n = f"{first_column}_{n}", n + 1
    return name


class _Invalid(Exception):
    """An alteration that does not fit the tracked structure."""


@dataclass
class _Work:
    """A mutable copy of one table for applying an ALTER TABLE atomically."""

    columns: list[Column]
    indexes: list[Index]
    constraints: list[Constraint]
    options: str
    charset: str | None
    rename: tuple[str, str] | None = field(default=None)

    @staticmethod
    def of(ts: TableSchema) -> _Work:
        return _Work(list(ts.columns), list(ts.indexes), list(ts.constraints), ts.options,
                     ts.charset)

    def result(self, schema: str, table: str) -> TableSchema:
        pk = {c.casefold() for ix in self.indexes if ix.kind == "primary" for c in ix.columns}
        cols = tuple(_not_null(c) if c.name.casefold() in pk else c for c in self.columns)
        return TableSchema.build(schema, table, cols, tuple(self.indexes),
                                 tuple(self.constraints), self.options, self.charset)

    def col(self, name: str) -> int:
        i = _find(self.columns, name)
        if i < 0:
            raise _Invalid(f"column {name} does not exist")
        return i

    def place(self, col: Column, spec: AlterSpec, default: int) -> None:
        if spec.position == "FIRST":
            self.columns.insert(0, col)
        elif spec.position == "AFTER":
            self.columns.insert(self.col(spec.after) + 1, col)
        else:
            self.columns.insert(default, col)

    def with_charset(self, col: Column) -> Column:
        if col.data_type in TEXT_TYPES and col.charset is None and self.charset:
            return replace(col, charset=self.charset)
        return col

    def add_index(self, ix: Index, if_not_exists: bool = False) -> None:
        if ix.kind == "primary" and any(i.kind == "primary" for i in self.indexes):
            raise _Invalid("multiple primary keys")
        if ix.name and _find(self.indexes, ix.name) >= 0:
            if if_not_exists:
                return
            raise _Invalid(f"duplicate key name {ix.name}")
        for c in ix.columns:
            self.col(c)
        if not ix.name:
            ix = replace(ix, name=_auto_name(ix.columns[0], self.indexes))
        self.indexes.append(ix)

    def inline_keys(self, spec: AlterSpec, name: str) -> None:
        if spec.inline_primary:
            self.add_index(Index("PRIMARY", "primary", (name,), ("",)))
        if spec.inline_unique:
            self.add_index(Index("", "unique", (name,), ("",)))

    def rename_in_keys(self, old: str, new: str) -> None:
        self.indexes = [replace(ix, columns=tuple(new if c.casefold() == old.casefold()
                                                  else c for c in ix.columns))
                        for ix in self.indexes]

    def drop_from_keys(self, name: str) -> None:
        out = []
        for ix in self.indexes:
            keep = [k for k, c in enumerate(ix.columns) if c.casefold() != name.casefold()]
            if keep:
                out.append(replace(ix, columns=tuple(ix.columns[k] for k in keep),
                                   suffixes=tuple(ix.suffixes[k] for k in keep
                                                  if k < len(ix.suffixes))))
        self.indexes = out

    def apply(self, spec: AlterSpec) -> None:
        op = spec.op
        if op in _COLUMN_OPS:
            self.apply_column(spec)
        elif op == "add_index":
            assert spec.index is not None
            self.add_index(spec.index, if_not_exists=True)
        elif op == "drop_primary_key":
            self.indexes = [ix for ix in self.indexes if ix.kind != "primary"]
        elif op == "drop_index":
            i = _existing(self.indexes, spec.name, spec.if_exists, "key")
            if i < 0:
                return
            del self.indexes[i]
        elif op == "rename_index":
            i = _find(self.indexes, spec.name)
            if i >= 0:
                self.indexes[i] = replace(self.indexes[i], name=spec.new_name)
        elif op == "add_constraint":
            assert spec.constraint is not None
            self.constraints.append(spec.constraint)
        elif op == "drop_constraint":
            # MariaDB's DROP CONSTRAINT also drops a UNIQUE key of that name.
            i = _find(self.constraints, spec.name)
            if i >= 0:
                del self.constraints[i]
            elif (j := _find(self.indexes, spec.name)) >= 0:
                del self.indexes[j]
        elif op == "convert_charset":
            self.charset = spec.charset
            self.options = _set_charset(self.options, spec.charset)
            self.columns = [replace(c, charset=spec.charset,
                                    definition=without_charset(c.definition))
                            if c.data_type in TEXT_TYPES else c for c in self.columns]
        elif op == "default_charset":
            self.charset = spec.charset
            self.options = _set_charset(self.options, spec.charset)
        elif op == "rename_table":
            self.rename = (spec.name, spec.new_name)


    def apply_column(self, spec: AlterSpec) -> None:
        """The column specs of an ALTER: add, modify, change, drop, rename."""
        op = spec.op
        if op in ("add_column", "modify_column", "change_column"):
            assert spec.column is not None
            col = self.with_charset(spec.column)
            if op == "add_column":
                if _find(self.columns, col.name) >= 0:
                    if spec.if_exists:
                        return
                    raise _Invalid(f"duplicate column {col.name}")
                self.place(col, spec, len(self.columns))
            else:
                i = _existing(self.columns, spec.name, spec.if_exists, "column")
                if i < 0:
                    return
                del self.columns[i]
                if op == "change_column":
                    self.rename_in_keys(spec.name, col.name)
                self.place(col, spec, i)
            self.inline_keys(spec, col.name)
        elif op == "drop_column":
            i = _existing(self.columns, spec.name, spec.if_exists, "column")
            if i < 0:
                return
            del self.columns[i]
            self.drop_from_keys(spec.name)
        elif op == "rename_column":
            i = self.col(spec.name)
            c = self.columns[i]
            rest = c.definition[len(quote_ident(c.name)):]
            self.columns[i] = replace(c, name=spec.new_name,
                                      definition=quote_ident(spec.new_name) + rest)
            self.rename_in_keys(spec.name, spec.new_name)


_COLUMN_OPS = frozenset({"add_column", "modify_column", "change_column", "drop_column",
                         "rename_column"})


def _set_charset(options: str, charset: str) -> str:
    rest = without_charset(options) if options else ""
    return (rest + " " if rest else "") + f"DEFAULT CHARSET={charset}"


def _not_null(c: Column) -> Column:
    """Primary key columns are NOT NULL, whatever their definition said."""
    if not c.nullable:
        return c
    return replace(c, nullable=False, definition=not_null_definition(c.definition))


class SchemaTracker:
    """Tables by schema; unknown tables are simply absent (the syncer loads them)."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, TableSchema]] = {}

    # --- access ------------------------------------------------------------------------
    def get(self, schema: str, table: str) -> TableSchema | None:
        return self._tables.get(schema, {}).get(table)

    def list_schemas(self) -> list[str]:
        return sorted(self._tables)

    def list_tables(self, schema: str) -> list[str]:
        return sorted(self._tables.get(schema, {}))

    def set_table(self, schema: str, table: str, create_sql: str) -> TableSchema:
        """Track `schema`.`table` with the structure of a CREATE TABLE statement (SHOW
        CREATE TABLE output or user SQL; its own table name is ignored).

        Raises SCHEMA_INVALID_SQL, leaving the tracker unchanged, if it is not one.
        """
        try:
            td = parse_create_table(create_sql)
        except ValueError as exc:
            raise SCHEMA_INVALID_SQL(create_sql, cause=str(exc)) from None
        try:
            ts = self._from_def(schema, table, td)
        except _Invalid as exc:
            raise SCHEMA_INVALID_SQL(create_sql, cause=str(exc)) from None
        self._put(ts)
        return ts

    def remove_table(self, schema: str, table: str) -> bool:
        return self._tables.get(schema, {}).pop(table, None) is not None

    def _put(self, ts: TableSchema) -> None:
        self._tables.setdefault(ts.schema, {})[ts.table] = ts

    @staticmethod
    def _from_def(schema: str, table: str, td: TableDef) -> TableSchema:
        w = _Work([], [], list(td.constraints), td.options, td.charset)
        for c in td.columns:
            if _find(w.columns, c.name) >= 0:
                raise _Invalid(f"duplicate column {c.name}")
            w.columns.append(c)
        for ix in td.indexes:
            w.add_index(ix)
        return w.result(schema, table)

    # --- DDL ---------------------------------------------------------------------------
    def apply(self, ddl: DDL) -> None:
        """Follow one DDL. DDL on tables the tracker does not know leaves them unknown.

        Raises SCHEMA_INVALID_SQL (tracker unchanged) when a DDL does not fit a tracked
        table, e.g. it drops a column the tracker does not have.
        """
        try:
            self._apply(ddl)
        except _Invalid as exc:
            raise SCHEMA_INVALID_SQL(f"`{ddl.schema}`.`{ddl.table}`",
                                     cause=f"{exc}: {ddl.sql}") from None

    def _apply(self, ddl: DDL) -> None:
        kind, schema, table = ddl.kind, ddl.schema, ddl.table
        if kind == "create_database":
            if ddl.or_replace:
                self._tables.pop(schema, None)
            self._tables.setdefault(schema, {})
        elif kind == "drop_database":
            self._tables.pop(schema, None)
        elif kind == "create_table":
            if ddl.if_exists and self.get(schema, table) is not None:
                return
            src = self.get(ddl.like_schema, ddl.like_table) if ddl.like_table else None
            if src is not None:
                self._put(replace(src, schema=schema, table=table))
            elif ddl.table_def is not None:
                self._put(self._from_def(schema, table, ddl.table_def))
            else:  # LIKE an unknown table, or CREATE ... SELECT: load it when needed
                self.remove_table(schema, table)
                self._tables.setdefault(schema, {})
        elif kind == "drop_table":
            self.remove_table(schema, table)
        elif kind == "rename_table":
            ts = self._tables.get(schema, {}).pop(table, None)
            self.remove_table(ddl.new_schema, ddl.new_table)
            if ts is not None:
                self._put(replace(ts, schema=ddl.new_schema, table=ddl.new_table))
        elif kind == "alter_table":
            ts = self.get(schema, table)
            if ts is None:
                return
            w = _Work.of(ts)
            for spec in ddl.alters:
                w.apply(spec)
            new_schema, new_table = w.rename or (schema, table)
            result = w.result(new_schema, new_table)
            self.remove_table(schema, table)
            self._put(result)
        elif kind in ("create_index", "drop_index"):
            ts = self.get(schema, table)
            if ts is None:
                return
            w = _Work.of(ts)
            if kind == "create_index":
                assert ddl.index is not None
                w.add_index(ddl.index, if_not_exists=ddl.if_exists)
            else:
                w.apply(AlterSpec("drop_index", name=ddl.index_name, if_exists=ddl.if_exists))
            self._put(w.result(schema, table))
        # alter_database, truncate_table: the structure stays as it is

    # --- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (str/int/bool/list/dict only), for the checkpoint."""
        return {"format": _FORMAT, "schemas": {
            s: [ts.to_dict() for _, ts in sorted(tables.items())]
            for s, tables in sorted(self._tables.items())}}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SchemaTracker:
        tr = SchemaTracker()
        for schema, tables in d.get("schemas", {}).items():
            tr._tables.setdefault(schema, {})
            for t in tables:
                tr._put(TableSchema.from_dict(t))
        return tr

    def copy(self) -> SchemaTracker:
        tr = SchemaTracker()
        # TableSchema is immutable: sharing them is safe.
        tr._tables = {s: dict(tables) for s, tables in self._tables.items()}
        return tr


async def load_table(conn: asyncmy.Connection, schema: str, table: str) -> str:
    """SHOW CREATE TABLE text of `schema`.`table` (errors untranslated, as `fetchall`)."""
    rows = await fetchall(conn, f"SHOW CREATE TABLE {quote_ident(schema)}.{quote_ident(table)}")
    return as_text(rows[0][1])
