"""Chunk workers: processes that read chunks inside the subtask's consistent snapshot and
load them into the target, each chunk in one transaction with its checkpoint row: by LOAD
DATA LOCAL INFILE from memory where the target allows it, else as INSERT statements."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import ray

from actors.chaos import with_jitter
from mysqlkit import upstream
from mysqlkit.full.chunks import Chunk
from mysqlkit.full.dump import chunk_lines, dump_chunk, open_snapshot_reader
from mysqlkit.full.dumpfiles import iter_statements, statement_rows, write_chunk_file
from mysqlkit.full.load import (
    Lines,
    connect_for_load,
    load_data,
    load_statements,
    local_infile_allowed,
)
from mysqlkit.meta import chunk_done_sql, loader_checkpoint_table
from mysqlkit.routing import TableRef
from mysqlkit.schema.tableinfo import TableInfo


@ray.remote(num_cpus=0, max_restarts=0)
@with_jitter  # test-only delays (DMRAY_CHAOS_JITTER_MS); the class itself when unset
class ChunkWorker:
    """Owned by its task actor (it dies with it). Not restarted: its snapshot cannot be
    reopened, so the runner starts new workers on a new snapshot instead."""

    def __init__(self, source: upstream.ConnConfig, target: upstream.ConnConfig, task: str,
                 source_name: str, meta: str, on_duplicate: str, writers: int):
        self.source = source
        self.target = target
        self.source_name = source_name
        self.on_duplicate = on_duplicate
        self.ckpt = loader_checkpoint_table(meta, task)
        self.readers: asyncio.Queue[Any] = asyncio.Queue()
        self.writers_n = writers
        self._infile: asyncio.Task[bool] | None = None  # does the target take LOAD DATA?
        self._idle: list[Any] = []  # target connections for LOAD DATA, kept between chunks

    async def open_readers(self, n: int) -> int:
        """Open n snapshot connections; the caller holds the snapshot lock meanwhile."""
        conns = await asyncio.gather(*(open_snapshot_reader(self.source) for _ in range(n)))
        for c in conns:
            self.readers.put_nowait(c)
        return n

    async def run_chunk(self, c: dict[str, Any], info: TableInfo) -> dict[str, int]:
        chunk = Chunk(schema=c["schema"], table=c["table"], index=int(c["index"]),
                      where=c["where"], est_rows=int(c.get("est_rows", 0)))
        target = TableRef(c["target_schema"], c["target_table"])
        if self._infile is None:
            self._infile = asyncio.ensure_future(self._target_allows_infile())
        try:
            infile = await self._infile
        except BaseException:
            self._infile = None  # ask again on the next chunk
            raise
        if infile:
            return await self._stream_chunk(c, chunk, info, target)
        reader = await self.readers.get()
        try:
            statements = [s async for s in dump_chunk(reader, info, chunk, target)]
        finally:
            self.readers.put_nowait(reader)
        nbytes = sum(len(s) for s in statements)
        async with upstream.open_conn(self.target) as conn:
            rows = await load_statements(conn, statements, self.on_duplicate,
                                         self._checkpoint(c, nbytes))
        return {"rows": rows, "bytes": nbytes}

    async def _stream_chunk(self, c: dict[str, Any], chunk: Chunk, info: TableInfo,
                            target: TableRef) -> dict[str, int]:
        """Rows stream from the snapshot reader straight into LOAD DATA LOCAL on the
        target: the source formats while the target loads (a lane holds its reader for
        the whole chunk, which costs nothing: there are as many readers as lanes)."""
        conn = self._idle.pop() if self._idle else await connect_for_load(self.target)
        reader = await self.readers.get()
        blocks = chunk_lines(reader, info, chunk)
        try:
            lines = Lines(blocks)
            with upstream.driver_errors(self.target):
                rows = await load_data(conn, lines, info, (target.schema, target.table),
                                       self.on_duplicate,
                                       lambda done: self._checkpoint(c, done.size))
        except BaseException:
            conn.close()
            raise
        finally:
            try:
                # A load that failed midway (the runner may run the chunk again) left rows
                # unread: closing the stream now reads them off, before the reader serves
                # another chunk, not whenever the garbage collector closes it.
                await blocks.aclose()
            finally:
                self.readers.put_nowait(reader)
        self._idle.append(conn)
        return {"rows": rows, "bytes": lines.size}

    async def _target_allows_infile(self) -> bool:
        conn = await connect_for_load(self.target)
        try:
            with upstream.driver_errors(self.target):
                allowed = await local_infile_allowed(conn)
        except BaseException:
            conn.close()
            raise
        self._idle.append(conn)
        return allowed

    async def dump_chunk_to_file(self, c: dict[str, Any], info: TableInfo,
                                 data_dir: str) -> dict[str, int]:
        """`dump` mode: the chunk as a Dumpling/mydumper data file, written atomically
        (its existence is the checkpoint)."""
        reader = await self.readers.get()
        try:
            chunk = Chunk(schema=c["schema"], table=c["table"], index=int(c["index"]),
                          where=c["where"], est_rows=int(c.get("est_rows", 0)))
            # Files name the source table, as mydumper's do; `load` routes them.
            statements = [s async for s in dump_chunk(reader, info, chunk,
                                                      TableRef(c["schema"], c["table"]))]
        finally:
            self.readers.put_nowait(reader)
        _path, nbytes = await write_chunk_file(data_dir, c["schema"], c["table"],
                                               int(c["index"]), statements)
        return {"rows": sum(statement_rows(s) for s in statements), "bytes": nbytes}

    async def load_file(self, c: dict[str, Any]) -> dict[str, int]:
        """`load` mode: one data file (ours or mydumper's) in one transaction with its
        checkpoint row."""
        path = c["path"]
        statements = await asyncio.to_thread(lambda: list(iter_statements(path)))
        nbytes = sum(len(s) for s in statements)
        async with upstream.open_conn(self.target) as conn:
            rows = await load_statements(conn, statements, self.on_duplicate,
                                         self._checkpoint(c, nbytes),
                                         target=(c["target_schema"], c["target_table"]))
        return {"rows": rows, "bytes": nbytes}

    def _checkpoint(self, c: dict[str, Any], nbytes: int) -> tuple[str, tuple[Any, ...]]:
        return chunk_done_sql(self.ckpt, self.source_name,
                              (c["schema"], c["table"], int(c["index"])), 0, nbytes)

    def pid(self) -> int:
        return os.getpid()

