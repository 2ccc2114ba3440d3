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
from collections.abc import Iterable
from typing import Any

from domain.task_models import Task, TaskFullMigrateConf
from errors import CHECK_ITEM_NOT_SUPPORTED, DMError
from mysqlkit.precheck.checks import (
    ShardMember,
    _address,
    _conn_result,
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
)
from mysqlkit.precheck.facts import ServerFacts, _server_facts, _SourceFacts, _table_facts
from mysqlkit.precheck.result import (
    DEFAULT_ERROR_LIMIT,
    DEFAULT_WARN_LIMIT,
    CheckResult,
    PrecheckResult,
)
from mysqlkit.routing import TableRef, router_for_source
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
                    extra=_address(cfg), source=source)
    r.instruction = "Please check the database connection and the database config."
    return r.fail(message)


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

    full = task.source_config.full_migrate_conf or TaskFullMigrateConf()
    consistency = full.consistency or "auto"
    confs = task.source_config.source_conf
    routers = {c.source_name: router_for_source(task, c.source_name) for c in confs}

    missing = [c.source_name for c in confs if c.source_name not in sources]
    present = [c for c in confs if c.source_name in sources]
    need_tables = bool(source_items & {"dump_privilege", "binlog_db", "table_schema",
                                       "primary_key", "schema_of_shard_tables",
                                       "auto_increment_ID"})
    need_columns = bool(source_items & {"table_schema", "primary_key",
                                        "schema_of_shard_tables", "auto_increment_ID"})
    need_server = bool(source_items - {"table_schema", "primary_key",
                                       "schema_of_shard_tables", "auto_increment_ID"})

    async def gather_source(name: str) -> _SourceFacts:
        sf = _SourceFacts(name, sources[name], routers[name])
        jobs: list[Any] = []
        if need_server:
            jobs.append(_server_facts(sf.cfg, master_status="binlog_db" in source_items,
                                      binary_logs="meta_position" in source_items,
                                      connect_timeout=connect_timeout))
        if need_tables:
            jobs.append(_table_facts(sf.cfg, sf.router, columns=need_columns,
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

    async def gather_target() -> ServerFacts | DMError | None:
        if not use_target:
            return None
        try:
            return await _server_facts(
                target, master_status=False, binary_logs=False, connect_timeout=connect_timeout,
                meta_schema=task.meta_schema if shard_items & active else None,
                task_name=task.name)
        except DMError as exc:
            return exc

    target_facts, source_facts = await asyncio.gather(
        gather_target(), asyncio.gather(*(gather_source(c.source_name) for c in present)))
    facts_by_source = {sf.name: sf for sf in source_facts}
    results: list[CheckResult] = []

    for name in missing:
        results.append(CheckResult("", f"source {name} existence",
                                   "check whether the source is configured",
                                   source=name).fail(f"source {name} not exists"))

    # Target items first, as DM orders them.
    if isinstance(target_facts, DMError):
        results.append(_connection_failure("target db", target, str(target_facts), None))
    elif target_facts is not None:
        if "conn_number" in active and mode in _LOAD_MODES:
            needed = sum(full.import_threads + 1 for _ in confs)
            results.append(_conn_result("loader_conn_amount_checker", target_facts, needed,
                                        "downstream", "loader", target, None))
        if "target_privilege" in active:
            results.append(check_target_privilege(target_facts, target))

    for conf in present:
        sf = facts_by_source[conf.source_name]
        name, cfg = sf.name, sf.cfg
        if sf.error:
            results.append(_connection_failure(f"source {name}", cfg, sf.error, name))
            continue
        srv, tf = sf.server, sf.tables
        tables = tf.tables if tf is not None else []
        if srv is None:
            continue
        if "conn_number" in source_items:
            results.append(_conn_result("dumper_conn_amount_checker", srv,
                                        full.export_threads + 2, "upstream", "dumper", cfg,
                                        name))
        if "version" in source_items:
            results.append(check_version(srv, cfg, name))
        if "dump_privilege" in source_items:
            results.append(check_dump_privilege(srv, tables, consistency, cfg, name))
        if "server_id" in source_items:
            results.append(check_server_id(srv, cfg, name))
        if "binlog_enable" in source_items:
            results.append(check_binlog_enable(srv, cfg, name))
        if "binlog_format" in source_items:
            results.append(check_binlog_format(srv, cfg, name))
        if "binlog_row_image" in source_items:
            results.append(check_binlog_row_image(srv, cfg, name))
        if "replication_privilege" in source_items:
            results.append(check_replication_privilege(srv, cfg, name))
        if "binlog_db" in source_items:
            results.append(check_binlog_db(srv, {t.schema for t in tables}, cfg, name))
        if "meta_position" in source_items and (conf.binlog_name or conf.binlog_gtid):
            results.append(check_meta_position(srv, conf.binlog_name, conf.binlog_pos,
                                               conf.binlog_gtid, cfg, name))

    table_facts = {n: sf.tables for n, sf in facts_by_source.items()
                   if sf.tables is not None and not sf.error}
    if "table_schema" in source_items and table_facts:
        results.append(check_table_schema(table_facts))

    fresh = not (isinstance(target_facts, ServerFacts) and target_facts.checkpoints)
    if source_items & shard_items and fresh:
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
        for tgt in sorted(groups):
            members = groups[tgt]
            if len(members) <= 1:
                continue
            if "schema_of_shard_tables" in source_items:
                check = (check_pessimistic_shard if task.shard_mode == "pessimistic"
                         else check_optimistic_shard)
                results.append(check(tgt, members))
            if "auto_increment_ID" in source_items:
                results.append(check_auto_increment(tgt, members))

    if "primary_key" in source_items and table_facts:
        results.append(check_primary_key(table_facts))

    for i, r in enumerate(results):
        r.id = i
    result.results = results
    return result
