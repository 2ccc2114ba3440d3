"""DM's everyday operations on running two-source tasks, over the HTTP API: stop and start
of one source's subtask (`source_name_list`) while another task on the same sources goes
on; start with `start_time` and with `safe_mode_time_duration`; binlog filters; the
schema tracker endpoints on a paused subtask; delete with `force` and `keep_meta`, then
create again and resume. The target is compared with the sources row by row."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from testbed.mariadb import MariaDBServer
from tests.scenarios.helpers import (
    RowWriter,
    Scn,
    by_source,
    caught_up,
    conf,
    copies_of,
    create_task,
    diff_all,
    diff_copy,
    in_sync,
    incremental_setup,
    insert_rows,
    make_tables,
    meta_tables,
    no_error_pause,
    replicating,
    rule,
    run_parallel,
    stages_are,
    start_task,
    status,
    stop_task,
    synced,
    task_body,
    wait_for,
    wait_writes,
    writing,
)
from tests.support.api import assert_dm_error, q
from tests.support.compare import diff_rows, fetch_rows, format_diff, primary_key, table_columns

pytestmark = [pytest.mark.race, pytest.mark.timeout(240)]


def test_stop_and_start_one_source_of_a_task(scn: Scn) -> None:
    """stop/start with source_name_list act on that source's subtask only; another task on
    the same sources is not disturbed; the stopped one resumes from its checkpoint. Then
    disable/enable of a source pause/resume its subtasks in both tasks."""
    s1, s2 = scn.sources()
    api, tgt = scn.api, scn.target
    schema, tschemas, confs = incremental_setup(scn, "pss")
    other, otschemas = scn.db("pso"), {}
    for i, (n, server) in enumerate(scn.servers.items(), 1):
        make_tables(server, other, ("t",), rows=50)
        otschemas[n] = scn.db(f"psoc{i}")
    inc, alls = scn.name("pss"), scn.name("pso")
    create_task(api, task_body(inc, tgt, "incremental",
                               [rule(n, schema, tschemas[n]) for n in scn.servers],
                               list(confs.values()), scn.meta))
    create_task(api, task_body(alls, tgt, "all",
                               [rule(n, other, otschemas[n]) for n in scn.servers],
                               [conf(n) for n in scn.servers], scn.meta))
    writers = [RowWriter(server, [(schema, "t"), (other, "t")])
               for server in scn.servers.values()]
    mine = copies_of(scn, schema, tschemas)
    theirs = copies_of(scn, other, otschemas)
    with writing(*writers):
        for t in (inc, alls):
            start_task(api, t)
        wait_for("both tasks in Sync", in_sync(api, inc, alls),
                 guard=lambda: no_error_pause(api, [inc, alls]))
        wait_for("writes replicated", replicating(tgt, [c.tgt for c in mine + theirs]),
                 guard=lambda: no_error_pause(api, [inc, alls]))
        stop_task(api, inc, [s1.name])
        st = by_source(status(api, inc))
        assert st[s1.name]["stage"] == "Paused" and not st[s1.name].get("error_msg"), st
        assert st[s2.name]["stage"] == "Running", st
        [only] = status(api, inc, [s1.name])
        assert only["source_name"] == s1.name and only["stage"] == "Paused", only
        assert only["unit"] == "Sync", only  # a paused incremental subtask is in Sync
        wait_writes(writers, 20)
    # s2's subtask and the other task catch up while s1's subtask stays paused.
    paused = [(inc, s1.name)]
    wait_for("s2 and the other task caught up",
             caught_up(api, tgt, [alls], [mine[1], *theirs]),
             guard=lambda: no_error_pause(api, [inc, alls], allow=paused))
    wait_for("s2's subtask synced", synced(api, inc, [s2.name]),
             guard=lambda: no_error_pause(api, [inc, alls], allow=paused))
    assert status(api, inc, [s1.name])[0]["stage"] == "Paused"
    assert diff_copy(tgt, mine[0]) is not None, "the paused subtask applied writes"
    writers = [w.again() for w in writers]
    with writing(*writers):
        start_task(api, inc, source_name_list=[s1.name])
        assert {d["stage"] for d in status(api, inc)} == {"Running"}, status(api, inc)
        wait_writes(writers, 20)
        # Disabling a source pauses its subtasks in every task (a start is refused
        # meanwhile); enabling resumes them.
        r = api.post(f"/sources/{q(s2.name)}/disable")
        assert r.status_code == 200, r.text
        for t in (inc, alls):
            st = by_source(status(api, t))
            assert st[s2.name]["stage"] == "Paused", (t, st[s2.name])
            assert st[s1.name]["stage"] == "Running", (t, st[s1.name])
        assert_dm_error(api.post(f"/tasks/{q(inc)}/start", json={}), 38058)
        wait_writes(writers, 10)
        r = api.post(f"/sources/{q(s2.name)}/enable")
        assert r.status_code == 200, r.text
        for t in (inc, alls):
            assert {d["stage"] for d in status(api, t)} == {"Running"}, (t, status(api, t))
        wait_writes(writers, 10)
    wait_for("all caught up", caught_up(api, tgt, [inc, alls], mine + theirs),
             guard=lambda: no_error_pause(api, [inc, alls]))


def test_start_time_and_safe_mode_time_duration(scn: Scn) -> None:
    """`start_time` on start wins over the source_conf positions: only what was written
    at or after it replicates. `safe_mode_time_duration` replays rows the target already
    has without a duplicate-key pause."""
    scn.sources()
    api, tgt = scn.api, scn.target
    # start_time: rows 1..30 before the time, 1001..1030 and the writer's after it.
    tschema, ttschemas, tconfs = incremental_setup(scn, "stt", rows=30)
    # safe mode: rows 1..40 after the position, and already on the target.
    sschema, stschemas, sconfs = incremental_setup(scn, "sfm", rows=40)
    for n, server in scn.servers.items():
        rows = server.query(f"SELECT id, k, v FROM `{sschema}`.t")
        tgt.executemany(f"INSERT INTO `{stschemas[n]}`.t (id, k, v) VALUES (%s, %s, %s)",
                        rows)
    start_at = int(time.time()) + 2
    time.sleep(max(0.0, start_at - time.time()) + 0.3)
    start_text = dt.datetime.fromtimestamp(start_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    for server in scn.servers.values():
        insert_rows(server, tschema, "t", range(1001, 1031))
    by_time, safe = scn.name("stt"), scn.name("sfm")
    writers = [RowWriter(server, [(tschema, "t")], id_base=1000, rows=30)
               for server in scn.servers.values()]
    writers += [RowWriter(server, [(sschema, "t")], rows=40) for server in scn.servers.values()]

    def run_by_time(c: httpx.Client) -> None:
        create_task(c, task_body(by_time, tgt, "incremental",
                                 [rule(n, tschema, ttschemas[n]) for n in scn.servers],
                                 list(tconfs.values()), scn.meta))
        start_task(c, by_time, start_time=start_text)
        wait_for(f"{by_time} in Sync", in_sync(c, by_time),
                 guard=lambda: no_error_pause(c, [by_time]))

    def run_safe(c: httpx.Client) -> None:
        create_task(c, task_body(safe, tgt, "incremental",
                                 [rule(n, sschema, stschemas[n]) for n in scn.servers],
                                 list(sconfs.values()), scn.meta))
        start_task(c, safe, safe_mode_time_duration="60s")
        wait_for(f"{safe} in Sync", in_sync(c, safe),
                 guard=lambda: no_error_pause(c, [safe]))

    with writing(*writers):
        wait_writes(writers, 5)
        run_parallel(scn.srv, {"start_time": run_by_time, "safe_mode": run_safe})
        wait_writes(writers, 10)
    wait_for(f"start_time {start_text}: only later rows; safe mode: no duplicate error",
             caught_up(api, tgt, [by_time, safe],
                       copies_of(scn, tschema, ttschemas, where="id > 1000")
                       + copies_of(scn, sschema, stschemas)),
             guard=lambda: no_error_pause(api, [by_time, safe]))


def _rows_with(server: MariaDBServer, schema: str, table: str, target: MariaDBServer,
               tschema: str, kept: list[Any]) -> Callable[[], str | None]:
    """Probe: the target table holds the source rows plus `kept` (rows the source deleted
    and the filter kept on the target)."""
    def probe() -> str | None:
        cols = table_columns(server, schema, table)
        t_cols = table_columns(target, tschema, table)
        if [c.name for c in cols] != [c.name for c in t_cols]:
            return f"{tschema}.{table}: columns differ"
        d = diff_rows([c.name for c in cols], primary_key(server, schema, table),
                      fetch_rows(server, schema, table, cols) + kept,
                      fetch_rows(target, tschema, table, t_cols))
        return None if d.equal else format_diff(((schema, table), (tschema, table)), d)
    return probe


def test_binlog_filters(scn: Scn) -> None:
    """binlog_filter_rule on an `all` task with two sources: `ignore_event: [delete]` keeps
    deleted rows on the target, `ignore_event: [truncate table]` and `ignore_sql` of DROP
    TABLE keep a table and its rows; a table without a rule replicates everything."""
    scn.sources()
    api, tgt = scn.api, scn.target
    schema = scn.db("flt")
    tschemas = {n: scn.db(f"fltc{i}") for i, n in enumerate(scn.servers, 1)}
    for server in scn.servers.values():
        make_tables(server, schema, ("keep", "plain", "junk"), rows=40)
    rules = []
    for n in scn.servers:
        rules += [rule(n, schema, tschemas[n], table="keep", filters=["no-delete"]),
                  rule(n, schema, tschemas[n], table="plain"),
                  rule(n, schema, tschemas[n], table="junk", filters=["no-trunc", "no-drop"])]
    name = scn.name("flt")
    create_task(api, task_body(name, tgt, "all", rules, [conf(n) for n in scn.servers],
                               scn.meta, binlog_filter_rule={
                                   "no-delete": {"ignore_event": ["delete"]},
                                   "no-trunc": {"ignore_event": ["truncate table"]},
                                   "no-drop": {"ignore_sql": ["^DROP\\s+TABLE"]}}))
    writers = [RowWriter(server, [(schema, "plain")], rows=40)
               for server in scn.servers.values()]
    kept: dict[str, list[Any]] = {}
    junk: dict[str, list[Any]] = {}
    with writing(*writers):
        start_task(api, name)
        wait_for(f"{name} in Sync", stages_are(api, name, "Running", "Sync"),
                 guard=lambda: no_error_pause(api, [name]))
        for n, server in scn.servers.items():
            insert_rows(server, schema, "keep", range(100, 120))
            server.execute(f"UPDATE `{schema}`.keep SET v = 'changed' WHERE id <= 10")
            cols = table_columns(server, schema, "keep")
            kept[n] = [r for r in fetch_rows(server, schema, "keep", cols)
                       if int(r[0] or 0) % 2 == 0 and int(r[0] or 0) <= 110]
            server.execute(f"DELETE FROM `{schema}`.keep WHERE id % 2 = 0 AND id <= 110")
            server.execute(f"UPDATE `{schema}`.keep SET k = k + 5 WHERE id BETWEEN 11 AND 15")
            insert_rows(server, schema, "junk", range(500, 505))
            junk[n] = fetch_rows(server, schema, "junk", table_columns(server, schema, "junk"))
            server.execute(f"TRUNCATE TABLE `{schema}`.junk")
        wait_writes(writers, 10)
        # The truncate was skipped; now the DROP TABLE: skipped too, rows stay.
        wait_for("inserts before the truncate applied",
                 lambda: None if all(
                     int(tgt.query(f"SELECT COUNT(*) FROM `{tschemas[n]}`.junk")[0][0])
                     == len(junk[n]) for n in scn.servers) else "junk rows missing",
                 guard=lambda: no_error_pause(api, [name]))
        for server in scn.servers.values():
            server.execute(f"DROP TABLE `{schema}`.junk")
        wait_writes(writers, 10)
    probes = [caught_up(api, tgt, [name], copies_of(scn, schema, tschemas, ("plain",)))]
    probes += [_rows_with(scn.servers[n], schema, "keep", tgt, tschemas[n], kept[n])
               for n in scn.servers]

    def all_probes() -> str | None:
        reports = [r for p in probes if (r := p()) is not None]
        return "\n".join(reports) if reports else None

    wait_for("filters applied", all_probes, guard=lambda: no_error_pause(api, [name]))
    for n in scn.servers:
        jc = table_columns(tgt, tschemas[n], "junk")
        d = diff_rows([c.name for c in jc], ["id"], junk[n],
                      fetch_rows(tgt, tschemas[n], "junk", jc))
        assert d.equal, format_diff(((schema, "junk"), (tschemas[n], "junk")), d)


def test_schema_tracker_on_a_paused_subtask(scn: Scn) -> None:
    """GET/PUT/DELETE of /tasks/{t}/sources/{s}/schemas/... on a paused subtask, while the
    other source's subtask runs on; after the tracker is set right, start resumes and the
    target is equal."""
    s1, s2 = scn.sources()
    api, tgt = scn.api, scn.target
    tables = ("t", "t2")
    schema, tschemas, confs = incremental_setup(scn, "trk", tables)
    name = scn.name("trk")
    create_task(api, task_body(name, tgt, "incremental",
                               [rule(n, schema, tschemas[n]) for n in scn.servers],
                               list(confs.values()), scn.meta))
    base = f"/tasks/{q(name)}/sources/{q(s1.name)}/schemas"
    writers = [RowWriter(server, [(schema, t) for t in tables])
               for server in scn.servers.values()]
    with writing(*writers):
        start_task(api, name)
        wait_for(f"{name} in Sync", in_sync(api, name),
                 guard=lambda: no_error_pause(api, [name]))
        wait_for("writes replicated", replicating(tgt, [
            c.tgt for c in copies_of(scn, schema, tschemas, tables)]),
                 guard=lambda: no_error_pause(api, [name]))
        stop_task(api, name, [s1.name])
        assert by_source(status(api, name))[s1.name]["stage"] == "Paused"
        # GET: schemas, tables, a table's structure.
        r = api.get(base)
        assert r.status_code == 200 and schema in r.json(), r.text
        assert set(tables) <= set(api.get(f"{base}/{schema}").json())
        got = api.get(f"{base}/{schema}/t").json()
        assert got["schema_name"] == schema and got["table_name"] == "t", got
        create = got["schema_create_sql"]
        assert "`k`" in create and "`v`" in create, got
        # PUT sql: the tracker takes the statement; PUT downstream sets it right again.
        wrong = create.replace("`v` varchar(64)", "`v` varchar(64), `extra` int(11)", 1)
        assert wrong != create, create
        r = api.put(f"{base}/{schema}/t", json={"schema_source": "sql", "sql_content": wrong})
        assert r.status_code == 200, r.text
        assert "`extra`" in api.get(f"{base}/{schema}/t").json()["schema_create_sql"]
        assert_dm_error(api.put(f"{base}/{schema}/t", json={"schema_source": "sql",
                                                           "sql_content": "DROP TABLE t"}),
                        44102)
        assert "`extra`" in api.get(f"{base}/{schema}/t").json()["schema_create_sql"]
        r = api.put(f"{base}/{schema}/t", json={"schema_source": "downstream"})
        assert r.status_code == 200, r.text
        fixed = api.get(f"{base}/{schema}/t").json()["schema_create_sql"]
        assert "`extra`" not in fixed and "`k`" in fixed, fixed
        # DELETE: the table leaves the tracker; PUT upstream brings it back.
        r = api.delete(f"{base}/{schema}/t2")
        assert r.status_code in (200, 204), r.text
        assert "t2" not in api.get(f"{base}/{schema}").json()
        assert api.get(f"{base}/{schema}/t2").status_code == 400
        r = api.put(f"{base}/{schema}/t2", json={"schema_source": "upstream"})
        assert r.status_code == 200, r.text
        assert "t2" in api.get(f"{base}/{schema}").json()
        # The running subtask's tracker cannot be changed.
        other = f"/tasks/{q(name)}/sources/{q(s2.name)}/schemas/{schema}/t"
        assert api.put(other, json={"schema_source": "upstream"}).status_code == 400
        wait_writes(writers, 10)
        start_task(api, name, source_name_list=[s1.name])
        wait_writes(writers, 10)
    wait_for("caught up after the tracker was fixed",
             caught_up(api, tgt, [name], copies_of(scn, schema, tschemas, tables)),
             guard=lambda: no_error_pause(api, [name]))


def test_delete_with_force_and_keep_meta_then_create_again(scn: Scn) -> None:
    """A running `all` task deleted with force and keep_meta keeps its checkpoints: created
    again with the same body and started, it resumes in Sync (no second dump, which
    on_duplicate=error would refuse) and catches up. A task deleted with force alone loses
    its checkpoint tables. Without force a running task is not deleted."""
    scn.sources()
    api, tgt = scn.api, scn.target
    schema = scn.db("kpm")
    tschemas = {n: scn.db(f"kpmc{i}") for i, n in enumerate(scn.servers, 1)}
    for server in scn.servers.values():
        make_tables(server, schema, ("t", "u"), rows=100)
    ischema, itschemas, iconfs = incremental_setup(scn, "frc")
    kept, gone = scn.name("kpm"), scn.name("frc")
    kept_body = task_body(kept, tgt, "all", [rule(n, schema, tschemas[n]) for n in scn.servers],
                          [conf(n) for n in scn.servers], scn.meta)
    create_task(api, kept_body)
    create_task(api, task_body(gone, tgt, "incremental",
                               [rule(n, ischema, itschemas[n]) for n in scn.servers],
                               list(iconfs.values()), scn.meta))
    writers = [RowWriter(server, [(schema, "t"), (schema, "u"), (ischema, "t")])
               for server in scn.servers.values()]
    copies = copies_of(scn, schema, tschemas, ("t", "u", "late"))
    with writing(*writers):
        for t in (kept, gone):
            start_task(api, t)
        wait_for("both in Sync", in_sync(api, kept, gone),
                 guard=lambda: no_error_pause(api, [kept, gone]))
        wait_for("writes replicated", replicating(tgt, [
            *(c.tgt for c in copies if c.tgt[1] != "late"),
            *(c.tgt for c in copies_of(scn, ischema, itschemas))]),
                 guard=lambda: no_error_pause(api, [kept, gone]))
        # A table created while the `all` task syncs: the sync creates and fills it.
        for server in scn.servers.values():
            make_tables(server, schema, ("late",), rows=30)
        wait_for("the new table replicated", lambda: diff_all(tgt, [
            c for c in copies if c.tgt[1] == "late"]),
                 guard=lambda: no_error_pause(api, [kept, gone]))
        assert api.delete(f"/tasks/{q(kept)}").status_code == 400  # running: needs force
        before = meta_tables(tgt, scn.meta, kept)
        assert any(t.endswith("_syncer_checkpoint") for t in before), before
        assert meta_tables(tgt, scn.meta, gone), "no checkpoint of the incremental task"
        r = api.delete(f"/tasks/{q(kept)}", params={"force": True, "keep_meta": True})
        assert r.status_code == 204, r.text
        r = api.delete(f"/tasks/{q(gone)}", params={"force": True})
        assert r.status_code == 204, r.text
        assert_dm_error(api.get(f"/tasks/{q(kept)}"), 46018, kept)
        assert meta_tables(tgt, scn.meta, kept) == before
        assert meta_tables(tgt, scn.meta, gone) == []
        wait_writes(writers, 15)  # written while no task runs
        create_task(api, kept_body)
        start_task(api, kept)
        seen: set[str] = set()

        def resumed() -> str | None:
            data = status(api, kept)
            seen.update(d["unit"] for d in data)
            return stages_are(api, kept, "Running", "Sync")()

        wait_for(f"{kept} resumed", resumed, guard=lambda: no_error_pause(api, [kept]))
        wait_writes(writers, 10)
    wait_for("re-created task caught up", caught_up(api, tgt, [kept], copies),
             guard=lambda: no_error_pause(api, [kept]))
    # DM skips the dump and load of a task whose sync checkpoint exists.
    assert seen == {"Sync"}, f"the re-created task ran the units {seen}, not only Sync"
