"""Pytest fixtures for the private MariaDB servers (load with `pytest_plugins`).

Three servers are started concurrently once per session: two sources and a target, each
with a binlog in ROW/FULL format and a distinct server-id, and stopped at session end.
Tests share them, so each test should work in schemas of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from testbed.mariadb import MariaDBNotInstalled, MariaDBServer, start_servers

SOURCE1_SERVER_ID = 101
SOURCE2_SERVER_ID = 102
TARGET_SERVER_ID = 201


@dataclass(frozen=True)
class MariaDBServers:
    source1: MariaDBServer
    source2: MariaDBServer
    target: MariaDBServer
    startup_seconds: float

    def all(self) -> tuple[MariaDBServer, MariaDBServer, MariaDBServer]:
        return (self.source1, self.source2, self.target)


@pytest.fixture(scope="session")
def mariadb_servers() -> Iterator[MariaDBServers]:
    t0 = time.monotonic()
    try:
        s1, s2, tgt = start_servers(
            [SOURCE1_SERVER_ID, SOURCE2_SERVER_ID, TARGET_SERVER_ID],
            names=["source1", "source2", "target"],
        )
    except MariaDBNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    servers = MariaDBServers(s1, s2, tgt, time.monotonic() - t0)
    try:
        yield servers
    finally:
        for s in servers.all():
            s.stop()


@pytest.fixture(scope="session")
def source1(mariadb_servers: MariaDBServers) -> MariaDBServer:
    return mariadb_servers.source1


@pytest.fixture(scope="session")
def source2(mariadb_servers: MariaDBServers) -> MariaDBServer:
    return mariadb_servers.source2


@pytest.fixture(scope="session")
def target(mariadb_servers: MariaDBServers) -> MariaDBServer:
    return mariadb_servers.target
