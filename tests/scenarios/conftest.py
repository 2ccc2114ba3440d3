"""The scenario suite's fixtures: the session's servers (tests/conftest.py) and those of
tests/support/fixtures_scenarios.py, imported here by name (`pytest_plugins` is only
allowed in the root conftest once collection has started).

DMRAY_RACE_ROUNDS=N (bench/race_hunt.py --rounds) runs every `race` scenario N times in
one session, round by round (`[round1]`, `[round2]`, ...), so a hunt does not pay for
starting the servers and Ray on every round."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from testbed.mariadb import MariaDBServer
from tests.scenarios.helpers import Scn
from tests.support.api import drop_tagged
from tests.support.fixtures_ray import DMServer
from tests.support.fixtures_scenarios import extra_sources, spare_workers

__all__ = ["extra_sources", "spare_workers"]

ENV_ROUNDS = "DMRAY_RACE_ROUNDS"


def _rounds() -> int:
    return max(1, int(os.environ.get(ENV_ROUNDS, "1") or 1))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if _rounds() > 1 and metafunc.definition.get_closest_marker("race"):
        metafunc.fixturenames.append("race_round")
        metafunc.parametrize("race_round", range(1, _rounds() + 1),
                             ids=lambda r: f"round{r}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Round by round: every scenario of round 1, then of round 2, ..."""
    if _rounds() > 1:
        order = {id(item): i for i, item in enumerate(items)}
        items.sort(key=lambda item: (getattr(getattr(item, "callspec", None), "params",
                                             {}).get("race_round", 0), order[id(item)]))


@pytest.fixture
def scn(dm_server: DMServer, source1: MariaDBServer, source2: MariaDBServer,
        target: MariaDBServer) -> Iterator[Scn]:
    with dm_server.client() as api:
        s = Scn(uuid.uuid4().hex[:6], dm_server, api, source1, source2, target)
        yield s
        drop_tagged(api, s.tag, source1, source2, target, *s.cleanup)
