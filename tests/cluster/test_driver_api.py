"""The Python driver API: a separate script joins the cluster and runs the operations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from actors.client import DMClient
from errors import DMError
from testbed.mariadb import MariaDBServer
from tests.support.fixtures_ray import DMServer

ROOT = Path(__file__).resolve().parents[2]


def test_example_driver_script(dm_server: DMServer, source1: MariaDBServer) -> None:
    # As a user runs it: no PYTHONPATH, no RAY_* settings inherited from this process
    # (the script must find the project and turn on Ray's token auth by itself).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAY_") and k != "PYTHONPATH"}
    env.update({"RAY_ADDRESS": ray.get_runtime_context().gcs_address,
                "DMRAY_EXAMPLE_PASSWORD": source1.password})
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "driver.py"), "--host", source1.host,
         "--port", str(source1.port), "--user", source1.user,
         "--source-name", "from-driver"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = {ln.split(":", 1)[0]: ln.split(":", 1)[1] for ln in out.stdout.splitlines()
             if ":" in ln}
    created = json.loads(lines["created"])
    assert created["source_name"] == "from-driver" and created["password"] == "******"
    assert json.loads(lines["status"])[0]["source_name"] == "from-driver"
    assert "mysql" in json.loads(lines["schemas"])
    assert source1.password not in out.stdout + out.stderr
    assert lines["deleted"].strip() == "from-driver"


def test_client_in_process(dm_server: DMServer, source1: MariaDBServer) -> None:
    dm = DMClient(dm_server.coordinator)
    body = {"source_name": "in-proc", "host": source1.host, "port": source1.port,
            "user": source1.user, "password": source1.password}
    try:
        assert dm.create_source(body)["flavor"] == "mariadb"
        with pytest.raises(DMError) as info:
            dm.create_source(body)
        assert info.value.code == 46007
        assert [s["source_name"] for s in dm.list_sources()] == ["in-proc"]
    finally:
        dm.delete_source("in-proc", True)
    with pytest.raises(DMError) as info:
        dm.get_source("in-proc")
    assert info.value.code == 46008
    assert str(info.value).startswith("[code=46008:class=scheduler:scope=internal:level=medium]")
