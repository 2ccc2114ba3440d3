"""The relay unit of a worker: pulls its source's binlog into local relay files
(mysqlkit.relay.writer.RelayWriter) in a thread of the worker actor, which is pinned to its node,
so the subtasks placed on that node read the files locally (binlog_type "local").

It keeps the writer running (reconnecting with backoff), purges old files by the source's
purge config (interval, expires, remain_space) but never a file a subtask still needs,
and reports its status with every heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from errors import BINLOG_PURGED, DMError
from mysqlkit.position import BinlogPosition, master_position
from mysqlkit.relay.files import purge_relay, read_meta, relay_files
from mysqlkit.relay.writer import RelayWriter

log = logging.getLogger("dmray.relay")

BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
MASTER_EVERY_S = 2.0


def relay_server_id(source: str, worker: str) -> int:
    """Our server_id as a replica for the relay (distinct from the subtasks' ids)."""
    return 0x20000000 + zlib.crc32(f"relay\x00{source}\x00{worker}".encode()) % 0x1FFFFFFF


class RelayUnit:
    """One source's relay on this worker. `spec` (from the coordinator): source, relay_dir,
    binlog_name/binlog_pos/gtid (where to start when the directory is empty), flavor,
    conn (ConnConfig), purge (interval, expires, remain_space)."""

    def __init__(self, worker: str, spec: dict[str, Any]) -> None:
        self.worker = worker
        self.spec = spec
        self.source: str = spec["source"]
        self.relay_dir = Path(spec["relay_dir"])
        self.stage = "Running"
        self.error = ""
        self.master = BinlogPosition("", 0, "")
        self._master_at = 0.0
        self._stop = threading.Event()
        self._writer: RelayWriter | None = None
        self._thread = threading.Thread(target=self._main, daemon=True,
                                        name=f"relay-{self.source}")
        self._purge_thread = threading.Thread(target=self._purge_loop, daemon=True,
                                              name=f"relay-purge-{self.source}")

    def start(self) -> RelayUnit:
        self.relay_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        self._purge_thread.start()
        return self

    def same(self, spec: dict[str, Any]) -> bool:
        return bool(spec["source"] == self.source and spec["relay_dir"] == str(self.relay_dir))

    def close(self) -> None:
        self._stop.set()
        w = self._writer
        if w is not None:
            w.close()

    # --- writing ------------------------------------------------------------------------
    def _main(self) -> None:
        spec = self.spec
        start: BinlogPosition | str = BinlogPosition(spec.get("binlog_name", ""),
                                                     int(spec.get("binlog_pos") or 4),
                                                     spec.get("gtid", ""))
        if not spec.get("binlog_name") and spec.get("gtid"):
            start = str(spec["gtid"])
        attempt = 0
        while not self._stop.is_set():
            writer = RelayWriter(spec["conn"], relay_server_id(self.source, self.worker),
                                 self.relay_dir, start, spec["flavor"])
            self._writer = writer
            if self._stop.is_set():
                return
            try:
                writer.run()
                attempt = 0
            except DMError as err:
                if self._stop.is_set():
                    return
                self.error = str(err)
                if err.error_code is BINLOG_PURGED:
                    self.stage = "Paused"  # terminal until the relay is enabled again
                    log.error("relay %s on %s: %s", self.source, self.worker, err.message)
                    return
                log.warning("relay %s on %s: %s; retrying", self.source, self.worker,
                            err.message)
                self._stop.wait(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
                attempt += 1

    # --- purging ------------------------------------------------------------------------
    def _purge_loop(self) -> None:
        purge = self.spec.get("purge") or {}
        interval = max(1.0, float(purge.get("interval") or 3600))
        while not self._stop.wait(interval):
            with contextlib.suppress(Exception):  # next round tries again
                self.purge_by_config(self.spec.get("protected_fn"))

    def purge_by_config(self, protected: Any = None) -> list[str]:
        """expires (hours): files older than that; remain_space (GB): the oldest files
        while the disk has less free space. Never the file being written, nor a file at
        or after `protected` (a file name, or a callable giving it)."""
        purge = self.spec.get("purge") or {}
        files = relay_files(self.relay_dir)
        expires_h = float(purge.get("expires") or 0)
        remain_gb = float(purge.get("remain_space") or 0)
        now = time.time()
        n = 0
        for name in files[:-1]:
            old = expires_h > 0 and now - (self.relay_dir / name).stat().st_mtime > \
                expires_h * 3600
            low = remain_gb > 0 and shutil.disk_usage(self.relay_dir).free < remain_gb * 2**30
            if not (old or low):
                break
            n += 1
        if n == 0:
            return []
        prot = protected() if callable(protected) else protected
        before = min(files[n], prot) if prot else files[n]
        return purge_relay(self.relay_dir, before, prot) if before > files[0] else []

    def purge_before(self, before: str, protected: BinlogPosition | str | None) -> list[str]:
        return purge_relay(self.relay_dir, before, protected)

    # --- status -------------------------------------------------------------------------
    def refresh_master(self) -> None:
        """The source's position, for relay_catch_up_master (at most every 2 s)."""
        now = time.monotonic()
        if now - self._master_at < MASTER_EVERY_S:
            return
        self._master_at = now
        with contextlib.suppress(Exception):
            self.master = asyncio.run(master_position(self.spec["conn"]))

    def status(self) -> dict[str, Any]:
        self.refresh_master()
        w = self._writer
        name, pos, gtid = w.status() if w is not None else ("", 0, "")
        if not name:
            meta = read_meta(self.relay_dir) if self.relay_dir.exists() else None
            if meta is not None:
                name, pos, gtid = meta.binlog_name, meta.binlog_pos, meta.binlog_gtid
        m = self.master
        # GTID sets when both sides have them: the relay's position is kept at transaction
        # boundaries and may stop before trailing non-transaction events (MariaDB's binlog
        # checkpoint events) that the source's position already counts.
        caught_up = bool(name) and ((bool(gtid) and gtid == m.gtid) or
                                    (name, pos) >= (m.binlog_name, m.binlog_pos))
        return {"source": self.source, "worker_name": self.worker,
                "relay_status": {
                    "master_binlog": f"({m.binlog_name}, {m.binlog_pos})" if m.binlog_name
                    else "",
                    "master_binlog_gtid": m.gtid, "relay_dir": str(self.relay_dir),
                    "relay_binlog_gtid": gtid, "relay_catch_up_master": caught_up,
                    "stage": self.stage},
                "relay_binlog": [name, pos], "error_msg": self.error if
                self.stage != "Running" else ""}
