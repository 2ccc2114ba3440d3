"""Task precheck (DM's `check-task`): privileges, binlog settings, table structures.

`precheck()` gathers what it needs from every server concurrently (one pass of queries per
server, on at most two connections), then evaluates DM's checking items on those facts.
Which items run depends on the task mode, as in DM: binlog items only for modes with a Sync
unit, dump privileges only for modes with a Dump unit, nothing on the sources in `load`
mode (their data comes from data_dir) but their presence in the configuration.

The result renders exactly as DM's: `"pre-check is passed. "` when every item succeeded,
`"fail to check synchronization configuration with type: no errors but some warnings\\n
detail: {json}"` with warnings only, and error 26005 carrying the JSON detail on failure.
The JSON is DM's `checker.Results` (failed and warning items only, at most 10 errors and 10
warnings, tab-indented as Go's json.MarshalIndent(r, "\\t", "\\t") writes it).

A server that cannot be reached yields a failed item carrying the driver's message; the
other items of that server are not evaluated. Nothing here raises for a server problem.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from domain.task_models import Task, TaskFullMigrateConf
from errors import CHECK_ITEM_NOT_SUPPORTED, DMError
from mysqlkit.precheck.checks import (
    ShardMember,
    address_of,
    check_auto_increment,
    check_binlog_db,
    check_binlog_enable,
    check_binlog_format,
    check_binlog_row_image,
    check_dump_privilege,
    check_meta_position,
    check_optimistic_shard,
    check_pessimistic_shard,
    check_primary_key,
    check_replication_privilege,
    check_server_id,
    check_table_schema,
    check_target_privilege,
    check_version,
    conn_result,
)
from mysqlkit.precheck.facts import (
    ServerFacts,
    SourceFacts,
    TableFacts,
    read_server_facts,
    read_table_facts,
)
from mysqlkit.precheck.result import (
    DEFAULT_ERROR_LIMIT,
    DEFAULT_WARN_LIMIT,
    CheckResult,
    PrecheckResult,
)
from mysqlkit.routing import TableRef, TableRouter, router_for_source
from mysqlkit.upstream import (
    DEFAULT_CONNECT_TIMEOUT,
    ConnConfig,
)

__all__ = [
    "ALL_CHECKING",
    "CHECKING_ITEMS",
    "OPT_IN_ITEMS",
    "precheck",
    "validate_checking_items",
]


ALL_CHECKING = "all"


CHECKING_ITEMS = (
    "dump_privilege", "replication_privilege", "target_privilege", "version", "server_id",
    "binlog_enable", "binlog_format", "binlog_row_image", "binlog_db", "meta_position",
    "table_schema", "schema_of_shard_tables", "auto_increment_ID", "online_ddl",
    "conn_number", "primary_key",
)


# Only run when asked for explicitly (DM: an extra checking item of the caller).
OPT_IN_ITEMS = frozenset({"primary_key"})


# DM's physical-import (Lightning) items: accepted in ignore lists, never run here.
_LIGHTNING_ITEMS = frozenset({"empty_region", "region_distribution", "downstream_version",
                              "free_space", "downstream_mutex_features", "target_table_empty"})


_DUMP_MODES = frozenset({"all", "full", "dump"})


_LOAD_MODES = frozenset({"all", "full", "load"})


_SYNC_MODES = frozenset({"all", "incremental"})


def validate_checking_items(items: Iterable[str] | None) -> None:
    """Unknown names in ignore_checking_items are a configuration error, as in DM."""
    for item in items or ():
        if not item.strip():  # an empty item names nothing (DM's clients send them)
            continue
        if item != ALL_CHECKING and item not in CHECKING_ITEMS and item not in _LIGHTNING_ITEMS:
            raise CHECK_ITEM_NOT_SUPPORTED(
                item, "supported items: " + ", ".join((ALL_CHECKING, *CHECKING_ITEMS)))


def _connection_failure(what: str, cfg: ConnConfig, message: str,
                        source: str | None) -> CheckResult:
    r = CheckResult("", f"{what} connection", f"check whether {what} can be connected",
                    extra=address_of(cfg), source=source)
    r.instruction = "Please check the database connection and the database config."
    return r.fail(message)


@dataclass(frozen=True)
class _Plan:
    """Which items run for a task, and what must be read for them."""

    mode: str
    active: frozenset[str]  # every item that runs
    source_items: frozenset[str]  # those evaluated on the sources
    shard_items: frozenset[str]  # the shard comparisons among the active items
    use_target: bool
    need_server: bool
    need_tables: bool
    need_columns: bool


_TABLE_ITEMS = frozenset({"table_schema", "primary_key", "schema_of_shard_tables",
                          "auto_increment_ID"})


def _plan(task: Task, ignore: set[str], extra: set[str]) -> _Plan:
    mode = task.task_mode
    active = {i for i in CHECKING_ITEMS if i not in OPT_IN_ITEMS} | extra
    active -= ignore
    if mode not in _DUMP_MODES:
        active -= {"dump_privilege"}
    if mode not in _SYNC_MODES:
        active -= {"server_id", "binlog_enable", "binlog_format", "binlog_row_image",
                   "replication_privilege", "binlog_db", "online_ddl"}
    if mode != "incremental":
        # DM only honours the binlog meta in incremental mode; full modes take the dump's.
        active -= {"meta_position"}
    # Shards are compared on a fresh task only: later, structures may differ legitimately
    # (DDL not yet replayed on every shard), and in incremental mode SHOW CREATE TABLE is
    # not the structure at the starting position.
    shard_items = {"schema_of_shard_tables", "auto_increment_ID"} & active
    if not task.shard_mode or mode == "incremental":
        active -= shard_items
    if mode == "load":
        # The data comes from data_dir: the sources are not read at all.
        active -= {"version", "table_schema", "schema_of_shard_tables", "auto_increment_ID",
                   "primary_key"}
    use_target = mode != "dump" and (
        "target_privilege" in active or ("conn_number" in active and mode in _LOAD_MODES)
        or bool(shard_items & active))
    source_items = active - {"target_privilege"}
    if mode == "load":
        source_items = set()
    elif "conn_number" in source_items and mode not in _DUMP_MODES:
        source_items -= {"conn_number"}
    return _Plan(
        mode=mode, active=frozenset(active), source_items=frozenset(source_items),
        shard_items=frozenset(shard_items), use_target=use_target,
        need_server=bool(source_items - _TABLE_ITEMS),
        need_tables=bool(source_items & (_TABLE_ITEMS | {"dump_privilege", "binlog_db"})),
        need_columns=bool(source_items & _TABLE_ITEMS))


async def _gather_source(plan: _Plan, name: str, cfg: ConnConfig, router: TableRouter,
                         connect_timeout: float) -> SourceFacts:
    sf = SourceFacts(name, cfg, router)
    jobs: list[Any] = []
    if plan.need_server:
        jobs.append(read_server_facts(cfg, master_status="binlog_db" in plan.source_items,
                                  binary_logs="meta_position" in plan.source_items,
                                  connect_timeout=connect_timeout))
    if plan.need_tables:
        jobs.append(read_table_facts(cfg, router, columns=plan.need_columns,
                                 connect_timeout=connect_timeout))
    done = await asyncio.gather(*jobs, return_exceptions=True)
    for value in done:
        if isinstance(value, DMError):
            sf.error = sf.error or str(value)
        elif isinstance(value, BaseException):
            raise value
        elif isinstance(value, ServerFacts):
            sf.server = value
        else:
            sf.tables = value
    return sf


async def _gather_target(plan: _Plan, task: Task, target: ConnConfig,
                         connect_timeout: float) -> ServerFacts | DMError | None:
    if not plan.use_target:
        return None
    try:
        return await read_server_facts(
            target, master_status=False, binary_logs=False, connect_timeout=connect_timeout,
            meta_schema=task.meta_schema if plan.shard_items & plan.active else None,
            task_name=task.name)
    except DMError as exc:
        return exc


def _target_results(plan: _Plan, facts: ServerFacts | DMError | None, target: ConnConfig,
                    needed_conns: int) -> list[CheckResult]:
    if isinstance(facts, DMError):
        return [_connection_failure("target db", target, str(facts), None)]
    out: list[CheckResult] = []
    if facts is not None:
        if "conn_number" in plan.active and plan.mode in _LOAD_MODES:
            out.append(conn_result("loader_conn_amount_checker", facts, needed_conns,
                                    "downstream", "loader", target, None))
        if "target_privilege" in plan.active:
            out.append(check_target_privilege(facts, target))
    return out


def _source_results(items: frozenset[str], conf: Any, sf: SourceFacts, consistency: str,
                    export_threads: int) -> list[CheckResult]:
    """The server items of one source, in DM's order."""
    name, cfg = sf.name, sf.cfg
    if sf.error:
        return [_connection_failure(f"source {name}", cfg, sf.error, name)]
    srv = sf.server
    if srv is None:
        return []
    tables = sf.tables.tables if sf.tables is not None else []
    out: list[CheckResult] = []
    if "conn_number" in items:
        out.append(conn_result("dumper_conn_amount_checker", srv, export_threads + 2,
                                "upstream", "dumper", cfg, name))
    simple = (("version", check_version), ("dump_privilege", None),
              ("server_id", check_server_id), ("binlog_enable", check_binlog_enable),
              ("binlog_format", check_binlog_format),
              ("binlog_row_image", check_binlog_row_image),
              ("replication_privilege", check_replication_privilege))
    for item, check in simple:
        if item not in items:
            continue
        if check is None:  # dump_privilege: also the tables and the consistency
            out.append(check_dump_privilege(srv, tables, consistency, cfg, name))
        else:
            out.append(check(srv, cfg, name))
    if "binlog_db" in items:
        out.append(check_binlog_db(srv, {t.schema for t in tables}, cfg, name))
    if "meta_position" in items and (conf.binlog_name or conf.binlog_gtid):
        out.append(check_meta_position(srv, conf.binlog_name, conf.binlog_pos,
                                       conf.binlog_gtid, cfg, name))
    return out


def _shard_results(plan: _Plan, task: Task, present: Sequence[Any],
                   table_facts: dict[str, TableFacts],
                   routers: dict[str, TableRouter]) -> list[CheckResult]:
    """The shard comparisons: the members of each target table that several tables merge
    into."""
    groups: dict[TableRef, list[ShardMember]] = defaultdict(list)
    for conf in present:
        tf = table_facts.get(conf.source_name)
        if tf is None:
            continue
        router = routers[conf.source_name]
        for ref in tf.tables:
            tgt = router.route(ref.schema, ref.table)
            if tgt is not None and ref in tf.columns:
                groups[tgt].append((conf.source_name, ref, tf.columns[ref]))
    out: list[CheckResult] = []
    for tgt in sorted(groups):
        members = groups[tgt]
        if len(members) <= 1:
            continue
        if "schema_of_shard_tables" in plan.source_items:
            check = (check_pessimistic_shard if task.shard_mode == "pessimistic"
                     else check_optimistic_shard)
            out.append(check(tgt, members))
        if "auto_increment_ID" in plan.source_items:
            out.append(check_auto_increment(tgt, members))
    return out


async def precheck(
    task: Task,
    sources: dict[str, ConnConfig],
    target: ConnConfig,
    *,
    extra_items: Iterable[str] = (),
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    error_limit: int = DEFAULT_ERROR_LIMIT,
    warn_limit: int = DEFAULT_WARN_LIMIT,
) -> PrecheckResult:
    """Run the task's precheck against its sources (by source name) and its target.

    `extra_items` opts in to items that never run by default (`primary_key`). Raises only
    for an invalid task (unknown checking item, unknown binlog filter rule name).
    """
    ignore = set(task.ignore_checking_items or ())
    extra = set(extra_items)
    validate_checking_items(ignore)
    validate_checking_items(extra)
    result = PrecheckResult(error_limit=error_limit, warn_limit=warn_limit)
    if ALL_CHECKING in ignore:
        result.skipped_all = True
        return result
    plan = _plan(task, ignore, extra)
    full = task.source_config.full_migrate_conf or TaskFullMigrateConf()
    confs = task.source_config.source_conf
    routers = {c.source_name: router_for_source(task, c.source_name) for c in confs}
    missing = [c.source_name for c in confs if c.source_name not in sources]
    present = [c for c in confs if c.source_name in sources]

    target_facts, source_facts = await asyncio.gather(
        _gather_target(plan, task, target, connect_timeout),
        asyncio.gather(*(_gather_source(plan, c.source_name, sources[c.source_name],
                                        routers[c.source_name], connect_timeout)
                         for c in present)))
    facts_by_source = {sf.name: sf for sf in source_facts}

    results = [CheckResult("", f"source {name} existence",
                           "check whether the source is configured",
                           source=name).fail(f"source {name} not exists") for name in missing]
    # Target items first, as DM orders them.
    results += _target_results(plan, target_facts, target,
                               sum(full.import_threads + 1 for _ in confs))
    for conf in present:
        results += _source_results(plan.source_items, conf, facts_by_source[conf.source_name],
                                   full.consistency or "auto", full.export_threads)
    table_facts = {n: sf.tables for n, sf in facts_by_source.items()
                   if sf.tables is not None and not sf.error}
    if "table_schema" in plan.source_items and table_facts:
        results.append(check_table_schema(table_facts))
    fresh = not (isinstance(target_facts, ServerFacts) and target_facts.checkpoints)
    if plan.source_items & plan.shard_items and fresh:
        results += _shard_results(plan, task, present, table_facts, routers)
    if "primary_key" in plan.source_items and table_facts:
        results.append(check_primary_key(table_facts))

    for i, r in enumerate(results):
        r.id = i
    result.results = results
    return result
