"""Dump directories in the Dumpling/mydumper layout: writers and readers.

    {schema}-schema-create.sql            CREATE DATABASE
    {schema}.{table}-schema.sql           CREATE TABLE
    {schema}.{table}.{NNNNNNNNN}.sql      INSERT statements of chunk N (9 digits, as Dumpling)
    metadata                              mydumper's: start/finish times, SHOW MASTER STATUS

The readers also accept what mydumper 0.10 writes: 5-digit chunk numbers or none at all
(`{schema}.{table}.sql`), `/*!40101 SET NAMES binary*/;`-style session statements at the
top of every file, double-quoted strings, INSERTs without schema nor column list.

Names: '/' cannot be in a file name and '%' is the escape, so both are percent-encoded in
the schema and table parts (other characters, dots included, are written as they are,
like mydumper does); readers decode them. Dots in names are resolved against the schemas
and tables that have schema files.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
from collections.abc import AsyncIterable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from errors import (
    LOAD_DUMP_DIR_NOT_FOUND,
    LOAD_DUPLICATE_TABLE_FILE,
    LOAD_INVALID_FILE_ENDING,
    LOAD_NO_DB_FILE,
    LOAD_NO_TABLE_FILE,
    LOAD_READ_SCHEMA_FILE,
)
from mysqlkit.position import BinlogPosition
from mysqlkit.sqlquote import quote_ident

__all__ = [
    "DumpListing",
    "DumpTable",
    "chunk_file_name",
    "iter_statements",
    "list_dump",
    "parse_metadata",
    "read_create_table",
    "schema_create_file_name",
    "table_schema_file_name",
    "write_chunk_file",
    "write_metadata",
    "write_schema_create",
    "write_table_schema",
]

METADATA = "metadata"
_TIME_FMT = "%Y-%m-%d %H:%M:%S"


# --- names ---------------------------------------------------------------------------------

def _enc(name: str) -> str:
    return name.replace("%", "%25").replace("/", "%2F")


def _dec(name: str) -> str:
    return re.sub(r"%(25|2[Ff])", lambda m: "%" if m.group(1) == "25" else "/", name)


def schema_create_file_name(schema: str) -> str:
    return f"{_enc(schema)}-schema-create.sql"


def table_schema_file_name(schema: str, table: str) -> str:
    return f"{_enc(schema)}.{_enc(table)}-schema.sql"


def chunk_file_name(schema: str, table: str, index: int) -> str:
    return f"{_enc(schema)}.{_enc(table)}.{index:09d}.sql"


def statement_rows(stmt: bytes) -> int:
    """Rows in one of dump_chunk's `INSERT ... VALUES\n(...),\n(...);\n` statements: a
    line each after the header line, since the quoting of values escapes every newline
    (an identifier holding a newline would miscount)."""
    return max(0, stmt.count(b"\n") - 1)


def chunk_file_rows(path: Path | str) -> int:
    """Rows in a chunk file this dump wrote (see statement_rows): its lines less one
    header line per statement (each ends with ";\n", which no quoted value holds)."""
    lines = ends = 0
    tail = b""
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            lines += block.count(b"\n")
            ends += (tail + block).count(b";\n") - tail.count(b";\n")
            tail = block[-1:]
    return max(0, lines - ends)


# --- writers -------------------------------------------------------------------------------

def _write_atomic(path: Path, data: bytes) -> None:
    # Write-then-rename: a crash never leaves a half file under the final name.
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_schema_create(data_dir: Path | str, schema: str,
                        create_sql: str | None = None) -> Path:
    """`{schema}-schema-create.sql`, from SHOW CREATE DATABASE's text if given."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    sql = create_sql or f"CREATE DATABASE IF NOT EXISTS {quote_ident(schema)}"
    path = data_dir / schema_create_file_name(schema)
    _write_atomic(path, sql.rstrip().rstrip(";").encode() + b";\n")
    return path


def write_table_schema(data_dir: Path | str, schema: str, table: str, create_sql: str) -> Path:
    """`{schema}.{table}-schema.sql` holding the CREATE TABLE statement."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / table_schema_file_name(schema, table)
    _write_atomic(path, create_sql.rstrip().rstrip(";").encode() + b";\n")
    return path


async def write_chunk_file(data_dir: Path | str, schema: str, table: str, index: int,
                           statements: AsyncIterable[bytes] | Iterable[bytes]) -> tuple[Path,
                                                                                     int]:
    """Stream `statements` (e.g. dump_chunk's) into `{schema}.{table}.{index:09d}.sql`;
    returns (path, bytes written). Written under a temporary name and renamed at the end,
    so an existing chunk file is always complete."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / chunk_file_name(schema, table, index)
    tmp = path.with_name(path.name + ".tmp")
    size = 0
    # File calls go to a thread: a slow disk must not stall the event loop (and the other
    # chunks streaming on it).
    f = await asyncio.to_thread(open, tmp, "wb")
    try:
        try:
            if isinstance(statements, AsyncIterable):
                async for stmt in statements:
                    await asyncio.to_thread(f.write, stmt)
                    size += len(stmt)
            else:
                for stmt in statements:
                    await asyncio.to_thread(f.write, stmt)
                    size += len(stmt)
        finally:
            await asyncio.to_thread(f.close)
        await asyncio.to_thread(os.replace, tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path, size


def write_metadata(data_dir: Path | str, position: BinlogPosition,
                   started_at: dt.datetime, finished_at: dt.datetime | None = None) -> Path:
    """mydumper's `metadata` file (also what Dumpling writes and DM's loader reads)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    finished_at = finished_at or dt.datetime.now()
    text = (f"Started dump at: {started_at.strftime(_TIME_FMT)}\n"
            "SHOW MASTER STATUS:\n"
            f"\tLog: {position.binlog_name}\n"
            f"\tPos: {position.binlog_pos}\n"
            f"\tGTID:{position.gtid}\n\n"
            f"Finished dump at: {finished_at.strftime(_TIME_FMT)}\n")
    path = data_dir / METADATA
    _write_atomic(path, text.encode())
    return path


# --- metadata ------------------------------------------------------------------------------

@dataclass(frozen=True)
class DumpMetadata:
    position: BinlogPosition | None  # None when there is no SHOW MASTER STATUS section
    started_at: str
    finished_at: str


def parse_metadata(text: str) -> DumpMetadata:
    """mydumper/Dumpling `metadata`: only the SHOW MASTER STATUS section is the position
    (a SHOW SLAVE STATUS section describes the source's own master). A GTID set may run
    over several lines (MySQL prints `uuid:1-5,\\nuuid:1-3`)."""
    started = finished = ""
    section = ""
    log_name, pos, gtid_parts, in_gtid = "", 0, [], False
    found = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Started dump at:"):
            started = line.split(":", 1)[1].strip()
        elif line.startswith("Finished dump at:"):
            finished = line.split(":", 1)[1].strip()
        elif line.endswith(":") and not raw.startswith(("\t", " ")):
            section, in_gtid = line[:-1].strip().upper(), False
            found = found or section == "SHOW MASTER STATUS"
        elif not line:
            in_gtid = False
        elif section == "SHOW MASTER STATUS":
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key == "log":
                log_name, in_gtid = value.strip(), False
            elif key == "pos":
                pos, in_gtid = int(value.strip() or 0), False
            elif key == "gtid":
                gtid_parts, in_gtid = [value.strip()], True
            elif in_gtid:
                gtid_parts.append(line)
    gtid = "".join(gtid_parts)
    return DumpMetadata(BinlogPosition(log_name, pos, gtid) if found else None, started,
                        finished)


# --- listing -------------------------------------------------------------------------------

@dataclass(frozen=True)
class DumpTable:
    schema: str
    table: str
    schema_file: Path
    data_files: tuple[Path, ...]  # in chunk order


@dataclass(frozen=True)
class DumpListing:
    data_dir: Path
    schemas: dict[str, Path]  # schema -> its -schema-create.sql
    tables: tuple[DumpTable, ...]  # sorted by (schema, table)
    metadata: DumpMetadata | None
    skipped: tuple[Path, ...] = field(default=())  # views, triggers, unknown files

    @property
    def position(self) -> BinlogPosition | None:
        return self.metadata.position if self.metadata else None

    @property
    def binlog_name(self) -> str:
        return self.position.binlog_name if self.position else ""

    @property
    def binlog_pos(self) -> int:
        return self.position.binlog_pos if self.position else 0

    @property
    def gtid(self) -> str:
        return self.position.gtid if self.position else ""

    def table(self, schema: str, table: str) -> DumpTable:
        for t in self.tables:
            if (t.schema, t.table) == (schema, table):
                return t
        raise KeyError((schema, table))


_SKIP_SUFFIXES = ("-schema-view.sql", "-schema-triggers.sql", "-schema-post.sql",
                  "-schema-create-view.sql", "-schema-sequence.sql")
_CHUNK_RE = re.compile(r"^(?P<name>.+?)(?:\.(?P<n>\d+))?\.sql$")


def list_dump(data_dir: Path | str) -> DumpListing:
    """What a dump directory holds (ours, Dumpling's or mydumper 0.10's)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise LOAD_DUMP_DIR_NOT_FOUND(str(data_dir))
    files = sorted(p for p in data_dir.iterdir() if p.is_file())
    schemas: dict[str, Path] = {}
    table_files: dict[str, Path] = {}  # encoded "schema.table" -> schema file
    data: list[Path] = []
    skipped: list[Path] = []
    for p in files:
        name = p.name
        if name.endswith(_SKIP_SUFFIXES):
            skipped.append(p)
        elif name.endswith("-schema-create.sql"):
            schemas[_dec(name[:-len("-schema-create.sql")])] = p
        elif name.endswith("-schema.sql"):
            key = name[:-len("-schema.sql")]
            if key in table_files:
                raise LOAD_DUPLICATE_TABLE_FILE(name)
            table_files[key] = p
        elif name.endswith(".sql"):
            data.append(p)
        elif name != METADATA:
            skipped.append(p)

    # "schema.table" -> (schema, table): the schema is the longest known schema that the
    # name starts with followed by a dot (names may contain dots).
    enc_schemas = sorted((_enc(s) for s in schemas), key=len, reverse=True)

    def split(key: str, file: str) -> tuple[str, str]:
        for s in enc_schemas:
            if key.startswith(s + ".") and len(key) > len(s) + 1:
                return _dec(s), _dec(key[len(s) + 1:])
        raise LOAD_NO_DB_FILE(file)

    tables: dict[str, tuple[str, str, Path]] = {}
    for key, p in table_files.items():
        schema, table = split(key, p.name)
        tables[key] = (schema, table, p)

    chunks: dict[str, list[tuple[int, Path]]] = {key: [] for key in tables}
    for p in data:
        m = _CHUNK_RE.match(p.name)
        key, number = (m.group("name"), m.group("n")) if m else (p.name, None)
        if key not in tables and number is not None and f"{key}.{number}" in tables:
            key, number = f"{key}.{number}", None  # a table name ending in ".digits"
        if key not in tables:
            split(key, p.name)  # LOAD_NO_DB_FILE if even the schema is unknown
            raise LOAD_NO_TABLE_FILE(p.name)
        chunks[key].append((int(number) if number is not None else -1, p))

    listed = tuple(sorted(
        (DumpTable(schema, table, sp, tuple(p for _, p in sorted(chunks[key])))
         for key, (schema, table, sp) in tables.items()),
        key=lambda t: (t.schema, t.table)))
    meta_path = data_dir / METADATA
    metadata = parse_metadata(meta_path.read_text(errors="replace")) \
        if meta_path.is_file() else None
    return DumpListing(data_dir, dict(sorted(schemas.items())), listed, metadata,
                       tuple(skipped))


# --- statements ------------------------------------------------------------------------------

# One SQL statement up to its terminating ';', token by token: runs of ordinary bytes,
# quoted strings ('...' and "..." with backslash escapes and doubled quotes), `identifiers`,
# /* comments */ (incl. /*!version ... */), -- and # comments. Possessive quantifiers keep a
# failed match (statement longer than the buffer) linear instead of backtracking.
_TOKENS = (
    rb"[^;'\"`/#\-]++"
    rb"|'[^'\\]*+(?:(?:\\.|'')[^'\\]*+)*+'"
    rb"|\"[^\"\\]*+(?:(?:\\.|\"\")[^\"\\]*+)*+\""
    rb"|`[^`]*+(?:``[^`]*+)*+`"
    rb"|/\*.*?\*/"
    rb"|--(?=[ \t\r\n])[^\n]*+"
    rb"|\#[^\n]*+"
    rb"|/(?!\*)|-"  # a lone '/' or '-'; never the start of an unterminated comment
)
_STATEMENT_RE = re.compile(rb"(?:" + _TOKENS + rb")*+;", re.DOTALL)
_TAIL_RE = re.compile(rb"(?:" + _TOKENS + rb")*+\Z", re.DOTALL)
# Leading whitespace and plain comments (not /*! ... */, which are executable).
_LEADING_RE = re.compile(rb"(?:\s++|/\*(?!!).*?\*/|--(?=[ \t\r\n])[^\n]*+|\#[^\n]*+)*+",
                         re.DOTALL)
_BLOCK = 4 << 20


def _clean(stmt: bytes) -> bytes | None:
    """Statement without leading comments/whitespace and the final ';'; None if empty."""
    start = _LEADING_RE.match(stmt)
    body = stmt[start.end() if start else 0:].rstrip()
    if body.endswith(b";"):
        body = body[:-1].rstrip()
    return body + b";\n" if body else None


def iter_statements(path: Path | str) -> Iterator[bytes]:
    """The statements of an SQL file, one by one, each ending in ";\\n" (quotes, escapes
    and comments respected; a ';' inside a string does not split). Reads in blocks: memory
    is about one statement. A file ending inside a statement is LOAD_INVALID_FILE_ENDING.
    """
    with open(path, "rb") as f:
        buf = b""
        pos = 0
        eof = False
        while True:
            m = _STATEMENT_RE.match(buf, pos)
            if m is not None:
                stmt = _clean(buf[pos:m.end()])
                pos = m.end()
                if stmt is not None:
                    yield stmt
                continue
            if eof:
                break
            block = f.read(max(_BLOCK, len(buf) - pos))  # double when a statement is long
            buf = buf[pos:] + block
            pos = 0
            eof = not block
        tail = buf[pos:]
        if tail.strip():
            if _TAIL_RE.match(tail) is None:  # inside a string or comment: truncated
                raise LOAD_INVALID_FILE_ENDING(cause=f"{path}: {tail[:100]!r}")
            stmt = _clean(tail)
            if stmt is not None:
                yield stmt


def read_create_table(path: Path | str) -> str:
    """The CREATE TABLE statement of a `-schema.sql` file (mydumper puts SET statements
    before it), without its final ';'."""
    for stmt in iter_statements(path):
        text = stmt.decode("utf-8", errors="strict").rstrip().rstrip(";")
        if re.match(r"(?is)\A\s*CREATE\s+(?:OR\s+REPLACE\s+)?TABLE\b", text):
            return text
    raise LOAD_READ_SCHEMA_FILE(str(path))
