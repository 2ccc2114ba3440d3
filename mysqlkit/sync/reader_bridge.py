"""The bridge from the binlog reader (synchronous, in its own thread) to the syncer's event
loop: changes are handed over in batches of up to READ_CHUNK through a small bounded
queue (backpressure on the reader when the target is slower).

Two hand-overs are special. A `QueryChange` (DDL) ends a batch and the reader waits until
the loop has applied it to the schema tracker (`ddl_applied()`), because the reader
decodes the next row events with the tracker's unsigned flags. And when the reader has
used up what the source sent and waits for more, the batch ends with `CAUGHT_UP`, so the
loop dispatches partial lane batches now instead of once READ_CHUNK changes gathered
(bench/lag.py: ~1 s of lag without; only then, or catch-up throughput halves with small
target transactions).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from mysqlkit.binlog.reader import BinlogReader, Heartbeat, QueryChange

__all__ = ["CAUGHT_UP", "READ_CHUNK", "ReaderBridge"]

READ_CHUNK = 512  # events per hand-over from the reader thread
CAUGHT_UP = object()  # in a hand-over: the reader has nothing more from the source yet


class ReaderBridge:
    """Runs `reader` in a thread; `await get()` gives the next batch of changes (None at
    the end; the reader's error is raised). Call `ddl_applied()` after each QueryChange
    and `close()` at the end."""

    def __init__(self, reader: BinlogReader, name: str) -> None:
        self._reader = reader
        self._loop = asyncio.get_running_loop()
        self._inbox: asyncio.Queue[list[Any] | BaseException | None] = asyncio.Queue(maxsize=8)
        self._stop = threading.Event()
        self._ddl_done = threading.Event()
        self._batch: list[Any] = []
        self._fresh = False  # events were handed over since the reader last waited
        reader.on_idle = self._reader_idle
        self._thread = threading.Thread(target=self._pump, name=name, daemon=True)
        self._thread.start()

    async def get(self) -> list[Any] | None:
        item = await self._inbox.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def ddl_applied(self) -> None:
        self._ddl_done.set()

    async def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                self._inbox.get_nowait()
        await asyncio.to_thread(self._thread.join, 5.0)

    # --- the reader's thread ---------------------------------------------------------------

    def _hand_over(self) -> None:
        if self._batch:
            self._put(self._batch[:])
            self._batch.clear()
            self._fresh = True

    def _reader_idle(self) -> None:
        if self._batch or self._fresh:
            self._batch.append(CAUGHT_UP)
            self._hand_over()
            self._fresh = False

    def _pump(self) -> None:
        reader, stop, batch = self._reader, self._stop, self._batch
        try:
            for ev in reader:
                if stop.is_set():
                    return
                batch.append(ev)
                if isinstance(ev, Heartbeat):
                    self._hand_over()
                    continue
                if isinstance(ev, QueryChange):
                    # Let the loop apply this DDL to the tracker first (see the module doc).
                    self._ddl_done.clear()
                    self._hand_over()
                    while not self._ddl_done.wait(0.5):
                        if stop.is_set():
                            return
                    continue
                if len(batch) >= READ_CHUNK:
                    self._hand_over()
            self._hand_over()
            self._put(None)
        except BaseException as exc:  # handed to the loop, raised there
            self._put(exc)
        finally:
            reader.close()

    def _put(self, item: list[Any] | BaseException | None) -> None:
        fut = asyncio.run_coroutine_threadsafe(self._inbox.put(item), self._loop)
        while not self._stop.is_set():
            try:
                fut.result(timeout=0.5)
                return
            except TimeoutError:
                continue
