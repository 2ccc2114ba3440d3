"""Dumping: consistent snapshots across connections, and chunks as INSERT statements.

Snapshots. Each reader is a connection inside `START TRANSACTION WITH CONSISTENT SNAPSHOT`
(REPEATABLE READ). Readers opened while a lock stops commits all see the same point, and
the binlog position read under that lock is exactly that point. `SnapshotLock` is the
lock on its own control connection and `open_snapshot_reader` opens one reader, so a
controller can hold the lock while readers are opened in other processes;
`open_consistent_snapshot` does both in one process.

Chunks. `dump_chunk` has the server render every row as the text of an SQL tuple (see
`tableinfo.literal_expr`), `chunk_lines` as a line for LOAD DATA (see
`tableinfo.load_field`): no value is converted in Python, rows arrive as bytes that are
only joined.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

import asyncmy
import asyncmy.errors
from asyncmy.cursors import SSCursor

from errors import CONFIG_INVALID, DUMP_GLOBAL_LOCK, DUMP_ROW_TOO_LARGE, DMError
from mysqlkit.full.chunks import Chunk
from mysqlkit.position import BinlogPosition
from mysqlkit.schema.tableinfo import TableInfo, literal_expr, load_field
from mysqlkit.sqlquote import quote_ident
from mysqlkit.upstream import ConnConfig, _close, connect, driver_error, driver_errors
from mysqlkit.upstream import as_text as _text
from mysqlkit.upstream import fetchall as _exec

__all__ = [
    "CONSISTENCY_MODES",
    "SESSION_SETTINGS",
    "SnapshotLock",
    "SnapshotSession",
    "TableLike",
    "chunk_lines",
    "dump_chunk",
    "dump_chunk_lines",
    "insert_header",
    "lines_select_sql",
    "open_consistent_snapshot",
    "open_snapshot_reader",
    "select_sql",
]

log = logging.getLogger(__name__)

CONSISTENCY_MODES = ("auto", "flush", "snapshot", "lock", "none")

# For dump and load sessions alike. time_zone: TIMESTAMPs travel as UTC text, so they are
# exact whatever the servers' zones. sql_mode (mysqldump's): no NO_BACKSLASH_ESCAPES /
# ANSI_QUOTES (our literals use backslash escapes and backticks), no PAD_CHAR_TO_FULL_LENGTH
# (CHAR values as stored), no strictness and no NO_ZERO_DATE/NO_ZERO_IN_DATE (zero dates and
# other values the source accepted load unchanged), and NO_AUTO_VALUE_ON_ZERO (an
# AUTO_INCREMENT 0 stays 0).
SESSION_SETTINGS = ("SET NAMES utf8mb4, SESSION time_zone = '+00:00', "
                    "SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'")

# Privilege errors: FTWRL denied (RELOAD missing) is what `auto` falls back from.
_ACCESS_DENIED = frozenset({1044, 1045, 1142, 1227})
# How long taking a lock may wait for running statements/DDL before failing.
DEFAULT_LOCK_WAIT_TIMEOUT = 60


class TableLike(Protocol):
    @property
    def schema(self) -> str: ...
    @property
    def table(self) -> str: ...


TableRefArg = TableLike | tuple[str, str]


def _schema_table(t: TableRefArg) -> tuple[str, str]:
    if isinstance(t, tuple):
        return t[0], t[1]
    return t.schema, t.table




def _errno(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


async def _is_mariadb(conn: asyncmy.Connection) -> bool:
    [(version,)] = await _exec(conn, "SELECT VERSION()")
    return "mariadb" in _text(version).lower()


async def _master_status(conn: asyncmy.Connection) -> tuple[str, int]:
    try:
        rows = await _exec(conn, "SHOW MASTER STATUS")
    except asyncmy.errors.ProgrammingError as exc:
        if _errno(exc) != 1064:
            raise
        rows = await _exec(conn, "SHOW BINARY LOG STATUS")  # MySQL 8.4 renamed it
    if not rows:
        return "", 0  # binlog disabled
    return _text(rows[0][0]), int(rows[0][1])


async def _gtid(conn: asyncmy.Connection, mariadb: bool) -> str:
    var = "@@GLOBAL.gtid_binlog_pos" if mariadb else "@@GLOBAL.gtid_executed"
    try:
        [(gtid,)] = await _exec(conn, f"SELECT {var}")
    except asyncmy.errors.MySQLError:
        return ""  # very old server without GTIDs
    return "" if gtid is None else _text(gtid).replace("\n", "")


async def _snapshot_status(conn: asyncmy.Connection) -> tuple[str, int]:
    """MariaDB: the binlog position of the current consistent-snapshot transaction."""
    rows = await _exec(conn, "SHOW STATUS LIKE 'binlog_snapshot_%'")
    status = {_text(k).lower(): _text(v) for k, v in rows}
    return status.get("binlog_snapshot_file", ""), int(status.get("binlog_snapshot_position")
                                                        or 0)


async def _start_snapshot(conn: asyncmy.Connection) -> None:
    await _exec(conn, SESSION_SETTINGS)
    await _exec(conn, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    await _exec(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT")


async def open_snapshot_reader(cfg: ConnConfig) -> asyncmy.Connection:
    """One connection inside `START TRANSACTION WITH CONSISTENT SNAPSHOT`, with the dump
    session settings. It sees the point at which it was opened: open it while a
    `SnapshotLock` is held to share that lock's point. The caller closes it."""
    conn = await connect(cfg)
    try:
        with driver_errors(cfg):
            await _start_snapshot(conn)
    except BaseException:
        await _close(conn)
        raise
    return conn


class SnapshotLock:
    """The lock under which snapshot readers are opened so that they all see one point.

    `consistency`:
    - flush: FLUSH TABLES WITH READ LOCK (needs RELOAD); position from SHOW MASTER STATUS.
    - snapshot: on MariaDB, BACKUP STAGE START + BLOCK_COMMIT, which only blocks commits
      (writes go on until they commit), lighter than FTWRL; position from
      binlog_snapshot_file/position of a consistent-snapshot transaction. On MySQL: flush.
    - lock: LOCK TABLES ... READ of `tables` (only those are consistent with the position).
    - none: no lock. The position is read before readers are opened, so they may see later
      writes than the position and not even the same ones: replaying the binlog from it
      re-applies some changes (fine for idempotent replication, "safe mode"), and chunks
      read by different readers may disagree. Use only when the source is quiet.
    - auto: flush, falling back to lock when FTWRL is denied for lack of privilege.

    `acquire()`, then open readers (here or in other processes, `open_snapshot_reader`),
    then `position()`, then `release()` as soon as possible: writes wait meanwhile. Also an
    async context manager (acquire/release).
    """

    def __init__(self, cfg: ConnConfig, consistency: str = "auto",
                 tables: Iterable[TableRefArg] = (),
                 lock_wait_timeout: int = DEFAULT_LOCK_WAIT_TIMEOUT) -> None:
        if consistency not in CONSISTENCY_MODES:
            raise CONFIG_INVALID(f"unknown consistency {consistency!r}, expected one of "
                                 f"{', '.join(CONSISTENCY_MODES)}")
        self.cfg = cfg
        self.consistency = consistency
        self.tables = [_schema_table(t) for t in tables]
        self.lock_wait_timeout = int(lock_wait_timeout)
        self.mode = consistency  # the mode in force after acquire() (auto resolves)
        self.mariadb = False
        self._conn: asyncmy.Connection | None = None
        self._none_position: BinlogPosition | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    async def acquire(self) -> None:
        if self._conn is not None:
            raise RuntimeError("SnapshotLock is already held")
        conn = await connect(self.cfg)
        try:
            with driver_errors(self.cfg):
                self.mariadb = await _is_mariadb(conn)
                await _exec(conn, f"SET SESSION lock_wait_timeout = {self.lock_wait_timeout}")
                await self._lock(conn)
        except BaseException:
            await _close(conn)
            raise
        self._conn = conn

    async def _lock(self, conn: asyncmy.Connection) -> None:
        mode = self.consistency
        if mode == "snapshot" and not self.mariadb:
            mode = "flush"  # BACKUP STAGE is MariaDB's; MySQL gets the next best thing
        if mode == "auto":
            try:
                await _exec(conn, "FLUSH TABLES WITH READ LOCK")
                mode = "flush"
            except asyncmy.errors.MySQLError as exc:
                if _errno(exc) not in _ACCESS_DENIED:
                    raise DUMP_GLOBAL_LOCK(cause=str(driver_error(exc, self.cfg).cause)) \
                        from None
                log.info("FTWRL denied (%s), falling back to LOCK TABLES", exc)
                mode = "lock"
                await self._lock_tables(conn)
        elif mode == "flush":
            try:
                await _exec(conn, "FLUSH TABLES WITH READ LOCK")
            except asyncmy.errors.MySQLError as exc:
                raise DUMP_GLOBAL_LOCK(cause=str(driver_error(exc, self.cfg).cause)) from None
        elif mode == "snapshot":
            try:
                # Skipped stages (FLUSH, BLOCK_DDL) are run on the way to BLOCK_COMMIT.
                await _exec(conn, "BACKUP STAGE START")
                await _exec(conn, "BACKUP STAGE BLOCK_COMMIT")
            except asyncmy.errors.MySQLError as exc:
                raise DUMP_GLOBAL_LOCK(cause=str(driver_error(exc, self.cfg).cause)) from None
        elif mode == "lock":
            await self._lock_tables(conn)
        else:  # none: see the class doc
            name, pos = await _master_status(conn)
            self._none_position = BinlogPosition(name, pos, await _gtid(conn, self.mariadb))
        self.mode = mode

    async def _lock_tables(self, conn: asyncmy.Connection) -> None:
        if not self.tables:
            raise DUMP_GLOBAL_LOCK(cause="consistency 'lock' needs the list of tables")
        names = ", ".join(f"{quote_ident(s)}.{quote_ident(t)} READ" for s, t in self.tables)
        try:
            await _exec(conn, f"LOCK TABLES {names}")
        except asyncmy.errors.MySQLError as exc:
            raise DUMP_GLOBAL_LOCK(cause=str(driver_error(exc, self.cfg).cause)) from None

    async def position(self, reader: asyncmy.Connection | None = None) -> BinlogPosition:
        """The binlog position (and GTID set) of the locked point; call it while held.

        In `snapshot` mode it is read from a consistent-snapshot transaction: `reader` if
        given (one of the snapshot readers), else a short one on the control connection.
        """
        conn = self._conn
        if conn is None:
            raise RuntimeError("SnapshotLock.position() needs the lock to be held")
        if self._none_position is not None:
            return self._none_position
        with driver_errors(self.cfg):
            if self.mode == "snapshot":
                if reader is not None:
                    name, pos = await _snapshot_status(reader)
                else:
                    await _exec(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    try:
                        name, pos = await _snapshot_status(conn)
                    finally:
                        await _exec(conn, "COMMIT")
            else:
                name, pos = await _master_status(conn)
            return BinlogPosition(name, pos, await _gtid(conn, self.mariadb))

    async def release(self) -> None:
        """Unlock and close the control connection; idempotent, never raises driver errors
        (closing the connection drops any lock anyway)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        unlock = {"flush": "UNLOCK TABLES", "lock": "UNLOCK TABLES",
                  "snapshot": "BACKUP STAGE END"}.get(self.mode)
        try:
            if unlock:
                with contextlib.suppress(asyncmy.errors.MySQLError, OSError):
                    async with asyncio.timeout(5):
                        await _exec(conn, unlock)
        finally:
            await _close(conn)

    async def __aenter__(self) -> SnapshotLock:
        await self.acquire()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.release()


@dataclass
class SnapshotSession:
    """n connections in snapshot transactions at one point, and that point's position."""

    conns: list[asyncmy.Connection]
    position: BinlogPosition
    mode: str  # the consistency actually used (auto resolved)
    cfg: ConnConfig = field(repr=False)

    async def close(self) -> None:
        conns, self.conns = self.conns, []
        for conn in conns:
            with contextlib.suppress(asyncmy.errors.MySQLError, OSError):
                async with asyncio.timeout(5):
                    await _exec(conn, "ROLLBACK")  # read-only: nothing to keep
            await _close(conn)

    async def __aenter__(self) -> SnapshotSession:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


async def open_consistent_snapshot(cfg: ConnConfig, n: int, consistency: str = "auto",
                                   tables: Iterable[TableRefArg] = ()) -> SnapshotSession:
    """n snapshot readers at one point, with its binlog position (see SnapshotLock for the
    modes; `tables` is needed by `lock`, and by `auto` when it falls back to it)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    lock = SnapshotLock(cfg, consistency, tables)
    await lock.acquire()
    conns: list[asyncmy.Connection] = []
    try:
        results = await asyncio.gather(*(open_snapshot_reader(cfg) for _ in range(n)),
                                       return_exceptions=True)
        conns = [r for r in results if isinstance(r, asyncmy.Connection)]
        for r in results:
            if isinstance(r, BaseException):
                raise r
        position = await lock.position(conns[0])
    except BaseException:
        await lock.release()
        await SnapshotSession(conns, BinlogPosition("", 0, ""), lock.mode, cfg).close()
        raise
    await lock.release()
    return SnapshotSession(conns, position, lock.mode, cfg)


# --- chunks as INSERT statements ------------------------------------------------------------

DEFAULT_STATEMENT_ROWS = 10_000
DEFAULT_STATEMENT_BYTES = 1 << 20
_FETCH_ROWS = 2_000


def insert_header(info: TableInfo, target: TableRefArg) -> bytes:
    """`INSERT INTO `s`.`t` (`c1`,...) VALUES\n` for the stored (non-generated) columns."""
    schema, table = _schema_table(target)
    cols = ",".join(quote_ident(c.name) for c in info.stored_columns)
    return (f"INSERT INTO {quote_ident(schema)}.{quote_ident(table)} ({cols}) VALUES\n"
            .encode())


def select_sql(info: TableInfo, chunk: Chunk) -> str:
    """One result column per row: `(v1,v2,...)` as bytes. The leading _binary literal
    makes the whole CONCAT binary, so the driver hands it over undecoded (cheaper than a
    CAST of the result). Every part is non-NULL ('NULL' for NULL values): the whole is
    NULL only if longer than max_allowed_packet."""
    parts = ",',',".join(literal_expr(c) for c in info.stored_columns)
    where = f" WHERE {chunk.where}" if chunk.where else ""
    return f"SELECT CONCAT(_binary'(',{parts},')') FROM {info.quoted_name}{where}"


async def dump_chunk(conn: asyncmy.Connection, info: TableInfo, chunk: Chunk,
                     target: TableRefArg,
                     statement_rows: int = DEFAULT_STATEMENT_ROWS,
                     max_statement_bytes: int = DEFAULT_STATEMENT_BYTES,
                     ) -> AsyncIterator[bytes]:
    """The chunk's rows as complete `INSERT INTO target (...) VALUES (...),\n(...);\n`
    statements of at most `statement_rows` rows and about `max_statement_bytes` (a single
    larger row makes a statement of its own). Streams with an unbuffered cursor: memory is
    one statement. `conn` should be a snapshot reader (its session settings matter)."""
    if (chunk.schema, chunk.table) != (info.schema, info.table):
        raise ValueError(f"chunk of {chunk.schema}.{chunk.table} given with the info of "
                         f"{info.schema}.{info.table}")
    header = insert_header(info, target)
    sql = select_sql(info, chunk)
    limit = max(1, max_statement_bytes - len(header) - 2)
    parts: list[bytes] = []
    size = 0
    try:
        async with conn.cursor(SSCursor) as cur:
            await cur.execute(sql)
            while True:
                rows = await cur.fetchmany(_FETCH_ROWS)
                if not rows:
                    break
                for (row,) in rows:
                    if row is None:
                        raise DUMP_ROW_TOO_LARGE(info.quoted_name, chunk.index)
                    if parts and (size + len(row) > limit or len(parts) >= statement_rows):
                        yield header + b",\n".join(parts) + b";\n"
                        parts = []
                        size = 0
                    parts.append(row)
                    size += len(row) + 2
    except DMError:
        raise
    except (asyncmy.errors.MySQLError, OSError) as exc:
        raise driver_error(exc) from None
    if parts:
        yield header + b",\n".join(parts) + b";\n"


# --- chunks as LOAD DATA lines ---------------------------------------------------------------


def lines_select_sql(info: TableInfo, chunk: Chunk) -> str:
    """One result column per row: the row as a LOAD DATA line `v1,v2,...` and a newline (see
    `tableinfo.load_field`), binary and never NULL unless longer than max_allowed_packet
    (as `select_sql`)."""
    parts = ",',',".join(load_field(c)[0] for c in info.stored_columns)
    where = f" WHERE {chunk.where}" if chunk.where else ""
    return f"SELECT CONCAT(_binary'',{parts},'\\n') FROM {info.quoted_name}{where}"


async def chunk_lines(conn: asyncmy.Connection, info: TableInfo,
                      chunk: Chunk) -> AsyncGenerator[tuple[bytes, int], None]:
    """The chunk's rows as LOAD DATA lines, streamed in blocks: (lines, number of rows) of
    up to _FETCH_ROWS rows each. Unbuffered cursor: `conn` is busy until the end. `conn`
    should be a snapshot reader (its session settings matter)."""
    if (chunk.schema, chunk.table) != (info.schema, info.table):
        raise ValueError(f"chunk of {chunk.schema}.{chunk.table} given with the info of "
                         f"{info.schema}.{info.table}")
    try:
        async with conn.cursor(SSCursor) as cur:
            await cur.execute(lines_select_sql(info, chunk))
            while rows := await cur.fetchmany(_FETCH_ROWS):
                parts = [row for (row,) in rows]
                if None in parts:
                    raise DUMP_ROW_TOO_LARGE(info.quoted_name, chunk.index)
                yield b"".join(parts), len(parts)
    except DMError:
        raise
    except (asyncmy.errors.MySQLError, OSError) as exc:
        raise driver_error(exc) from None


async def dump_chunk_lines(conn: asyncmy.Connection, info: TableInfo,
                           chunk: Chunk) -> tuple[bytes, int]:
    """(all the chunk's lines, number of rows): chunk_lines read whole."""
    blocks = [b async for b in chunk_lines(conn, info, chunk)]
    return b"".join(data for data, _ in blocks), sum(n for _, n in blocks)
