"""Writing to the target: the lanes that apply batches of row changes (each in one
transaction with its lane checkpoint), the DDL connection, and the retries of transient
errors (shown in status while they last, pausing the subtask past retry_timeout)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import asyncmy

from errors import (
    SYNC_EXEC,
    DMError,
)
from mysqlkit import upstream
from mysqlkit.binlog.rowcodec import APPLY_SESSION_SQL
from mysqlkit.retry import RetryClock, exhausted
from mysqlkit.sync import checkpoint
from mysqlkit.sync.dml import build_batch

if TYPE_CHECKING:
    from mysqlkit.sync.syncer import Syncer, _Job

log = logging.getLogger("dmray.syncer")

# Server errors a retry can cure: lost/refused connections, deadlocks, lock wait timeouts,
# a read-only or shutting-down target.
_TRANSIENT = upstream.TRANSIENT_ERRNOS


class TargetWriter:
    """The target side of one Syncer."""

    def __init__(self, syncer: Syncer) -> None:
        self.s = syncer
        self.ddl_conn: asyncmy.Connection | None = None  # checkpoints, DDL, shard locks

    def close(self) -> None:
        if self.ddl_conn is not None:
            self.ddl_conn.close()
            self.ddl_conn = None

    # --- lanes ----------------------------------------------------------------------
    async def lane(self, i: int) -> None:
        q = self.s._lanes[i]
        conn: asyncmy.Connection | None = None
        try:
            while True:
                job = await q.get()
                try:
                    if job is not None and self.s._lane_error is None:
                        conn = await self._apply(i, conn, job)
                except DMError as err:
                    self.s._lane_error = self.s._lane_error or err
                finally:
                    q.task_done()
        finally:
            if conn is not None:
                conn.close()

    async def _apply(self, lane: int, conn: asyncmy.Connection | None,
                     job: _Job) -> asyncmy.Connection | None:
        safe = job.safe
        retry = RetryClock(self.s.spec.retry_timeout)
        while True:
            statements = build_batch(job.changes, safe)
            statements.append(checkpoint.lane_sql(self.s._ckpt_table, self.s.spec.source, lane,
                                                  job.txn_start))
            statements += [checkpoint.table_sql(self.s._ckpt_table, self.s.spec.source, s, t, cid)
                           for (s, t), cid in job.tables.items()]
            try:
                if conn is None:
                    conn = await self.connect(multi_statements=True)
                await _run_transaction(conn, statements)
                self.s.stats.io_bytes += sum(len(s) for s in statements)
                self.s.retrying = ""
                return conn
            except Exception as exc:  # classified below: retried or pausing the subtask
                code = _errno(exc)
                if conn is not None:
                    conn.close()
                    conn = None
                if code in _TRANSIENT or (code is None and not isinstance(exc, DMError)):
                    # The commit may have happened before the connection dropped: the
                    # retry must be idempotent.
                    safe = True
                    await self._wait_to_retry(retry, exc)
                    continue
                if isinstance(exc, DMError):
                    raise exhausted(exc) from None
                failed = (getattr(exc, "__notes__", None) or [_first_sql(statements)])[0]
                raise SYNC_EXEC(_short(exc), cause=failed[:300]) from None

    async def connect(self, multi_statements: bool = False) -> asyncmy.Connection:
        conn = await upstream.connect(self.s.spec.tgt, multi_statements=multi_statements)
        async with conn.cursor() as cur:
            await cur.execute(APPLY_SESSION_SQL)
        return conn

    async def exec_retrying(self, stmt: tuple[str, tuple[Any, ...]]) -> list[Any]:
        """Runs one statement on the DDL connection; its rows, if any."""
        retry = RetryClock(self.s.spec.retry_timeout)
        while True:
            try:
                if self.ddl_conn is None:
                    self.ddl_conn = await self.connect()
                async with self.ddl_conn.cursor() as cur:
                    await cur.execute(stmt[0], stmt[1] or None)
                    rows = list(await cur.fetchall())
                self.s.retrying = ""
                return rows
            except Exception as exc:  # transient: retry; else pause the subtask
                code = _errno(exc)
                transient = code is None or code in _TRANSIENT
                # A statement's own error leaves the session (and its named lock) usable.
                if transient and self.ddl_conn is not None:
                    self.ddl_conn.close()
                    self.ddl_conn = None
                if not transient:
                    raise SYNC_EXEC(_short(exc)) from None
                await self._wait_to_retry(retry, exc)

    async def _wait_to_retry(self, retry: RetryClock, exc: BaseException) -> None:
        """Before retrying a transient error: at once the first time (a stale idle
        connection is normal), then with backoff, shown in status meanwhile; past the
        retry bound the error pauses the subtask."""
        first = retry.tries == 0
        delay = retry.next_delay()
        if delay is None:
            log.warning("sync %s/%s: giving up after %.0f s of retries: %s", self.s.spec.task,
                        self.s.spec.source, retry.timeout, _short(exc))
            raise SYNC_EXEC(_short(exc), retryable=False) from None
        if not first:
            self.s.retrying = str(SYNC_EXEC(_short(exc)))
            await asyncio.sleep(delay)


def _errno(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return int(args[0])
    if isinstance(exc, DMError):
        return upstream.dm_errno(exc)
    if isinstance(exc, (ConnectionError, OSError, asyncio.IncompleteReadError)):
        return 2013
    return None


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 500 else text[:500] + "…"


def _first_sql(statements: list[str]) -> str:
    return statements[0][:300] if statements else ""


async def _run_transaction(conn: asyncmy.Connection, statements: list[str]) -> None:
    """BEGIN, the statements and COMMIT in one round trip (a multi-statement query): a
    round trip per statement was a third of the sync's time (bench/incr.py --profile).
    An error carries the failing statement as a note; the caller then drops the
    connection, which rolls the transaction back."""
    full = ["BEGIN", *statements, "COMMIT"]
    done = 0
    async with conn.cursor() as cur:
        try:
            await cur.execute(";\n".join(full))
            done = 1
            while await cur.nextset():
                done += 1
        except Exception as exc:
            exc.add_note(full[min(done, len(full) - 1)])
            raise
