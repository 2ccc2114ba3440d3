"""/cluster endpoints against the session's real Ray and server."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import ray

from actors.config import NAMESPACE
from tests.support.api import assert_dm_error
from tests.support.fixtures_ray import DMServer


def test_docs_and_openapi_document(api: httpx.Client) -> None:
    doc = api.get("/dm.json")
    assert doc.status_code == 200
    spec = doc.json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for p in ("/api/v1/sources", "/api/v1/sources/{source_name}",
              "/api/v1/sources/{source_name}/transfer", "/api/v1/cluster/workers",
              "/api/v1/cluster/masters/{master_name}", "/api/v1/cluster/info"):
        assert p in paths, p
    schemas = spec["components"]["schemas"]
    assert {"source_name", "host", "port", "user", "password", "enable_gtid", "enable",
            "security", "purge", "relay_config"} <= set(schemas["Source"]["properties"])
    docs = api.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_cluster_info_roundtrip(api: httpx.Client) -> None:
    info = api.get("/cluster/info").json()
    assert isinstance(info["cluster_id"], int) and info["cluster_id"] > 0
    topo = {"master_topology_list": [{"name": "master1", "host": "10.0.0.1", "port": 8261}],
            "worker_topology_list": [{"name": "worker1", "host": "10.0.0.2", "port": 8262}],
            "grafana_topology": {"host": "10.0.0.3", "port": 3000}}
    r = api.put("/cluster/info", json=topo)
    assert r.status_code == 200, r.text
    again = api.get("/cluster/info").json()
    assert again["cluster_id"] == info["cluster_id"]
    assert again["topology"] == topo
    bad = api.put("/cluster/info", json={"master_topology_list": [{"name": "m", "port": "x"}]})
    assert_dm_error(bad, 49001)
    assert api.get("/cluster/info").json()["topology"] == topo  # nothing lost


def test_masters(api: httpx.Client) -> None:
    r = api.get("/cluster/masters")
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == len(body["data"]) >= 1
    leaders = [m for m in body["data"] if m["leader"]]
    assert len(leaders) == 1
    m = leaders[0]
    assert m["name"].startswith("master") and m["alive"] is True and ":" in m["addr"]
    assert_dm_error(api.delete("/cluster/masters/no-such-master"), 46023, "not exists")


def test_workers_and_offline_rules(api: httpx.Client) -> None:
    body = api.get("/cluster/workers").json()
    names = [w["name"] for w in body["data"]]
    assert {"worker1", "worker2"} <= set(names)
    for w in body["data"]:
        assert w["bound_stage"] in {"offline", "free", "bound", "relay"}
        assert set(w) == {"name", "addr", "bound_stage", "bound_source_name"}
    online = next(w for w in body["data"] if w["bound_stage"] != "offline")
    assert_dm_error(api.delete(f"/cluster/workers/{online['name']}"), 46005, online["name"])
    assert_dm_error(api.delete("/cluster/workers/worker999"), 46004, "worker999")


def test_offline_worker_can_be_deleted(api: httpx.Client, dm_server: DMServer) -> None:
    from actors.bootstrap import start_local_workers
    from actors.remote import worker_actor_name

    names = start_local_workers(dm_server.coordinator, dm_server.cfg, count=3)
    extra = names[2]
    assert names[:2] == ["worker1", "worker2"] and extra not in names[:2]

    def stage() -> str | None:
        for w in api.get("/cluster/workers").json()["data"]:
            if w["name"] == extra:
                return str(w["bound_stage"])
        return None

    wait_until(lambda: stage() == "free")
    assert_dm_error(api.delete(f"/cluster/workers/{extra}"), 46005, extra)
    ray.kill(ray.get_actor(worker_actor_name(extra), namespace=NAMESPACE), no_restart=True)
    wait_until(lambda: stage() == "offline", timeout=dm_server.cfg.heartbeat_timeout + 10)
    r = api.delete(f"/cluster/workers/{extra}")
    assert r.status_code == 204 and r.content == b""
    assert stage() is None
    assert_dm_error(api.delete(f"/cluster/workers/{extra}"), 46004, extra)


def wait_until(fn: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return
        time.sleep(0.2)
    raise AssertionError(f"condition not met in {timeout} s")


def test_delete_master(api: httpx.Client, dm_server: DMServer) -> None:
    # An API node that is gone (its node key is not among Ray's alive nodes).
    name = ray.get(dm_server.coordinator.register_master.remote("10.255.0.9", "10.255.0.9:8261"))
    masters = {m["name"]: m for m in api.get("/cluster/masters").json()["data"]}
    assert masters[name] == {"name": name, "alive": False, "leader": False,
                             "addr": "10.255.0.9:8261"}
    r = api.delete(f"/cluster/masters/{name}")
    assert r.status_code == 204 and r.content == b""
    assert name not in {m["name"] for m in api.get("/cluster/masters").json()["data"]}
    assert_dm_error(api.delete(f"/cluster/masters/{name}"), 46023, name)
    # The leader is still listed.
    assert any(m["leader"] for m in api.get("/cluster/masters").json()["data"])
