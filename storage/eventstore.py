"""Append-only event log on SQLAlchemy 2 async: SQLite (embedded) or MySQL/MariaDB (server).

Per-stream optimistic concurrency: (stream_id, version) is unique and an append names the
version it expects the stream to be at. A global autoincrement position lets a reader
follow everything after a point. Snapshots are kept one per stream (the latest).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    event,
    func,
    select,
)
from sqlalchemy.dialects.mysql import LONGBLOB, VARBINARY
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.types import TypeDecorator, TypeEngine

from events.base import EventRegistry, NewEvent, RecordedEvent, registry

metadata = MetaData()


class StreamId(TypeDecorator[str]):
    """A stream id compared byte for byte. On MySQL/MariaDB a VARCHAR, even in a _bin
    collation, ignores trailing spaces ('a' = 'a '), which would merge two sources' streams;
    VARBINARY does not."""

    impl = String(255)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(VARBINARY(1024))
        return dialect.type_descriptor(String(255))

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        if value is not None and dialect.name in ("mysql", "mariadb"):
            return value.encode()
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return value.decode() if isinstance(value, bytes | bytearray) else value


_blob = LargeBinary().with_variant(LONGBLOB(), "mysql", "mariadb")
_id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only

events_table = Table(
    "dmray_events",
    metadata,
    Column("position", _id, primary_key=True, autoincrement=True),
    Column("stream_id", StreamId(), nullable=False),
    Column("version", Integer, nullable=False),
    Column("event_type", String(128), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("data", _blob, nullable=False),
    Column("recorded_at", DateTime(timezone=False), nullable=False),
    UniqueConstraint("stream_id", "version", name="uq_stream_version"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)

snapshots_table = Table(
    "dmray_snapshots",
    metadata,
    Column("stream_id", StreamId(), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("state_type", String(128), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("data", _blob, nullable=False),
    Column("recorded_at", DateTime(timezone=False), nullable=False),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)


# One row whose lock every MySQL append takes first: appends then commit in the order of
# their positions, so a reader following read_all never steps past a position that is
# still to commit. (SQLite's BEGIN IMMEDIATE serialises writers already.) Control events
# are few; one writer at a time costs nothing that matters.
log_head_table = Table(
    "dmray_log_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("appends", BigInteger, nullable=False),
)


class WrongExpectedVersion(Exception):
    """Another writer appended to the stream first; reload and decide again."""

    def __init__(self, stream_id: str, expected: int, actual: int | None = None):
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream_id!r}: expected version {expected}, found "
            f"{'a concurrent append' if actual is None else actual}"
        )


@dataclass(frozen=True)
class Snapshot:
    stream_id: str
    version: int
    state_type: str
    schema_version: int
    data: bytes


def sqlite_url(data_dir: str | Path) -> str:
    path = Path(data_dir).expanduser().resolve() / "events.sqlite3"
    return f"sqlite+aiosqlite:///{path}"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class EventStore:
    """One process's handle on the log. Cheap to create; call `close()` when done."""

    def __init__(self, url: str, event_registry: EventRegistry = registry):
        self.url = url
        self._registry = event_registry
        self._is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self._is_sqlite:
            # Several actor processes share one file: WAL lets readers run beside the
            # writer, and a busy timeout turns lock contention into waiting.
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_pre_ping=True, pool_recycle=3600)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self._is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self._ready = False
        self._init_lock = asyncio.Lock()

    async def init(self) -> EventStore:
        async with self._init_lock:
            if not self._ready:
                for attempt in range(3):
                    try:
                        async with self.engine.begin() as conn:
                            await conn.run_sync(metadata.create_all, checkfirst=True)
                        break
                    except OperationalError as exc:
                        errno = _mysql_errno(exc)
                        if errno == 1049 and attempt < 2:  # unknown database: create it
                            await self._create_database()
                            continue
                        # Processes starting together on a fresh MySQL database race between
                        # create_all's check and its CREATE TABLE (1050 "already exists"):
                        # the other one created it, so check again.
                        if errno != 1050 or attempt == 2:
                            raise
                if not self._is_sqlite:
                    await self._ensure_log_head()
                self._ready = True
        return self

    async def _ensure_log_head(self) -> None:
        async with self.engine.begin() as conn:
            exists = await conn.scalar(select(func.count()).select_from(log_head_table))
            if exists:
                return
        try:
            async with self.engine.begin() as conn:
                await conn.execute(log_head_table.insert().values(id=1, appends=0))
        except IntegrityError:
            pass  # another process inserted it first

    async def _create_database(self) -> None:
        url = make_url(self.url)
        server = create_async_engine(url.set(database=""))
        try:
            async with server.begin() as conn:
                name = str(url.database).replace("`", "``")
                await conn.exec_driver_sql(
                    f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
        finally:
            await server.dispose()

    async def close(self) -> None:
        await self.engine.dispose()

    # --- writing -------------------------------------------------------------------
    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: int
    ) -> int:
        """Append after `expected_version` (0 = new stream); returns the new version."""
        if not events:
            return expected_version
        await self.init()
        rows = [
            {
                "stream_id": stream_id,
                "version": expected_version + i,
                "event_type": ev.event_type,
                "schema_version": ev.schema_version,
                "data": ev.data,
                "recorded_at": _now(),
            }
            for i, ev in enumerate(events, start=1)
        ]
        try:
            async with self.engine.begin() as conn:
                if not self._is_sqlite:
                    await conn.execute(log_head_table.update().where(
                        log_head_table.c.id == 1).values(appends=log_head_table.c.appends + 1))
                current = await conn.scalar(
                    select(func.coalesce(func.max(events_table.c.version), 0)).where(
                        events_table.c.stream_id == stream_id
                    )
                )
                if current != expected_version:
                    raise WrongExpectedVersion(stream_id, expected_version, current)
                await conn.execute(events_table.insert(), rows)
        except IntegrityError as exc:
            # Two writers passed the check together; the unique key let one through.
            raise WrongExpectedVersion(stream_id, expected_version) from exc
        except OperationalError as exc:
            if _mysql_errno(exc) in (1213, 1205):  # deadlock / lock wait: same race
                raise WrongExpectedVersion(stream_id, expected_version) from exc
            raise
        return expected_version + len(events)

    async def save_snapshot(self, snap: Snapshot) -> None:
        await self.init()
        values = {
            "version": snap.version,
            "state_type": snap.state_type,
            "schema_version": snap.schema_version,
            "data": snap.data,
            "recorded_at": _now(),
        }
        # Look before writing: on MySQL an UPDATE of a missing row takes a gap lock, and
        # concurrent first saves (even of different streams) then deadlock on their INSERTs.
        # A snapshot is only a cache: after a few lost races the save is dropped.
        for _ in range(5):
            try:
                async with self.engine.begin() as conn:
                    exists = await conn.scalar(
                        select(func.count()).where(snapshots_table.c.stream_id == snap.stream_id)
                    )
                    if exists:
                        await conn.execute(
                            snapshots_table.update()
                            .where(snapshots_table.c.stream_id == snap.stream_id)
                            .where(snapshots_table.c.version <= snap.version)
                            .values(**values)
                        )
                    else:
                        await conn.execute(
                            snapshots_table.insert().values(stream_id=snap.stream_id, **values)
                        )
                return
            except IntegrityError:
                continue  # a concurrent save inserted first: update it if ours is newer
            except OperationalError as exc:
                if _mysql_errno(exc) not in (1213, 1205):  # deadlock / lock wait: retry
                    raise

    # --- reading -------------------------------------------------------------------
    async def stream_version(self, stream_id: str) -> int:
        await self.init()
        async with self.engine.connect() as conn:
            v = await conn.scalar(
                select(func.coalesce(func.max(events_table.c.version), 0)).where(
                    events_table.c.stream_id == stream_id
                )
            )
        return int(v or 0)

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        await self.init()
        q = (
            select(events_table)
            .where(events_table.c.stream_id == stream_id)
            .where(events_table.c.version > after_version)
            .order_by(events_table.c.version)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [self._decode(r) for r in rows]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        await self.init()
        q = (
            select(events_table)
            .where(events_table.c.position > after_position)
            .order_by(events_table.c.position)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [self._decode(r) for r in rows]

    async def load_snapshot(self, stream_id: str) -> Snapshot | None:
        await self.init()
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(snapshots_table).where(snapshots_table.c.stream_id == stream_id)
                )
            ).mappings().first()
        if row is None:
            return None
        return Snapshot(
            stream_id=row["stream_id"],
            version=row["version"],
            state_type=row["state_type"],
            schema_version=row["schema_version"],
            data=bytes(row["data"]),
        )

    def _decode(self, row: Any) -> RecordedEvent:
        return RecordedEvent(
            stream_id=row["stream_id"],
            version=row["version"],
            position=row["position"],
            recorded_at=row["recorded_at"],
            event=self._registry.decode(
                row["event_type"], row["schema_version"], bytes(row["data"])
            ),
        )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (see _sqlite_begin) instead of pysqlite's own.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    # WAL is kept in the file, so one successful switch is enough. The switch needs an
    # exclusive lock and does not wait for it: when processes open a new file together,
    # the others get "database is locked" here while one of them switches it.
    with contextlib.suppress(sqlite3.OperationalError):
        cur.execute("PRAGMA journal_mode=WAL")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock up front: a deferred transaction that reads, then
    # writes, fails at once with "database is locked" when another process wrote between.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _mysql_errno(exc: OperationalError) -> int | None:
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None
