"""The scenario suite's fixtures: the session's servers (tests/conftest.py) and those of
tests/support/fixtures_scenarios.py, imported here by name (`pytest_plugins` is only
allowed in the root conftest once collection has started)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.scenarios.helpers import Scn
from tests.support.api import drop_tagged
from tests.support.fixtures_ray import DMServer
from tests.support.fixtures_scenarios import extra_sources, spare_workers
from tests.support.mariadb import MariaDBServer

__all__ = ["extra_sources", "spare_workers"]


@pytest.fixture
def scn(dm_server: DMServer, source1: MariaDBServer, source2: MariaDBServer,
        target: MariaDBServer) -> Iterator[Scn]:
    with dm_server.client() as api:
        s = Scn(uuid.uuid4().hex[:6], dm_server, api, source1, source2, target)
        yield s
        drop_tagged(api, s.tag, source1, source2, target, *s.cleanup)
