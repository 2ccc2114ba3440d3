"""What the dump and load paths need to know about one table.

Read from `SHOW CREATE TABLE`, `information_schema.COLUMNS`/`TABLES` and `SHOW INDEX`; works
the same on MySQL and MariaDB. The result is a plain frozen dataclass so that it can be
pickled to other processes (Ray actors) and stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncmy

from mysqlkit.sqlquote import quote_ident
from mysqlkit.upstream import as_text as _text
from mysqlkit.upstream import fetchall as _fetchall

__all__ = ["INTEGER_TYPES", "ColumnInfo", "TableInfo", "key_literal_expr", "literal_expr",
           "load_field", "order_expr", "table_info"]

INTEGER_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "integer", "bigint"})
_BINARY_TYPES = frozenset({"binary", "varbinary", "tinyblob", "blob", "mediumblob",
                           "longblob"})
_SPATIAL_TYPES = frozenset({"geometry", "point", "linestring", "polygon", "multipoint",
                            "multilinestring", "multipolygon", "geometrycollection",
                            "geomcollection"})


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    data_type: str  # information_schema DATA_TYPE, lower case: "int", "varchar", ...
    column_type: str  # full type: "int(10) unsigned", "enum('a','b')", ...
    is_generated: bool  # VIRTUAL/STORED (PERSISTENT) generated: never dumped nor inserted
    is_unsigned: bool
    charset: str | None  # CHARACTER_SET_NAME; None for non-string types
    nullable: bool = True
    collation: str | None = None

    @property
    def is_binary(self) -> bool:
        """Bytes that are not text in any charset: dumped as hex literals."""
        return (self.data_type in _BINARY_TYPES or self.data_type in _SPATIAL_TYPES
                or self.charset == "binary")

    @property
    def is_integer(self) -> bool:
        return self.data_type in INTEGER_TYPES


@dataclass(frozen=True)
class TableInfo:
    schema: str
    table: str
    create_sql: str
    columns: tuple[ColumnInfo, ...]
    # The primary key, else the first unique key whose columns are all NOT NULL; empty if
    # there is neither (such tables are dumped as one chunk).
    chunk_key: list[str]
    est_rows: int  # information_schema.TABLES.TABLE_ROWS: an estimate for InnoDB
    avg_row_length: int

    @property
    def quoted_name(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.table)}"

    @property
    def stored_columns(self) -> tuple[ColumnInfo, ...]:
        """The columns an INSERT lists: generated columns are recomputed by the target."""
        return tuple(c for c in self.columns if not c.is_generated)

    def column(self, name: str) -> ColumnInfo:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)




def _is_generated(extra: str) -> bool:
    # MySQL 8 marks expression *defaults* as DEFAULT_GENERATED: those columns are stored
    # and must be dumped, so only the generated-column markers count.
    extra = extra.upper()
    return any(m in extra for m in ("VIRTUAL GENERATED", "STORED GENERATED",
                                    "PERSISTENT GENERATED"))


def _pick_chunk_key(index_rows: list[tuple[Any, ...]], nullable: dict[str, bool]) -> list[str]:
    """PRIMARY, else the first unique index (SHOW INDEX order = definition order) whose
    columns are all NOT NULL. Functional key parts (Column_name NULL) disqualify a key."""
    keys: dict[str, list[str | None]] = {}
    unique: dict[str, bool] = {}
    for row in index_rows:
        # SHOW INDEX: Table, Non_unique, Key_name, Seq_in_index, Column_name, ...
        name, non_unique, column = _text(row[2]), int(row[1]), row[4]
        keys.setdefault(name, []).append(None if column is None else _text(column))
        unique[name] = non_unique == 0
    candidates = [n for n in keys if unique[n]]
    candidates.sort(key=lambda n: n != "PRIMARY")  # stable: PRIMARY first, then in order
    for name in candidates:
        cols = keys[name]
        if all(c is not None and not nullable.get(c, True) for c in cols):
            return [c for c in cols if c is not None]
    return []


async def table_info(conn: asyncmy.Connection, schema: str, table: str) -> TableInfo:
    """Everything about `schema`.`table` the dump/load path needs (see TableInfo)."""
    name = f"{quote_ident(schema)}.{quote_ident(table)}"
    [create_row] = await _fetchall(conn, f"SHOW CREATE TABLE {name}")
    col_rows = await _fetchall(
        conn,
        "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME, "
        "COLLATION_NAME, EXTRA FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
        (schema, table))
    columns = tuple(
        ColumnInfo(
            name=_text(r[0]),
            data_type=_text(r[1]).lower(),
            column_type=_text(r[2]),
            is_generated=_is_generated(_text(r[6] or "")),
            is_unsigned="unsigned" in _text(r[2]).lower(),
            charset=None if r[4] is None else _text(r[4]),
            nullable=_text(r[3]).upper() == "YES",
            collation=None if r[5] is None else _text(r[5]),
        )
        for r in col_rows)
    index_rows = await _fetchall(conn, f"SHOW INDEX FROM {name}")
    nullable = {c.name: c.nullable for c in columns}
    stats = await _fetchall(
        conn,
        "SELECT TABLE_ROWS, AVG_ROW_LENGTH FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (schema, table))
    est_rows, avg_len = (stats[0] if stats else (0, 0))
    return TableInfo(
        schema=schema,
        table=table,
        create_sql=_text(create_row[1]),
        columns=columns,
        chunk_key=_pick_chunk_key(index_rows, nullable),
        est_rows=int(est_rows or 0),
        avg_row_length=int(avg_len or 0),
    )


# --- server-side SQL literals ---------------------------------------------------------------
#
# The dump path never formats values in Python: the server renders each value as the text
# of an SQL literal that reads back as exactly the same value, and Python only joins bytes.

_UTF8_CHARSETS = frozenset({"utf8mb4", "utf8mb3", "utf8", "ascii"})
_RAW_NUMERIC = INTEGER_TYPES | {"decimal", "double", "real", "year"}


def literal_expr(col: ColumnInfo) -> str:
    """An SQL expression giving the literal text of `col`'s value ('NULL' for NULL).

    - integers, DECIMAL, DOUBLE, YEAR: the server's own text is exact (DOUBLE is printed
      in its shortest round-trip form; YEAR 0000 reads back from the number 0);
    - FLOAT: its own text has only 6 digits, so it is widened to DOUBLE (+0e0), whose
      shortest form parses back to exactly the same float;
    - BIT: as an unsigned integer (b+0), which a BIT column accepts back;
    - binary strings, BLOBs, spatial: X'hex' (X'' is valid for an empty value, unlike 0x);
    - text, ENUM/SET, JSON: QUOTE() of the utf8mb4 bytes (the charset of the statements
      and of the loading connection; other charsets are converted first). QUOTE of the
      BINARY cast is ~30% faster than of the text and still exact: it only escapes ASCII
      bytes (backslash, quote, NUL, ^Z), which never occur inside a UTF-8 multi-byte
      sequence;
    - temporal and anything else (INET6, UUID...): QUOTE() of the server's text.
    QUOTE escapes with backslashes: loading sessions must not use NO_BACKSLASH_ESCAPES.
    NOT NULL columns skip the NULL handling (a few % faster).
    """
    q = quote_ident(col.name)
    t = col.data_type
    if col.is_binary:
        hex_lit = f"CONCAT('X''',HEX({q}),'''')"
        return hex_lit if not col.nullable else f"IF({q} IS NULL,'NULL',{hex_lit})"
    if t in _RAW_NUMERIC or t in ("float", "bit"):
        num = {"float": f"{q}+0e0", "bit": f"{q}+0"}.get(t, q)
        return num if not col.nullable else f"IFNULL({num},'NULL')"
    if col.charset is not None:
        if col.charset.lower() in _UTF8_CHARSETS:
            return f"QUOTE(CAST({q} AS BINARY))"
        return f"QUOTE(CAST(CONVERT({q} USING utf8mb4) AS BINARY))"
    return f"QUOTE({q})"


def load_field(col: ColumnInfo) -> tuple[str, str | None]:
    """(SQL expression, SET template) for `col` as one field of a LOAD DATA line read with
    `CHARACTER SET binary FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\'' ESCAPED BY
    '\\'`. The SET template (with `{}` for the user variable the field is read into) says
    how the column is assigned from that text; None: the field goes into the column itself.

    - strings of any charset, ENUM/SET, binary and spatial: QUOTE() of the stored bytes,
      unconverted. The file is read as `binary`, so bytes reach the column as they were in
      the source (a charset-to-charset copy), and QUOTE's backslash escapes (backslash,
      quote, NUL, ^Z) are undone byte by byte, which is exact in every charset, GBK's
      0x5C trail bytes included. No X'hex': half the bytes, and nothing to decode;
    - numbers: the server's text as for INSERT (see literal_expr), unquoted;
    - BIT and YEAR: a string would be stored as BIT's bytes, and the string '0' is the
      YEAR 2000 where the number 0 is 0000: both are read as text, then CAST to integers;
    - MySQL's JSON type refuses binary-charset text: converted to utf8mb4 by SET;
    - temporal and anything else: QUOTE() of the server's text.
    NULL is the bare word NULL (QUOTE(NULL) gives it), which LOAD DATA reads as NULL when
    fields may be enclosed; the quoted 'NULL' stays a string.
    """
    q = quote_ident(col.name)
    t = col.data_type
    if t in ("bit", "year"):
        num = f"{q}+0" if t == "bit" else q
        return (num if not col.nullable else f"IFNULL({num},'NULL')"), "CAST({} AS UNSIGNED)"
    if t == "json":
        return f"QUOTE(CAST({q} AS BINARY))", "CONVERT({} USING utf8mb4)"
    if col.is_binary or col.charset is not None:
        return f"QUOTE(CAST({q} AS BINARY))", None
    if t in _RAW_NUMERIC or t == "float":
        num = f"{q}+0e0" if t == "float" else q
        return (num if not col.nullable else f"IFNULL({num},'NULL')"), None
    return f"QUOTE({q})", None


def order_expr(col: ColumnInfo) -> str:
    """How a chunk-key column is ordered and compared. ENUM/SET sort by their index but
    compare to a string by label, BIT compares to a string as bytes: taking their numeric
    value makes ORDER BY and the range conditions agree."""
    q = quote_ident(col.name)
    return f"({q}+0)" if col.data_type in ("enum", "set", "bit") else q


def key_literal_expr(col: ColumnInfo) -> str:
    """The literal a chunk boundary on `col` is written with (matches `order_expr`)."""
    if col.data_type in ("enum", "set", "bit"):
        return f"({quote_ident(col.name)}+0)"
    return literal_expr(col)
