"""Placement of a source's subtasks while two tasks replicate it and writes go on: the
source is transferred to another worker (/sources/{s}/transfer), then that worker is
lost (its actor killed for good) and the source fails over to a free worker. Both tasks
go on there and the target stays equal to the sources row by row."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import ray

from actors.config import NAMESPACE
from actors.remote import worker_actor_name
from tests.scenarios.helpers import (
    RowWriter,
    Scn,
    by_source,
    caught_up,
    conf,
    copies_of,
    copy_structure,
    create_task,
    in_sync,
    insert_rows,
    make_tables,
    master_pos,
    no_error_pause,
    rule,
    start_task,
    status,
    task_body,
    wait_for,
    wait_writes,
    writing,
)
from tests.support.api import q

pytestmark = [pytest.mark.race, pytest.mark.timeout(240)]

FAILOVER_LIMIT_S = 10.0  # README: a lost worker's source is bound to a free one within 10 s


def bound_worker(scn: Scn, source: str) -> str:
    r = scn.api.get(f"/sources/{q(source)}/status")
    assert r.status_code == 200, r.text
    return str(r.json()["data"][0].get("worker_name") or "")


def worker_stage(scn: Scn, worker: str) -> str:
    for w in scn.api.get("/cluster/workers").json()["data"]:
        if w["name"] == worker:
            return str(w["bound_stage"])
    return "absent"


def test_transfer_then_failover_mid_task(scn: Scn,
                                         spare_workers: Callable[[int], list[str]]) -> None:
    wa, wb = spare_workers(2)
    s1, _ = scn.sources(workers=[wa])  # s1 on a spare worker (it is killed below)
    api, tgt = scn.api, scn.target
    assert bound_worker(scn, s1.name) == wa
    schema, inc_schema = scn.db("plc"), scn.db("plci")
    tschemas = {n: scn.db(f"plcc{i}") for i, n in enumerate(scn.servers, 1)}
    itschemas = {n: scn.db(f"plcic{i}") for i, n in enumerate(scn.servers, 1)}
    confs = {}
    for n, server in scn.servers.items():
        make_tables(server, schema, ("t",), rows=100)
        make_tables(server, inc_schema, ("t",))
        copy_structure(server, inc_schema, ("t",), tgt, itschemas[n])
        confs[n] = conf(n, master_pos(server))
        insert_rows(server, inc_schema, "t", range(1, 51))
    alls, inc = scn.name("plc"), scn.name("plci")
    srcs = list(scn.servers)
    create_task(api, task_body(alls, tgt, "all", [rule(n, schema, tschemas[n]) for n in srcs],
                               [conf(n) for n in srcs], scn.meta))
    create_task(api, task_body(inc, tgt, "incremental",
                               [rule(n, inc_schema, itschemas[n]) for n in srcs],
                               [confs[n] for n in srcs], scn.meta))
    writers = [RowWriter(server, [(schema, "t"), (inc_schema, "t")])
               for server in scn.servers.values()]
    copies = copies_of(scn, schema, tschemas) + copies_of(scn, inc_schema, itschemas)
    tasks = [alls, inc]
    lost = ""
    try:
        with writing(*writers):
            for t in tasks:
                start_task(api, t)
            wait_for("both tasks in Sync", in_sync(api, *tasks),
                     guard=lambda: no_error_pause(api, tasks))
            wait_writes(writers, 10)
            # Transfer: by the time it answers, s1's subtasks run on wb.
            r = api.post(f"/sources/{q(s1.name)}/transfer", json={"worker_name": wb})
            assert r.status_code == 200, r.text
            assert bound_worker(scn, s1.name) == wb
            for t in tasks:
                st = by_source(status(api, t))[s1.name]
                assert (st["stage"], st["unit"], st["worker_name"]) == ("Running", "Sync", wb), st
            assert worker_stage(scn, wa) == "free"
            wait_writes(writers, 15)
            # Failover: wb is lost for good; s1 moves to a free worker within the limit.
            lost = wb
            ray.kill(ray.get_actor(worker_actor_name(wb), namespace=NAMESPACE),
                     no_restart=True)
            t0 = time.monotonic()
            wait_for(f"{s1.name} bound to another worker",
                     lambda: None if bound_worker(scn, s1.name) not in ("", wb)
                     else f"bound to {bound_worker(scn, s1.name)!r}",
                     timeout=FAILOVER_LIMIT_S + 5)
            took = time.monotonic() - t0
            new = bound_worker(scn, s1.name)
            assert took <= FAILOVER_LIMIT_S, f"failover took {took:.1f} s"
            wait_for("subtasks run on the new worker",
                     lambda: None if all(by_source(status(api, t))[s1.name]["worker_name"] == new
                                         for t in tasks) else "not yet",
                     guard=lambda: no_error_pause(api, tasks))
            wait_writes(writers, 15)
        wait_for("caught up after transfer and failover", caught_up(api, tgt, tasks, copies),
                 guard=lambda: no_error_pause(api, tasks))
        assert worker_stage(scn, wb) == "offline"
    finally:
        if lost:
            # The killed worker is removed (offline now), so later tests get fresh ones.
            wait_for(f"{lost} offline", lambda: None if worker_stage(scn, lost) in (
                "offline", "absent") else worker_stage(scn, lost), timeout=20)
            r = api.delete(f"/cluster/workers/{q(lost)}")
            assert r.status_code in (204, 400), r.text
