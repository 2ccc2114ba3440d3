"""Loading: target tables, and chunks applied one transaction per chunk, as INSERT
statements or as one LOAD DATA LOCAL INFILE fed from memory."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import asyncmy
import asyncmy.connection
import asyncmy.errors

from errors import (
    DB_DRIVER,
    LOAD_ADD_INDEX,
    LOAD_DUPLICATE_ENTRY,
    LOAD_INVALID_INSERT_SQL,
    LOAD_NOT_CREATE_TABLE,
    LOAD_TABLE_MISMATCH,
    DMError,
)
from mysqlkit.full.deferred_index import alter_add_indexes, index_name
from mysqlkit.full.dump import SESSION_SETTINGS
from mysqlkit.schema.tableinfo import TableInfo, load_field
from mysqlkit.sqlquote import quote_ident
from mysqlkit.upstream import (
    DEFAULT_CONNECT_TIMEOUT,
    ConnConfig,
    as_text,
    connect,
    driver_error,
    fetchall,
    open_conn,
)

__all__ = [
    "LOAD_SESSION_SETTINGS",
    "ON_DUPLICATE_MODES",
    "Lines",
    "add_missing_indexes",
    "connect_for_load",
    "create_target_table",
    "load_data",
    "load_data_sql",
    "load_statements",
    "local_infile_allowed",
    "prepare_load_session",
    "rename_create_table",
    "table_columns",
    "table_exists",
]

log = logging.getLogger(__name__)

ON_DUPLICATE_MODES = ("replace", "ignore", "error")

# SESSION_SETTINGS (utf8mb4, UTC, mysqldump's sql_mode: see mysqlkit.full.dump), and no foreign
# key checks: chunks of child tables may load before their parents' rows.
# unique_checks stays ON on purpose: on MariaDB 10.6+ unique_checks=0 together with
# foreign_key_checks=0 switches an empty table to InnoDB's "bulk insert" mode (MDEV-24621),
# which measured ~50% more server CPU on sysbench rows (they arrive in PK order already, the
# sort is wasted): 4.7 s vs 3.1 s of target CPU for 200k rows, and no faster wall time.
LOAD_SESSION_SETTINGS = SESSION_SETTINGS + ", SESSION foreign_key_checks = 0"

_ER_DUP_ENTRY = 1062
_ER_DUP_KEYNAME = 1061

# The head of a data statement, after optional whitespace: INSERT [IGNORE] INTO or REPLACE
# INTO (mydumper and mysqldump write plain INSERT INTO) and the table name, optionally
# schema-qualified, backtick-quoted or bare.
_IDENT_B = rb"(?:`(?:[^`]|``)+`|[\w$]+)"
_HEAD_RE = re.compile(rb"\A(\s*)(?:INSERT\s+(?:IGNORE\s+)?|REPLACE\s+)INTO\s+(" + _IDENT_B
                      + rb"(?:\s*\.\s*" + _IDENT_B + rb")?)", re.IGNORECASE)
# Session statements that dump files carry, e.g. mydumper's `/*!40101 SET NAMES binary*/;`.
_SET_RE = re.compile(rb"\A\s*(?:/\*!\d*\s*)?SET\b", re.IGNORECASE)
_VERBS = {"replace": b"REPLACE INTO", "ignore": b"INSERT IGNORE INTO", "error": b"INSERT INTO"}


async def prepare_load_session(conn: asyncmy.Connection) -> None:
    await conn.query(LOAD_SESSION_SETTINGS)


def _rewrite(stmt: bytes, verb: bytes, target: bytes | None) -> tuple[bytes, bool]:
    """(statement with its verb, and table if `target`, replaced, True) for data
    statements; (stmt, False) for SET statements; anything else is refused: a chunk must
    not run arbitrary SQL."""
    m = _HEAD_RE.match(stmt)
    if m is not None:
        return m.group(1) + verb + b" " + (target or m.group(2)) + stmt[m.end():], True
    if _SET_RE.match(stmt):
        return stmt, False
    raise LOAD_INVALID_INSERT_SQL(stmt[:200].decode(errors="replace"))


def _target_of(stmt: bytes) -> str:
    m = _HEAD_RE.match(stmt)
    return m.group(2).decode(errors="replace") if m else "?"


async def load_statements(conn: asyncmy.Connection, statements: Iterable[bytes],
                          on_duplicate: str,
                          checkpoint: tuple[str, Sequence[Any]] | None = None,
                          *, target: tuple[str, str] | None = None) -> int:
    """Run `statements` (INSERTs, as dump_chunk/iter_statements yield them) in ONE
    transaction with their verb set by `on_duplicate` (replace: REPLACE INTO, ignore:
    INSERT IGNORE INTO, error: INSERT INTO), then the optional `checkpoint` (sql, args) in
    the same transaction, then COMMIT. `target` (schema, table) replaces the table the
    statements name (for dump files written under another name, or mydumper's, which name
    the table without its schema). Returns the rows affected by the data statements
    (REPLACE counts a replaced row twice, as MySQL does).

    Errors roll the transaction back: a duplicate key with `error` is LOAD_DUPLICATE_ENTRY
    (34101) with the server's message as cause; other driver errors are DB_DRIVER.
    """
    verb = _VERBS.get(on_duplicate)
    if verb is None:
        raise ValueError(f"on_duplicate must be one of {ON_DUPLICATE_MODES}, "
                         f"not {on_duplicate!r}")
    affected = 0
    stmt = b""
    name = (f"{quote_ident(target[0])}.{quote_ident(target[1])}".encode()
            if target is not None else None)
    try:
        await prepare_load_session(conn)
        await conn.query("BEGIN")
        reset = False
        for raw in statements:
            stmt, is_data = _rewrite(raw, verb, name)
            n = await conn.query(stmt)
            if is_data:
                affected += n
            else:
                reset = True
        if checkpoint is not None:
            if reset:  # a file's `SET NAMES binary` must not reach the checkpoint's text
                await prepare_load_session(conn)
            sql, args = checkpoint
            stmt = sql.encode()  # names the checkpoint table if it is the duplicate
            async with conn.cursor() as cur:
                await cur.execute(sql, args)
        await conn.query("COMMIT")
    except BaseException as exc:
        err = await _undo_load(conn, exc, _target_of(stmt))
        if err is None:
            raise
        raise err from None
    return affected


async def _rollback(conn: asyncmy.Connection) -> None:
    try:
        async with asyncio.timeout(5):
            await conn.query("ROLLBACK")
    except (asyncmy.errors.MySQLError, OSError, RuntimeError):
        conn.close()  # broken connection: the server rolls back on its own


# --- LOAD DATA LOCAL INFILE from memory -------------------------------------------------------
#
# Measured on sysbench rows (2 cores, binlog on): LOAD DATA costs the target ~20% less CPU
# than the same rows as multi-row INSERTs, and the target's CPU is what a load waits for.

class Lines:
    """What one LOAD DATA statement reads: blocks of whole lines (format:
    tableinfo.load_field) with their row counts, e.g. dump.chunk_lines streaming from the
    source. `rows` and `size` count what has been sent so far: everything once the
    statement is done."""

    def __init__(self, blocks: AsyncIterable[tuple[bytes, int]]):
        self._blocks = blocks
        self.rows = 0
        self.size = 0

    @classmethod
    def of(cls, data: bytes, rows: int) -> Lines:
        async def one() -> AsyncIterator[tuple[bytes, int]]:
            yield data, rows
        return cls(one())

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for data, n in self._blocks:
            self.rows += n
            self.size += len(data)
            yield data


# The data of LOAD DATA statements in flight, by the file name the statement gives.
_INFILES: dict[str, Lines] = {}
_INFILE_PACKET = 1 << 16
_LOAD_VERBS = {"replace": "REPLACE", "ignore": "IGNORE", "error": "IGNORE"}


class _MemoryInfile:
    """Stands in for asyncmy's LoadLocalFile, which opens whatever path the server asks
    for (a rogue server could read any of our files): this one sends only the Lines
    registered in _INFILES under the name asked for, and an empty file for any other.
    asyncmy reads the server's answer after the end-of-file packet even if this raises."""

    def __init__(self, filename: bytes | str, connection: Any):
        self.name = (filename.decode(errors="replace") if isinstance(filename, bytes)
                     else filename)
        self.connection = connection

    async def send_data(self) -> None:
        conn = self.connection
        lines = _INFILES.pop(self.name, None)
        try:
            if lines is not None:
                async for data in lines:
                    for i in range(0, len(data), _INFILE_PACKET):
                        conn.write_packet(data[i:i + _INFILE_PACKET])
                        await conn._proto.drain()  # back-pressure from the target
        finally:
            conn.write_packet(b"")  # end of file
            await conn._proto.drain()


async def connect_for_load(cfg: ConnConfig,
                           connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> asyncmy.Connection:
    """As upstream.connect, with LOAD DATA LOCAL allowed (from memory only, see
    _MemoryInfile). The caller closes it."""
    setattr(asyncmy.connection, "LoadLocalFile", _MemoryInfile)  # noqa: B010 (stubbed name)
    return await connect(cfg, connect_timeout=connect_timeout, local_infile=True)


async def local_infile_allowed(conn: asyncmy.Connection) -> bool:
    """Whether the server takes LOAD DATA LOCAL (MySQL 8 turns it off by default)."""
    [(on,)] = await fetchall(conn, "SELECT @@GLOBAL.local_infile")
    return str(on) in ("1", "ON")


def load_data_sql(info: TableInfo, target: tuple[str, str], on_duplicate: str,
                  name: str) -> str:
    """LOAD DATA LOCAL INFILE of `name` into `target` for lines as dump_chunk_lines reads
    them (format: tableinfo.load_field)."""
    cols: list[str] = []
    sets: list[str] = []
    for i, c in enumerate(info.stored_columns):
        assign = load_field(c)[1]
        if assign is None:
            cols.append(quote_ident(c.name))
        else:
            cols.append(f"@v{i}")
            sets.append(f"{quote_ident(c.name)} = {assign.format(f'@v{i}')}")
    return (f"LOAD DATA LOCAL INFILE '{name}' {_LOAD_VERBS[on_duplicate]} INTO TABLE "
            f"{quote_ident(target[0])}.{quote_ident(target[1])} CHARACTER SET binary "
            r"FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\'' ESCAPED BY '\\' "
            r"LINES TERMINATED BY '\n' (" + ",".join(cols) + ")"
            + (" SET " + ", ".join(sets) if sets else ""))


async def load_data(conn: asyncmy.Connection, lines: Lines, info: TableInfo,
                    target: tuple[str, str], on_duplicate: str,
                    checkpoint: Callable[[Lines], tuple[str, Sequence[Any]]] | None = None,
                    ) -> int:
    """`lines` into `target` by one LOAD DATA LOCAL INFILE, streamed as they come, in ONE
    transaction with the optional checkpoint (sql, args), made from the Lines once all are
    sent, then COMMIT. `conn` must come from connect_for_load. Returns the rows affected,
    with the errors of load_statements for the same `on_duplicate`.

    With LOCAL the server cannot stop the upload midway, so a duplicate key never fails
    the statement: the row is skipped with a warning, as with IGNORE. `error` therefore
    counts: fewer rows affected than sent is LOAD_DUPLICATE_ENTRY with the server's
    warning (or DB_DRIVER with the warnings if no duplicate caused it)."""
    if on_duplicate not in _LOAD_VERBS:
        raise ValueError(f"on_duplicate must be one of {ON_DUPLICATE_MODES}, "
                         f"not {on_duplicate!r}")
    table = f"{quote_ident(target[0])}.{quote_ident(target[1])}"
    what = table
    name = f"dmray-{uuid.uuid4().hex}"
    try:
        await prepare_load_session(conn)
        await conn.query("BEGIN")
        _INFILES[name] = lines
        try:
            affected: int = await conn.query(load_data_sql(info, target, on_duplicate, name))
        finally:
            unread = _INFILES.pop(name, None) is not None
        if unread:
            raise DB_DRIVER(cause=f"LOAD DATA LOCAL into {table}: the server did not ask "
                                  "for the data")
        if on_duplicate == "error" and affected != lines.rows:
            raise await _skipped_rows(conn, table, lines.rows, affected)
        if checkpoint is not None:
            sql, args = checkpoint(lines)
            what = _target_of(sql.encode())
            async with conn.cursor() as cur:
                await cur.execute(sql, args)
        await conn.query("COMMIT")
    except BaseException as exc:
        err = await _undo_load(conn, exc, what)
        if err is None:
            raise
        raise err from None
    return affected


async def _undo_load(conn: asyncmy.Connection, exc: BaseException,
                     what: str) -> DMError | None:
    """After a load failed with `exc`: its transaction rolled back, or the connection
    dropped when the protocol state is unknown (cancelled or broken mid-statement; the
    server rolls back). Returns the DMError to raise for `exc` (a duplicate key in `what`
    is LOAD_DUPLICATE_ENTRY), None to raise `exc` as it is."""
    if isinstance(exc, DMError | asyncmy.errors.MySQLError):
        await _rollback(conn)
    else:
        conn.close()
    if isinstance(exc, DMError):
        return None
    if isinstance(exc, asyncmy.errors.IntegrityError) and exc.args \
            and exc.args[0] == _ER_DUP_ENTRY:
        return LOAD_DUPLICATE_ENTRY(what, cause=str(exc))
    if isinstance(exc, asyncmy.errors.MySQLError | OSError):
        return driver_error(exc)
    return None


async def _skipped_rows(conn: asyncmy.Connection, table: str, rows: int,
                        affected: int) -> DMError:
    warnings = await fetchall(conn, "SHOW WARNINGS")
    for _level, code, message in warnings:
        if int(code) == _ER_DUP_ENTRY:
            return LOAD_DUPLICATE_ENTRY(table, cause=f'({code}, "{message}")')
    detail = "; ".join(f"({code}) {message}" for _level, code, message in warnings[:5])
    return DB_DRIVER(cause=f"{rows - affected} of {rows} rows not loaded into {table}: "
                           f"{detail or 'no warning'}")


# --- target tables ---------------------------------------------------------------------------

# The head of a CREATE TABLE statement up to and including the table name (optionally
# schema-qualified, backtick-quoted or bare).
_IDENT = r"(?:`(?:[^`]|``)+`|[\w$]+)"
_CREATE_HEAD_RE = re.compile(
    rf"\A(?:\s|/\*.*?\*/)*CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+)?TABLE\s+"
    rf"(?:IF\s+NOT\s+EXISTS\s+)?{_IDENT}(?:\s*\.\s*{_IDENT})?",
    re.IGNORECASE | re.DOTALL)


def rename_create_table(create_sql: str, schema: str, table: str) -> str:
    """`CREATE TABLE IF NOT EXISTS `schema`.`table` ...` from a CREATE TABLE statement.

    A regex limited to the statement's head rather than sqlglot: sqlglot would parse and
    re-generate the whole statement, and its MySQL dialect does not round-trip every
    MariaDB/MySQL table and column option (system versioning, page compression, invisible
    columns, odd CHECK/generated-column expressions...), so the target could silently get a
    different table. Only the name is ours to change; the body stays byte for byte.
    """
    m = _CREATE_HEAD_RE.match(create_sql)
    if m is None:
        raise LOAD_NOT_CREATE_TABLE(create_sql[:200], schema, table)
    return (f"CREATE TABLE IF NOT EXISTS {quote_ident(schema)}.{quote_ident(table)}"
            + create_sql[m.end():])


_COLUMN_LINE_RE = re.compile(r"^\s*`((?:[^`]|``)+)`\s+(.*)$")
_INT_WIDTH_RE = re.compile(r"^(tinyint|smallint|mediumint|int|integer|bigint)\(\d+\)")


def _column_type(rest: str) -> str:
    """The type at the start of a column definition, normalised: lower case, without
    integer display widths (MySQL 8 omits them, MariaDB shows them) nor ZEROFILL."""
    i, depth, quote = 0, 0, ""
    while i < len(rest):
        ch = rest[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch.isspace() and depth == 0:
            break
        i += 1
    words = [rest[:i]]
    for word in rest[i:].split():
        if word.lower() not in ("unsigned", "zerofill", "signed"):
            break
        if word.lower() == "unsigned":
            words.append("unsigned")
    typ = " ".join(words)
    typ = typ[:typ.index("(")].lower() + typ[typ.index("("):] if "(" in typ else typ.lower()
    typ = _INT_WIDTH_RE.sub(r"\1", typ)
    return typ.replace("integer", "int", 1) if typ.startswith("integer") else typ


def table_columns(create_sql: str) -> list[tuple[str, str]]:
    """(name, normalised type) of each column of a SHOW CREATE TABLE text, in order.

    SHOW CREATE TABLE prints one column per line, names backtick-quoted; index and
    constraint lines do not start with a backtick.
    """
    body = create_sql[create_sql.index("(") + 1:] if "(" in create_sql else ""
    cols = []
    for line in body.splitlines():
        m = _COLUMN_LINE_RE.match(line)
        if m:
            cols.append((m.group(1).replace("``", "`"), _column_type(m.group(2))))
    return cols


async def create_target_table(conn: asyncmy.Connection, create_sql: str, target_schema: str,
                              target_table: str) -> bool:
    """Create `target_schema` if missing and the table under its routed name from the
    source's CREATE TABLE. Returns True if created, False if it already existed with the
    same columns (names and types, in order); a different structure is
    LOAD_TABLE_MISMATCH (34102) naming the table."""
    name = f"{quote_ident(target_schema)}.{quote_ident(target_table)}"
    ddl = rename_create_table(create_sql, target_schema, target_table)
    try:
        # FK checks off: a table may reference one not created yet. The dump sql_mode
        # accepts the zero-date defaults the source accepted.
        await prepare_load_session(conn)
        await conn.query(f"CREATE DATABASE IF NOT EXISTS {quote_ident(target_schema)}")
        if not await table_exists(conn, target_schema, target_table):
            await conn.query(ddl)
            return True
        [row] = await fetchall(conn, f"SHOW CREATE TABLE {name}")
    except DMError:
        raise
    except (asyncmy.errors.MySQLError, OSError) as exc:
        raise driver_error(exc) from None
    current = row[1].decode() if isinstance(row[1], bytes) else str(row[1])
    want, have = table_columns(create_sql), table_columns(current)
    if want != have:
        raise LOAD_TABLE_MISMATCH(name, _describe_mismatch(want, have))
    return False


async def table_exists(conn: asyncmy.Connection, schema: str, table: str) -> bool:
    return bool(await fetchall(
        conn, "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
              "AND TABLE_NAME = %s", (schema, table)))


async def add_missing_indexes(cfg: ConnConfig, schema: str, table: str,
                              definitions: Sequence[str]) -> list[str]:
    """ALTER TABLE ... ADD those of `definitions` (deferred_index.split_create's) whose
    index name the table lacks, all in one statement; returns the names added.

    Idempotent: after a crash that followed the ALTER, or with another subtask adding the
    same indexes, nothing is left to add (a concurrent ALTER that wins is 1061, and we
    look again). Cancelled mid-ALTER, it kills the statement, which the server would
    otherwise finish alone. Errors are LOAD_ADD_INDEX with the server's message."""
    name = f"{quote_ident(schema)}.{quote_ident(table)}"
    conn = await connect(cfg)
    conn_id = 0
    try:
        [(conn_id,)] = await fetchall(conn, "SELECT CONNECTION_ID()")
        await prepare_load_session(conn)
        for _ in range(3):
            have = {as_text(r[0]).lower() for r in await fetchall(
                conn, "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS "
                      "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (schema, table))}
            missing = [d for d in definitions if index_name(d).lower() not in have]
            if not missing:
                return []
            try:
                await conn.query(alter_add_indexes(schema, table, missing))
            except asyncmy.errors.MySQLError as exc:
                if exc.args and exc.args[0] == _ER_DUP_KEYNAME:
                    continue
                raise
            return [index_name(d) for d in missing]
        raise LOAD_ADD_INDEX(name, cause="the indexes kept being added concurrently")
    except asyncio.CancelledError:
        if conn_id:
            await _kill_query(cfg, int(conn_id))
        raise
    except (asyncmy.errors.MySQLError, OSError) as exc:
        raise LOAD_ADD_INDEX(name, cause=driver_error(exc, cfg).cause) from None
    finally:
        conn.close()


async def _kill_query(cfg: ConnConfig, conn_id: int) -> None:
    try:
        async with asyncio.timeout(5), open_conn(cfg) as conn:
            await conn.query(f"KILL QUERY {conn_id}")
    except (DMError, asyncmy.errors.MySQLError, OSError, TimeoutError):
        pass  # gone already, or the target is down: nothing left to stop


def _describe_mismatch(want: list[tuple[str, str]], have: list[tuple[str, str]]) -> str:
    for i, (w, h) in enumerate(zip(want, have, strict=False)):
        if w != h:
            return (f"column #{i + 1} is `{h[0]}` {h[1]} in the target but `{w[0]}` {w[1]} "
                    f"in the source")
    if len(want) > len(have):
        return f"the target lacks column `{want[len(have)][0]}`"
    return f"the target has the extra column `{have[len(want)][0]}`"
