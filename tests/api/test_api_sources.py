"""/sources endpoints against real MariaDB sources, through the real Ray Serve API."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from testbed.mariadb import MariaDBServer
from tests.support.api import assert_dm_error, q, source_body
from tests.support.fixtures_ray import DMServer


@pytest.fixture
def clean(api: httpx.Client) -> Iterator[httpx.Client]:
    """Each test starts and ends with no sources, so workers are free for the next."""

    def wipe() -> None:
        for s in api.get("/sources").json()["data"]:
            r = api.delete(f"/sources/{q(s['source_name'])}", params={"force": True})
            assert r.status_code == 204, r.text

    wipe()
    yield api
    wipe()


def workers(api: httpx.Client) -> dict[str, dict[str, str]]:
    return {w["name"]: w for w in api.get("/cluster/workers").json()["data"]}


def test_create_get_list_delete(clean: httpx.Client, source1: MariaDBServer) -> None:
    api = clean
    r = api.post("/sources", json=source_body(source1, "mysql-01"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["source_name"] == "mysql-01"
    assert created["password"] == "******"
    assert created["flavor"] == "mariadb"
    assert created["enable"] is True and created["enable_gtid"] is False
    assert created["port"] == source1.port and created["host"] == source1.host
    assert created["purge"] == {"interval": 3600, "expires": 0, "remain_space": 15}

    got = api.get("/sources/mysql-01").json()
    assert got["password"] == "******" and got["task_name_list"] == []
    assert "status_list" not in got
    with_status = api.get("/sources/mysql-01", params={"with_status": "true"}).json()
    [st] = with_status["status_list"]
    assert st["source_name"] == "mysql-01" and st["worker_name"].startswith("worker")

    listed = api.get("/sources", params={"with_status": True}).json()
    assert listed["total"] == 1 and listed["data"][0]["source_name"] == "mysql-01"
    assert listed["data"][0]["status_list"][0]["worker_name"] == st["worker_name"]
    assert api.get("/sources", params={"enable_relay": True}).json()["total"] == 0
    assert api.get("/sources", params={"enable_relay": False}).json()["total"] == 1

    assert workers(api)[st["worker_name"]]["bound_stage"] == "bound"
    assert workers(api)[st["worker_name"]]["bound_source_name"] == "mysql-01"

    d = api.delete("/sources/mysql-01")
    assert d.status_code == 204 and d.content == b""
    missing = api.get("/sources/mysql-01")
    assert missing.status_code == 404 and missing.content == b""
    assert_dm_error(api.delete("/sources/mysql-01"), 46008, "mysql-01")
    assert workers(api)[st["worker_name"]]["bound_stage"] == "free"


def test_password_never_leaves(clean: httpx.Client, source1: MariaDBServer,
                               dm_server: DMServer) -> None:
    api = clean
    assert api.post("/sources", json=source_body(source1, "secret-src")).status_code == 201
    for r in (api.get("/sources"), api.get("/sources/secret-src"),
              api.get("/sources", params={"with_status": True})):
        assert source1.password not in r.text
    # Encrypted at rest: the plain password is nowhere in the event log's bytes.
    import glob

    for path in glob.glob(f"{dm_server.data_dir}/events.sqlite3*"):
        with open(path, "rb") as f:
            assert source1.password.encode() not in f.read()


def test_duplicate_and_concurrent_create(clean: httpx.Client, source1: MariaDBServer,
                                         dm_server: DMServer) -> None:
    api = clean
    assert api.post("/sources", json=source_body(source1, "dup")).status_code == 201
    assert_dm_error(api.post("/sources", json=source_body(source1, "dup")), 46007, "dup")

    def create(_: int) -> httpx.Response:
        with dm_server.client() as c:
            return c.post("/sources", json=source_body(source1, "race"))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(create, range(8)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) == 1, [r.text for r in results]
    for r in results:
        if r.status_code != 201:
            assert_dm_error(r, 46007, "race")
    assert [s["source_name"] for s in api.get("/sources").json()["data"]] == ["dup", "race"]


def test_bad_input(clean: httpx.Client, source1: MariaDBServer) -> None:
    api = clean
    good = source_body(source1, "bad-input")["source"]
    cases = [
        {},
        {"source": {k: v for k, v in good.items() if k != "host"}},
        {"source": {k: v for k, v in good.items() if k != "source_name"}},
        {"source": {**good, "port": "3306"}},
        {"source": {**good, "port": 0}},
        {"source": {**good, "enable_gtid": "yes"}},
        {"source": {**good, "user": 5}},
        {"source": "not an object"},
    ]
    for body in cases:
        assert_dm_error(api.post("/sources", json=body), 49001)
    assert_dm_error(api.post("/sources"), 49001)  # no body, no content type
    r = api.post("/sources", content=b"{not json", headers={"content-type": "application/json"})
    assert_dm_error(r, 49001)
    assert api.get("/sources").json()["total"] == 0
    # Unknown extra fields are accepted and ignored, as DM does.
    r = api.post("/sources", json={"source": {**good, "case_sensitive": True}})
    assert r.status_code == 201, r.text
    assert "case_sensitive" not in r.json()


def test_wrong_password_and_unreachable(clean: httpx.Client, source1: MariaDBServer) -> None:
    api = clean
    body = source_body(source1, "wrong-pw", password="not-the-password-123")
    r = api.post("/sources", json=body)
    err = assert_dm_error(r, 10001, "Access denied")
    assert "not-the-password-123" not in err["error_msg"]
    assert api.get("/sources/wrong-pw").status_code == 404

    t0 = time.monotonic()
    r = api.post("/sources", json=source_body(source1, "nowhere", host="127.0.0.1", port=1))
    assert_dm_error(r, 10001)
    assert time.monotonic() - t0 < 15
    assert api.get("/sources").json()["total"] == 0


def test_names_that_need_quoting(clean: httpx.Client, source1: MariaDBServer) -> None:
    api = clean
    name = "src-Ë!s`t 'x\"%"
    r = api.post("/sources", json=source_body(source1, name))
    assert r.status_code == 201, r.text
    assert api.get(f"/sources/{q(name)}").json()["source_name"] == name
    assert api.get(f"/sources/{q(name)}/status").json()["data"][0]["source_name"] == name
    assert api.post(f"/sources/{q(name)}/disable").status_code == 200
    assert api.get(f"/sources/{q(name)}").json()["enable"] is False
    missing = "nö`such"
    assert_dm_error(api.get(f"/sources/{q(missing)}/status"), 46008, missing)
    assert api.delete(f"/sources/{q(name)}").status_code == 204


def test_names_no_route_could_reach_again_are_refused(clean: httpx.Client,
                                                       source1: MariaDBServer) -> None:
    """A name becomes a URL path, an actor name, a directory: refused at create when a
    route (DELETE included) could not reach it again, or it is too long for what is made
    of it; nothing is created."""
    api = clean
    for bad in ("a/b", "../../x", "<script>alert(1)</script>", "a\x00b", "a\nb", "..",
                " lead", "s" * 33, "x" * 100_000):
        r = api.post("/sources", json=source_body(source1, bad))
        assert_dm_error(r, 49001, "source name")
        assert len(r.text) < 2000
    assert api.get("/sources").json()["total"] == 0


def test_relay_paths_that_lead_outside_the_data_dir_are_refused(
        clean: httpx.Client, source1: MariaDBServer) -> None:
    api = clean
    for relay_dir in ("../../etc", "/etc", "relay/../../.."):
        r = api.post("/sources", json=source_body(source1, "esc", relay_config={
            "enable_relay": True, "relay_dir": relay_dir}))
        assert_dm_error(r, 49001, "outside the directories")
    r = api.post("/sources", json=source_body(source1, "esc", relay_config={
        "relay_binlog_name": "../../../../x.000001"}))
    assert_dm_error(r, 49001, "binlog file name")
    assert api.get("/sources").json()["total"] == 0
    assert api.post("/sources", json=source_body(source1, "esc")).status_code == 201
    for body in ({"relay_binlog_name": "../../../../x.000001"}, {"relay_dir": "/etc"},
                 {"relay_dir": "../../etc"}):
        r = api.post("/sources/esc/relay/enable", json=body)
        assert r.status_code == 400, r.text
        assert "binlog file name" in r.text or "outside the directories" in r.text
    assert not os.path.exists("/x.000001")
    assert api.delete("/sources/esc").status_code == 204


def test_update(clean: httpx.Client, source1: MariaDBServer, source2: MariaDBServer) -> None:
    api = clean
    assert api.post("/sources", json=source_body(source1, "upd")).status_code == 201
    # Password absent: the stored one is kept (the upstream is verified with it again).
    body = source_body(source2, "upd")
    del body["source"]["password"]
    r = api.put("/sources/upd", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["port"] == source2.port and r.json()["password"] == "******"
    assert api.get("/sources/upd").json()["port"] == source2.port
    # A wrong password is refused and the stored config stays as it was.
    bad = source_body(source1, "upd", password="wrong-wrong")
    assert_dm_error(api.put("/sources/upd", json=bad), 10001, "Access denied")
    assert api.get("/sources/upd").json()["port"] == source2.port
    assert_dm_error(api.put("/sources/nope", json=source_body(source1, "nope")), 46008, "nope")
    assert_dm_error(api.put("/sources/upd", json=source_body(source1, "other")), 49001)
    assert_dm_error(api.put("/sources/upd", json={"source": {"source_name": "upd"}}), 49001)


def test_enable_disable_status(clean: httpx.Client, source1: MariaDBServer) -> None:
    api = clean
    assert api.post("/sources", json=source_body(source1, "tog")).status_code == 201
    r = api.post("/sources/tog/disable")
    assert r.status_code == 200 and r.content == b""
    assert api.get("/sources/tog").json()["enable"] is False
    assert api.post("/sources/tog/disable").status_code == 200  # idempotent
    assert api.post("/sources/tog/enable").status_code == 200
    assert api.get("/sources/tog").json()["enable"] is True
    assert_dm_error(api.post("/sources/zzz/enable"), 46008, "zzz")
    assert_dm_error(api.post("/sources/zzz/disable"), 46008, "zzz")
    st = api.get("/sources/tog/status").json()
    assert st["total"] == 1 and st["data"][0]["worker_name"].startswith("worker")


def test_binding_transfer_and_unbound(clean: httpx.Client, source1: MariaDBServer,
                                      source2: MariaDBServer) -> None:
    api = clean
    assert api.post("/sources", json={**source_body(source1, "a"),
                                      "worker_name": "worker2"}).status_code == 201
    assert api.get("/sources/a/status").json()["data"][0]["worker_name"] == "worker2"
    # worker2 is busy now: naming it for another source is refused.
    assert_dm_error(api.post("/sources", json={**source_body(source2, "b"),
                                               "worker_name": "worker2"}), 46006, "worker2")
    assert_dm_error(api.post("/sources", json={**source_body(source2, "b"),
                                               "worker_name": "worker77"}), 46004)
    assert api.post("/sources", json=source_body(source2, "b")).status_code == 201
    assert api.get("/sources/b/status").json()["data"][0]["worker_name"] == "worker1"
    # No free worker left: the third source is stored but unbound.
    assert api.post("/sources", json=source_body(source2, "c")).status_code == 201
    assert api.get("/sources/c/status").json() == {"total": 1, "data": [{"source_name": "c"}]}
    # Transfer rules.
    assert_dm_error(api.post("/sources/a/transfer", json={"worker_name": "worker1"}), 46006)
    assert_dm_error(api.post("/sources/a/transfer", json={"worker_name": "nobody"}), 46004)
    assert_dm_error(api.post("/sources/zz/transfer", json={"worker_name": "worker1"}), 46008)
    assert_dm_error(api.post("/sources/a/transfer", json={}), 49001)
    # Deleting b frees worker1, and the unbound c takes it.
    assert api.delete("/sources/b").status_code == 204
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if api.get("/sources/c/status").json()["data"][0].get("worker_name"):
            break
        time.sleep(0.2)
    assert api.get("/sources/c/status").json()["data"][0]["worker_name"] == "worker1"
    # Free worker1 again by deleting c, then transfer a to it.
    assert api.delete("/sources/c").status_code == 204
    r = api.post("/sources/a/transfer", json={"worker_name": "worker1"})
    assert r.status_code == 200 and r.content == b""
    assert api.get("/sources/a/status").json()["data"][0]["worker_name"] == "worker1"
    w = workers(api)
    assert w["worker1"]["bound_stage"] == "bound" and w["worker1"]["bound_source_name"] == "a"
    assert w["worker2"]["bound_stage"] == "free" and w["worker2"]["bound_source_name"] == ""
    # Transfer to where it already is: nothing to do, still 200.
    assert api.post("/sources/a/transfer", json={"worker_name": "worker1"}).status_code == 200


def test_schemas_and_tables(clean: httpx.Client, source1: MariaDBServer) -> None:
    api = clean
    source1.execute("DROP DATABASE IF EXISTS `db-name`; CREATE DATABASE `db-name`; "
                    "CREATE TABLE `db-name`.`t 1` (id INT PRIMARY KEY); "
                    "CREATE TABLE `db-name`.`we``ird` (id INT PRIMARY KEY); "
                    "CREATE VIEW `db-name`.v AS SELECT 1 AS x")
    assert api.post("/sources", json=source_body(source1, "sch")).status_code == 201
    schemas = api.get("/sources/sch/schemas").json()
    assert {"db-name", "mysql", "information_schema"} <= set(schemas)
    tables = api.get(f"/sources/sch/schemas/{q('db-name')}").json()
    assert tables == ["t 1", "we`ird"]
    assert api.get("/sources/sch/schemas/no_such_db").json() == []
    assert_dm_error(api.get("/sources/nosrc/schemas"), 46008, "nosrc")
    assert_dm_error(api.get("/sources/nosrc/schemas/x"), 46008, "nosrc")


def test_update_refused_while_relay_enabled(clean: httpx.Client, source1: MariaDBServer) -> None:
    api = clean
    body = source_body(source1, "relayed", relay_config={"enable_relay": True,
                                                        "relay_dir": "./relay"})
    r = api.post("/sources", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["relay_config"]["enable_relay"] is True
    assert api.get("/sources", params={"enable_relay": True}).json()["total"] == 1
    assert_dm_error(api.put("/sources/relayed", json=body), 46025, "relayed")
