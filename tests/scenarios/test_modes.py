"""DM's task modes over the HTTP API with two sources: `full`, `all` and `incremental`
tasks running at once; `dump` then `load`; an `all` task started before its tables
exist (no-shard and shard). Writes go on on both sources while the tasks run; the target
is compared with the sources row by row."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.scenarios.helpers import (
    Copy,
    RowWriter,
    Scn,
    caught_up,
    conf,
    copy_structure,
    create_task,
    diff_all,
    insert_rows,
    make_tables,
    master_pos,
    no_error_pause,
    rule,
    run_parallel,
    snapshot_cut,
    stages_are,
    start_task,
    status,
    task_body,
    wait_for,
    wait_writes,
    writing,
)

pytestmark = [pytest.mark.race, pytest.mark.timeout(240)]


def test_full_all_and_incremental_tasks_at_once(scn: Scn) -> None:
    """Three tasks over the same two sources, started together: `full` (a consistent
    snapshot while inserts go on), `all` (dump, load, then sync, and a table created
    after the start) and `incremental` (from positions in source_conf)."""
    s1, s2 = scn.sources()
    tgt = scn.target
    fs, as_, is_ = scn.db("full"), scn.db("all"), scn.db("inc")
    servers = {s1.name: s1.server, s2.name: s2.server}
    ft = {n: scn.db(f"fullc{i}") for i, n in enumerate(servers, 1)}
    at = {n: scn.db(f"allc{i}") for i, n in enumerate(servers, 1)}
    it = {n: scn.db(f"incc{i}") for i, n in enumerate(servers, 1)}
    pos = {}
    for n, server in servers.items():
        make_tables(server, fs, ("a", "b"), rows=300)
        make_tables(server, as_, ("t1", "t2"), rows=200)
        make_tables(server, is_, ("t1",))
        copy_structure(server, is_, ("t1",), tgt, it[n])
        pos[n] = master_pos(server)
        insert_rows(server, is_, "t1", range(1, 51))  # after the start position

    full = scn.name("full")
    alls = scn.name("all")
    inc = scn.name("inc")
    srcs = list(servers)
    bodies = {
        full: task_body(full, tgt, "full", [rule(n, fs, ft[n]) for n in srcs],
                        [conf(n) for n in srcs], scn.meta),
        alls: task_body(alls, tgt, "all", [rule(n, as_, at[n]) for n in srcs],
                        [conf(n) for n in srcs], scn.meta),
        inc: task_body(inc, tgt, "incremental", [rule(n, is_, it[n]) for n in srcs],
                       [conf(n, pos[n]) for n in srcs], scn.meta),
    }
    snap_writers = [RowWriter(s, [(fs, "a"), (fs, "b")], insert_only=True, pause=0.005)
                    for s in servers.values()]
    sync_writers = [RowWriter(s, [(as_, "t1"), (as_, "t2"), (is_, "t1")], rows=50)
                    for s in servers.values()]

    def run_full(api: httpx.Client) -> None:
        create_task(api, bodies[full])
        start_task(api, full)
        wait_for("full task Finished", stages_are(api, full, "Finished", "Load"),
                 guard=lambda: no_error_pause(api, [full]))

    def run_sync(name: str) -> Callable[[httpx.Client], None]:
        def part(api: httpx.Client) -> None:
            create_task(api, bodies[name])
            start_task(api, name)
            assert all(d["stage"] == "Running" for d in status(api, name)), status(api, name)
            wait_for(f"{name} in Sync", stages_are(api, name, "Running", "Sync"),
                     guard=lambda: no_error_pause(api, [name]))
        return part

    with writing(*snap_writers, *sync_writers):
        wait_writes(snap_writers + sync_writers, 5)
        run_parallel(scn.srv, {"full": run_full, "all": run_sync(alls),
                               "incremental": run_sync(inc)})
        # A table created after the start, while the writes go on.
        for server in servers.values():
            make_tables(server, as_, ("t_new",), rows=20)
            insert_rows(server, as_, "t_new", range(1000, 1010))
        wait_writes(sync_writers, 20)

    api = scn.api
    copies = [Copy.of(servers[n], as_, t, at[n]) for n in srcs for t in ("t1", "t2", "t_new")]
    copies += [Copy.of(servers[n], is_, "t1", it[n]) for n in srcs]
    wait_for("all + incremental caught up", caught_up(api, tgt, [alls, inc], copies),
             guard=lambda: no_error_pause(api, [alls, inc]))
    # The full task: each source's tables hold one snapshot of it.
    full_copies = []
    for n in srcs:
        cut = snapshot_cut(tgt, [(ft[n], "a"), (ft[n], "b")])
        full_copies += [Copy.of(servers[n], fs, t, ft[n], where=cut) for t in ("a", "b")]
    assert diff_all(tgt, full_copies) is None, diff_all(tgt, full_copies)
    for d in status(api, full):
        assert d["load_status"]["progress"] == "100.00 %", d
        assert d["dump_status"]["total_tables"] == 2, d


def test_dump_then_load_two_sources(scn: Scn, tmp_path: Path) -> None:
    """`dump` writes each source's snapshot (taken while inserts go on) into its folder of
    data_dir; `load` imports both into per-source target schemas."""
    s1, s2 = scn.sources()
    tgt = scn.target
    schema = scn.db("dl")
    servers = {s1.name: s1.server, s2.name: s2.server}
    tschemas = {n: scn.db(f"dlc{i}") for i, n in enumerate(servers, 1)}
    for server in servers.values():
        make_tables(server, schema, ("a", "b", "c"), rows=400)
    data_dir = tmp_path / "dump"
    srcs = list(servers)
    dump, load = scn.name("dump"), scn.name("load")
    api = scn.api
    writers = [RowWriter(s, [(schema, "a"), (schema, "b"), (schema, "c")], insert_only=True,
                         pause=0.005) for s in servers.values()]
    with writing(*writers):
        wait_writes(writers, 5)
        create_task(api, task_body(dump, tgt, "dump", [rule(n, schema, tschemas[n])
                                                      for n in srcs],
                                   [conf(n) for n in srcs], scn.meta, data_dir=str(data_dir)))
        start_task(api, dump)
        wait_for("dump Finished", stages_are(api, dump, "Finished", "Dump"),
                 guard=lambda: no_error_pause(api, [dump]))
    for n in srcs:
        files = {p.name for p in (data_dir / n).iterdir()} if (data_dir / n).is_dir() else set()
        assert {"metadata", f"{schema}-schema-create.sql", f"{schema}.a-schema.sql"} <= files, \
            (n, sorted(files))
    assert not tgt.query(f"SHOW DATABASES LIKE '{tschemas[srcs[0]]}'")  # dump loads nothing

    create_task(api, task_body(load, tgt, "load", [rule(n, schema, tschemas[n]) for n in srcs],
                               [conf(n) for n in srcs], scn.meta, data_dir=str(data_dir)))
    start_task(api, load)
    wait_for("load Finished", stages_are(api, load, "Finished", "Load"),
             guard=lambda: no_error_pause(api, [load]))
    copies = []
    for n in srcs:
        cut = snapshot_cut(tgt, [(tschemas[n], t) for t in ("a", "b", "c")])
        copies += [Copy.of(servers[n], schema, t, tschemas[n], where=cut) for t in "abc"]
    assert diff_all(tgt, copies) is None, diff_all(tgt, copies)
    # What the dump counted is what was loaded.
    dumped = {d["source_name"]: d["dump_status"] for d in status(api, dump)}
    for n in srcs:
        rows = sum(int(tgt.query(f"SELECT COUNT(*) FROM `{tschemas[n]}`.`{t}`")[0][0])
                   for t in "abc")
        assert dumped[n]["total_tables"] == 3, dumped[n]
        assert dumped[n]["finished_rows"] == rows, (n, rows, dumped[n])
        assert dumped[n]["progress"] == "100.00 %", dumped[n]
    for d in status(api, load):
        assert d["load_status"]["progress"] == "100.00 %", d
        assert d["load_status"]["meta_binlog"].startswith("(mysql-bin."), d


def test_all_task_started_before_its_tables_exist(scn: Scn) -> None:
    """Two `all` tasks started while their schemas hold no table yet, one routing each
    source to its own schema, one merging shards of both sources (optimistic); the
    tables are created and written afterwards, and replicate."""
    s1, s2 = scn.sources()
    tgt = scn.target
    ns, ss = scn.db("late"), scn.db("lsh")
    servers = {s1.name: s1.server, s2.name: s2.server}
    srcs = list(servers)
    nt = {n: scn.db(f"latec{i}") for i, n in enumerate(srcs, 1)}
    mt = scn.db("lshc")
    for server in servers.values():
        server.execute(f"CREATE DATABASE `{ns}`; CREATE DATABASE `{ss}`")
    plain, shard = scn.name("late"), scn.name("lsh")
    api = scn.api
    create_task(api, task_body(plain, tgt, "all", [rule(n, ns, nt[n]) for n in srcs],
                               [conf(n) for n in srcs], scn.meta))
    create_task(api, task_body(shard, tgt, "all",
                               [rule(n, ss, mt, table="sh_*", ttable="merged") for n in srcs],
                               [conf(n) for n in srcs], scn.meta, shard_mode="optimistic"))
    for t in (plain, shard):
        start_task(api, t)
    for t in (plain, shard):
        wait_for(f"{t} in Sync", stages_are(api, t, "Running", "Sync"),
                 guard=lambda: no_error_pause(api, [plain, shard]))
    # Now the tables: plain ones on both sources, one shard per source (disjoint ids).
    for i, server in enumerate(servers.values()):
        make_tables(server, ns, ("t1", "t2"), rows=30)
        make_tables(server, ss, (f"sh_{i + 1}",), rows=30, id_base=i * 1_000_000)
    writers = [RowWriter(server, [(ns, "t1"), (ns, "t2")], rows=30)
               for server in servers.values()]
    writers += [RowWriter(server, [(ss, f"sh_{i + 1}")], id_base=i * 1_000_000, rows=30)
                for i, server in enumerate(servers.values())]
    with writing(*writers):
        wait_writes(writers, 20)
    copies = [Copy.of(servers[n], ns, t, nt[n]) for n in srcs for t in ("t1", "t2")]
    copies.append(Copy((mt, "merged"), tuple((servers[n], ss, f"sh_{i + 1}")
                                             for i, n in enumerate(srcs))))
    wait_for("tables created after the start replicated",
             caught_up(api, tgt, [plain, shard], copies),
             guard=lambda: no_error_pause(api, [plain, shard]))
