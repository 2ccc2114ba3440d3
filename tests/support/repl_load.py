"""A replication scenario for failover tests: a table on a source and the target, rows
written after an incremental task's start position, and a background writer on it.

    sc = ReplScenario(source1, "fo_ab12")
    sc.create(target, "fo_copy")     # the table on both sides, empty
    pos = sc.position()              # SHOW MASTER STATUS: where the task starts
    sc.fill()                        # rows written after that position
    w = sc.writer(); w.start()       # INSERT/UPDATE/DELETE in small transactions
    w.stop()                         # returns the statements done
    sc.pairs(target_schema)          # for tests.support.compare
"""

from __future__ import annotations

import threading
import time
from typing import Any

from testbed.mariadb import MariaDBServer
from tests.support.compare import Pair


class ReplScenario:
    def __init__(self, server: MariaDBServer, schema: str):
        self.server = server
        self.schema = schema

    def position(self) -> tuple[str, int]:
        [row] = self.server.query("SHOW MASTER STATUS")
        return str(row[0]), int(row[1])

    def create(self, target: MariaDBServer, target_schema: str) -> None:
        """The table on the source, and empty on the target (as a prior full migration
        would leave it): the task's start position comes after this."""
        s = self.schema
        ddl = ("CREATE TABLE `{}`.t (id INT PRIMARY KEY, k INT NOT NULL, c VARCHAR(64)) "
               "DEFAULT CHARSET=utf8mb4")
        self.server.execute(f"CREATE DATABASE `{s}`")
        self.server.execute(ddl.format(s))
        target.execute(f"CREATE DATABASE IF NOT EXISTS `{target_schema}`")
        target.execute(ddl.format(target_schema))

    def fill(self, rows: int = 300) -> None:
        self.server.executemany(f"INSERT INTO `{self.schema}`.t VALUES (%s, %s, %s)",
                                [(i, i, f"r{i}-ë") for i in range(1, rows + 1)])

    def pairs(self, target_schema: str) -> list[Pair]:
        return [((self.schema, "t"), (target_schema, "t"))]

    def writer(self, pause: float = 0.01) -> Writer:
        return Writer(self.server, self.schema, pause)

    def drop(self) -> None:
        self.server.execute(f"DROP DATABASE IF EXISTS `{self.schema}`")


class Writer(threading.Thread):
    """Inserts new ids, updates and deletes old ones, one small transaction at a time."""

    def __init__(self, server: MariaDBServer, schema: str, pause: float):
        super().__init__(daemon=True, name=f"writer-{schema}")
        self.server, self.schema, self.pause = server, schema, pause
        self.done = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        s, i = self.schema, 100_000
        try:
            with self.server.connect() as conn, conn.cursor() as cur:
                while not self._halt.is_set():
                    cur.execute("BEGIN")
                    cur.execute(f"INSERT INTO `{s}`.t VALUES ({i}, 1, 'live')")
                    cur.execute(f"UPDATE `{s}`.t SET k = k + 1, c = 'u{i}' "
                                f"WHERE id = {1 + i % 300}")
                    cur.execute(f"DELETE FROM `{s}`.t WHERE id = {i - 50}")
                    cur.execute("COMMIT")
                    i += 1
                    self.done += 1
                    time.sleep(self.pause)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def stop(self) -> int:
        self._halt.set()
        self.join(30)
        if self.error is not None:
            raise AssertionError(f"writer failed: {self.error!r}")
        return self.done


def status_of(api: Any, task: str) -> list[dict[str, Any]]:
    r = api.get(f"/tasks/{task}/status")
    assert r.status_code == 200, r.text
    return list(r.json()["data"])
