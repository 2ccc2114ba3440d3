"""Session-wide fixtures: private MariaDB servers (testbed) and one real Ray.

Tests live in folders by what they need, and are marked by it (`-m unit`, `-m "not ray"`):
- `unit/`: nothing but Python (no server, no Ray); marker `unit`;
- `mariadb/`: the private MariaDB servers, no Ray; marker `mariadb`;
- `cluster/`: Ray behaviour (actors restarted, nodes, server processes); `cluster`;
- `api/`: the DM v1 HTTP API on the session's server; `api`;
- `scenarios/`: multi-source scenarios, some of them `race` (bench/race_hunt.py).
Besides, every test using the session's Ray is marked `ray` and every test using the
private servers `mariadb`. A unit test that asks for either fails at collection.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# The servers tests start keep their secret keys outside their data dirs, under the
# config home (storage/secrets.py): one of the session's own, not the user's.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="dmray-test-config-")

pytest_plugins = ["tests.support.fixtures_mariadb", "tests.support.fixtures_ray"]

_HERE = Path(__file__).parent
_FOLDER_MARKS = {"unit": "unit", "mariadb": "mariadb", "cluster": "cluster", "api": "api",
                 "scenarios": "scenarios"}
_RAY_FIXTURES = frozenset({"ray_session", "dm_server", "api"})
_DB_FIXTURES = frozenset({"mariadb_servers", "source1", "source2", "target"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.fspath)).relative_to(_HERE).parts[0]
        mark = _FOLDER_MARKS.get(folder)
        if mark:
            item.add_marker(mark)
        names = set(getattr(item, "fixturenames", ()))
        uses_ray, uses_db = bool(names & _RAY_FIXTURES), bool(names & _DB_FIXTURES)
        if folder == "unit" and (uses_ray or uses_db):
            raise pytest.UsageError(f"{item.nodeid}: a unit test uses a server or Ray; "
                                    "move it to the folder of what it needs")
        if uses_ray:
            item.add_marker("ray")
        if uses_db:
            item.add_marker("mariadb")
