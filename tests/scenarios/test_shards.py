"""Shard merges over the HTTP API: shards on two sources merged into one target table by a
pessimistic and an optimistic `all` task running at once, with the same ADD COLUMN on
every shard once all subtasks sync; and one task with four sources, merging a shard of
each and copying another table of each unmerged."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from testbed.mariadb import MariaDBServer
from tests.scenarios.helpers import (
    Copy,
    RowWriter,
    Scn,
    caught_up,
    conf,
    create_task,
    make_tables,
    no_error_pause,
    rule,
    run_parallel,
    stages_are,
    start_task,
    task_body,
    wait_for,
    wait_writes,
    writing,
)

pytestmark = [pytest.mark.race, pytest.mark.timeout(240)]

SHARD = 1_000_000  # id range of each shard, so merged rows never collide


def test_pessimistic_and_optimistic_shard_merges_at_once(scn: Scn) -> None:
    s1, s2 = scn.sources()
    tgt = scn.target
    api = scn.api
    # (server, source, shard table, id base): two shards on source 1, one on source 2.
    shards = [(s1.server, s1.name, "sh_1", 0), (s1.server, s1.name, "sh_2", SHARD),
              (s2.server, s2.name, "sh_3", 2 * SHARD)]
    tasks: dict[str, tuple[str, str, str]] = {}  # task -> (shard mode, schema, target schema)
    for mode in ("pessimistic", "optimistic"):
        schema = scn.db(mode[:4])
        tasks[scn.name(mode[:4])] = (mode, schema, scn.db(f"{mode[:4]}c"))
        for server, _, table, base in shards:
            make_tables(server, schema, (table,), rows=60, id_base=base)
    writers = [RowWriter(server, [(schema, table)], id_base=base, rows=60)
               for _, schema, _ in tasks.values() for server, _, table, base in shards]

    def run(name: str) -> Callable[[httpx.Client], None]:
        mode, schema, tschema = tasks[name]

        def part(c: httpx.Client) -> None:
            rules = [rule(n, schema, tschema, table="sh_*", ttable="merged")
                     for n in (s1.name, s2.name)]
            create_task(c, task_body(name, tgt, "all", rules, [conf(s1.name), conf(s2.name)],
                                     scn.meta, shard_mode=mode))
            start_task(c, name)
            wait_for(f"{name} in Sync", stages_are(c, name, "Running", "Sync"),
                     guard=lambda: no_error_pause(c, [name]))
        return part

    def copies() -> list[Copy]:
        return [Copy((tschema, "merged"), tuple((server, schema, table)
                                                for server, _, table, _ in shards))
                for _, schema, tschema in tasks.values()]

    with writing(*writers):
        wait_writes(writers, 3)
        run_parallel(scn.srv, {name: run(name) for name in tasks})
        wait_writes(writers, 10)
        # DM: run shard DDL once every subtask syncs. The same ADD COLUMN on each shard.
        for _, schema, _ in tasks.values():
            for server, _, table, _ in shards:
                server.execute(f"ALTER TABLE `{schema}`.`{table}` ADD COLUMN n INT NULL")
        for _, schema, _ in tasks.values():
            for server, _, table, base in shards:
                server.execute(f"UPDATE `{schema}`.`{table}` SET n = id - {base} "
                               f"WHERE id <= {base + 10}")
        wait_writes(writers, 10)
    wait_for("merged tables equal the union of their shards",
             caught_up(api, tgt, list(tasks), copies()),
             guard=lambda: no_error_pause(api, list(tasks)))


def test_four_sources_in_one_task(scn: Scn, extra_sources: tuple[MariaDBServer, MariaDBServer],
                                  spare_workers: Callable[[int], list[str]]) -> None:
    spare_workers(2)  # worker1, worker2 and two more: one per source
    servers = (scn.source1, scn.source2, *extra_sources)
    srcs = scn.sources(*servers)
    tgt = scn.target
    api = scn.api
    schema, merged = scn.db("four"), scn.db("fourm")
    own = {s.name: scn.db(f"four{i}") for i, s in enumerate(srcs, 1)}
    for i, s in enumerate(srcs):
        make_tables(s.server, schema, ("sh", "own"), rows=40, id_base=i * SHARD)
    rules = []
    for s in srcs:
        rules.append(rule(s.name, schema, merged, table="sh", ttable="merged"))
        rules.append(rule(s.name, schema, own[s.name], table="own"))
    name = scn.name("four")
    writers = [RowWriter(s.server, [(schema, "sh"), (schema, "own")], id_base=i * SHARD,
                         rows=40) for i, s in enumerate(srcs)]
    with writing(*writers):
        wait_writes(writers, 3)
        create_task(api, task_body(name, tgt, "all", rules, [conf(s.name) for s in srcs],
                                   scn.meta, shard_mode="optimistic"))
        start_task(api, name)
        wait_for(f"{name} in Sync", stages_are(api, name, "Running", "Sync"),
                 guard=lambda: no_error_pause(api, [name]))
        wait_writes(writers, 15)
    workers = {d["worker_name"] for d in api.get(f"/tasks/{name}/status").json()["data"]}
    assert len(workers) == 4, workers
    copies = [Copy((merged, "merged"), tuple((s.server, schema, "sh") for s in srcs))]
    copies += [Copy.of(s.server, schema, "own", own[s.name]) for s in srcs]
    wait_for("four sources caught up", caught_up(api, tgt, [name], copies),
             guard=lambda: no_error_pause(api, [name]))
