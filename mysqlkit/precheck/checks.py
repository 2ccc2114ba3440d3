"""DM's checking items, each a pure function of the facts read from a server (and the
task's settings) to a `CheckResult`."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

from mysqlkit.precheck.facts import Column, ServerFacts, TableFacts
from mysqlkit.precheck.grants import _Grants, _lacked_as_str
from mysqlkit.precheck.result import CheckError, CheckResult, State
from mysqlkit.routing import TableRef
from mysqlkit.upstream import (
    ConnConfig,
)

_ACCESS_DENIED_HINT = "Grant the required privileges to the account."


def address_of(cfg: ConnConfig) -> str:
    return f"address of db instance - {cfg.host}:{cfg.port}"


def _version_tuple(version: str) -> tuple[int, int, int] | None:
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def check_version(facts: ServerFacts, cfg: ConnConfig, source: str | None = None
                  ) -> CheckResult:
    r = CheckResult("version", "mysql_version", "check whether mysql version is satisfied",
                    extra=address_of(cfg), source=source)
    if facts.is_mariadb:
        return r.warn("Migrating from MariaDB is experimentally supported")
    v = _version_tuple(facts.version)
    if v is None:
        return r.fail(f"can not parse version {facts.version!r}")
    if v < (5, 6, 0):
        return r.warn(f"version suggested at least 5.6.0 but got {v[0]}.{v[1]}.{v[2]}")
    if v >= (8, 1, 0):
        return r.warn(f"version suggested less than 8.1.0 but got {v[0]}.{v[1]}.{v[2]}")
    return r


def check_server_id(facts: ServerFacts, cfg: ConnConfig, source: str | None = None
                    ) -> CheckResult:
    r = CheckResult("server_id", "mysql_server_id",
                    "check whether mysql server_id has been greater than 0",
                    extra=address_of(cfg), source=source)
    value = facts.variables.get("server_id", "")
    if value == "":
        r.instruction = "please set server_id in your database"
        return r.fail("server_id not set")
    if value == "0":
        r.instruction = "please set server_id greater than 0"
        return r.fail("server_id is 0")
    return r


def check_binlog_enable(facts: ServerFacts, cfg: ConnConfig, source: str | None = None
                        ) -> CheckResult:
    r = CheckResult("binlog_enable", "mysql_binlog_enable",
                    "check whether mysql binlog is enabled", extra=address_of(cfg), source=source)
    value = facts.variables.get("log_bin", "")
    if value.upper() not in ("ON", "1"):
        r.instruction = ("ref document: https://dev.mysql.com/doc/refman/5.7/en/"
                         "replication-howto-masterbaseconfig.html")
        return r.fail(f"log_bin is {value or 'OFF'}, and should be ON")
    return r


def check_binlog_format(facts: ServerFacts, cfg: ConnConfig, source: str | None = None
                        ) -> CheckResult:
    r = CheckResult("binlog_format", "mysql_binlog_format",
                    "check whether mysql binlog_format is ROW", extra=address_of(cfg),
                    source=source)
    value = facts.variables.get("binlog_format", "")
    if value.upper() != "ROW":
        r.instruction = "please execute 'set global binlog_format=ROW;'"
        return r.fail(f"binlog_format is {value}, and should be ROW")
    return r


def check_binlog_row_image(facts: ServerFacts, cfg: ConnConfig, source: str | None = None
                           ) -> CheckResult:
    r = CheckResult("binlog_row_image", "mysql_binlog_row_image",
                    "check whether mysql binlog_row_image is FULL", extra=address_of(cfg),
                    source=source)
    # Servers without the variable (MySQL < 5.6.2, MariaDB < 10.1.6) always log full rows.
    value = facts.variables.get("binlog_row_image")
    if value is not None and value.upper() != "FULL":
        r.instruction = "please execute 'set global binlog_row_image = FULL;'"
        return r.fail(f"binlog_row_image is {value}, and should be FULL")
    return r


def check_replication_privilege(facts: ServerFacts, cfg: ConnConfig,
                                source: str | None = None) -> CheckResult:
    r = CheckResult("replication_privilege", "source db replication privilege checker",
                    "check replication privileges of source DB", extra=address_of(cfg),
                    source=source)
    if facts.grants is None:
        return r.fail(facts.grants_error)
    grants = _Grants(facts.grants)
    lacked: dict[str, dict[str, set[str]] | None] = {}
    # SUPER also allows SHOW MASTER STATUS (DM accepts it for REPLICATION CLIENT).
    if not grants.has_global("REPLICATION CLIENT", "SUPER"):
        lacked["REPLICATION CLIENT"] = None
    if not grants.has_global("REPLICATION SLAVE"):
        lacked["REPLICATION SLAVE"] = None
    if lacked:
        r.instruction = _ACCESS_DENIED_HINT
        return r.fail(_lacked_as_str(lacked))
    return r


def check_dump_privilege(facts: ServerFacts, tables: Sequence[TableRef], consistency: str,
                         cfg: ConnConfig, source: str | None = None) -> CheckResult:
    """SELECT on every migrated table, plus what the consistency mode locks with: RELOAD
    for FTWRL (flush; snapshot's BACKUP STAGE too), LOCK TABLES for lock; `auto` falls back
    from FTWRL to LOCK TABLES in dmray's dump, so either will do."""
    r = CheckResult("dump_privilege", "source db dump privilege checker",
                    "check dump privileges of source DB", extra=address_of(cfg), source=source)
    if facts.grants is None:
        return r.fail(facts.grants_error)
    grants = _Grants(facts.grants)
    lacked: dict[str, dict[str, set[str]] | None] = {}
    no_select: dict[str, set[str]] = defaultdict(set)
    for ref in tables:
        if not grants.on_table(ref, "SELECT"):
            no_select[ref.schema].add(ref.table)
    if no_select:
        lacked["SELECT"] = dict(no_select)
    # FLUSH_TABLES is MySQL 8's dynamic privilege that allows FTWRL on its own.
    reload_ok = grants.has_global("RELOAD", "FLUSH_TABLES")
    schemas = sorted({t.schema for t in tables})
    lock_ok = all(grants.on_schema(s, "LOCK TABLES") for s in schemas)
    if consistency in ("flush", "snapshot") and not reload_ok:
        lacked["RELOAD"] = None
    elif consistency == "lock" and not lock_ok:
        lacked["LOCK TABLES"] = None
    elif consistency == "auto" and not (reload_ok or lock_ok):
        lacked["RELOAD"] = None
    if lacked:
        r.instruction = "Please grant the required privileges to the account."
        return r.fail(_lacked_as_str(lacked))
    return r


def check_target_privilege(facts: ServerFacts, cfg: ConnConfig) -> CheckResult:
    r = CheckResult("target_privilege", "target db privilege checker",
                    "check privileges of target DB", extra=address_of(cfg))
    if facts.grants is None:
        return r.fail(facts.grants_error)
    grants = _Grants(facts.grants)
    lacked: dict[str, dict[str, set[str]] | None] = {
        p: None for p in ("CREATE", "SELECT", "INSERT", "UPDATE", "DELETE", "ALTER", "DROP",
                          "INDEX") if not grants.has_global(p)}
    if lacked:
        # As DM: which tables the binlog will touch is not known exactly, so only a warning.
        r.instruction = "You need grant related privileges."
        return r.warn(_lacked_as_str(lacked))
    return r


def check_binlog_db(facts: ServerFacts, schemas: Iterable[str], cfg: ConnConfig,
                    source: str | None = None) -> CheckResult:
    r = CheckResult("binlog_db", "binlog_do_db/binlog_ignore_db check",
                    "check whether migrated dbs are in binlog_do_db/binlog_ignore_db",
                    extra=address_of(cfg), source=source)
    if facts.master_status is None:
        return r.fail(facts.master_status_error)
    do_db, ignore_db = (s.replace(" ", "") for s in facts.master_status)
    wanted = set(schemas)
    # The server applies binlog-do-db when set and then ignores binlog-ignore-db.
    if do_db:
        missing = sorted(wanted - set(do_db.split(",")))
        if missing:
            r.extra = f"these dbs [{','.join(missing)}] are not in binlog_do_db[{do_db}]"
            return r.fail(r.extra)
    elif ignore_db:
        for db in ignore_db.split(","):
            if db in wanted:
                r.extra = f"db [{db}] is in binlog_ignore_db[{ignore_db}]"
                return r.fail(r.extra)
    return r


_MARIADB_GTID_RE = re.compile(r"^\s*(\d+-\d+-\d+\s*(,\s*\d+-\d+-\d+\s*)*)?$")


_MYSQL_GTID_RE = re.compile(
    r"^\s*([0-9a-fA-F-]{36}(:\d+(-\d+)?)+\s*(,\s*[0-9a-fA-F-]{36}(:\d+(-\d+)?)+\s*)*)?$")


def check_meta_position(facts: ServerFacts, binlog_name: str | None, binlog_pos: int | None,
                        binlog_gtid: str | None, cfg: ConnConfig,
                        source: str | None = None) -> CheckResult:
    r = CheckResult("meta_position", "meta position check",
                    "check whether meta position is valid for db", extra=address_of(cfg),
                    source=source)
    if binlog_gtid:
        regex = _MARIADB_GTID_RE if facts.is_mariadb else _MYSQL_GTID_RE
        if not regex.match(binlog_gtid):
            r.instruction = "Please check the `binlog_gtid` of the source in the task."
            r.fail(f"binlog_gtid {binlog_gtid!r} is not a valid "
                   f"{'MariaDB' if facts.is_mariadb else 'MySQL'} GTID set")
    if binlog_name:
        if facts.binary_logs is None:
            return r.fail(facts.binary_logs_error)
        size = facts.binary_logs.get(binlog_name)
        r.instruction = "Please check the `binlog_name`/`binlog_pos` of the source in the task."
        if size is None:
            r.fail(f"binlog file {binlog_name} does not exist on the source, whose binlog files "
                   f"are {', '.join(facts.binary_logs) or 'none'}")
        elif binlog_pos is not None and binlog_pos > size:
            r.fail(f"binlog position {binlog_pos} is beyond the end of {binlog_name} "
                   f"({size} bytes)")
    if r.state == State.SUCCESS:
        r.instruction = ""
    return r


def conn_result(item_name: str, facts: ServerFacts, needed: int, side: str, unit: str,
                 cfg: ConnConfig, source: str | None) -> CheckResult:
    r = CheckResult("conn_number", item_name,
                    f"check if user-specified amount of connection exceeds {side}'s maximum",
                    source=source)
    try:
        max_conn = int(facts.variables.get("max_connections", ""))
    except ValueError:
        return r.fail(f"can not read max_connections of {cfg.host}:{cfg.port}")
    if needed > max_conn:
        r.instruction = "set larger max_connections or reduce the pool size of dm"
        return r.fail(f"{side}'s max_connections: {max_conn} is less than the amount {unit} "
                      f"needs: {needed}")
    return r


def check_table_schema(table_facts: dict[str, TableFacts]) -> CheckResult:
    r = CheckResult("table_schema", "table structure compatibility check",
                    "check compatibility of table structure")
    for tf in table_facts.values():
        for ref in tf.tables:
            if ref not in tf.columns:
                continue  # dropped since it was listed
            if not any(tf.keys.get(ref, {}).values()):
                r.warn(f"table {ref} primary/unique key does not exist")
    if r.errors:
        r.instruction = ("You need to set primary/unique keys for the table. Otherwise "
                         "replication efficiency might become very low and exactly-once "
                         "replication cannot be guaranteed.")
    return r


def check_primary_key(table_facts: dict[str, TableFacts]) -> CheckResult:
    r = CheckResult("primary_key", "primary key existence check",
                    "check existence of primary key in upstream tables")
    for tf in table_facts.values():
        for ref in tf.tables:
            if ref in tf.columns and "PRIMARY" not in tf.keys.get(ref, {}):
                r.fail(f"table {ref} primary key does not exist")
    if r.errors:
        r.instruction = ("You need to set primary key for the upstream table. Otherwise "
                         "replication efficiency may be low, and correctness (e.g., "
                         "deduplication and idempotency) may be affected if no primary key "
                         "exists.")
    return r


ShardMember = tuple[str, TableRef, list[Column]]


def _go_list(items: Iterable[str]) -> str:
    return "[" + " ".join(items) + "]"


def check_pessimistic_shard(target: TableRef, members: Sequence[ShardMember]) -> CheckResult:
    """Every shard must have the columns of the first one: same names, same types."""
    r = CheckResult("schema_of_shard_tables", f"sharding table {target} consistency checking",
                    "check consistency of sharding table structures",
                    extra=f"sourceID {members[0][0]} on sharding {target}")
    first_source, first_table, first_cols = members[0]
    for source, table, cols in members[1:]:
        err: CheckError | None = None
        if len(cols) != len(first_cols):
            err = CheckError(
                State.FAILURE,
                f"column length mismatch (self: {len(first_cols)} vs other: {len(cols)})",
                self_=f"sourceID {first_source} table {first_table} columns "
                      f"{_go_list(c.name.lower() for c in first_cols)}",
                other=f"sourceID {source} table {table} columns "
                      f"{_go_list(c.name.lower() for c in cols)}")
        else:
            for a, b in zip(first_cols, cols, strict=True):
                if (a.name.lower(), a.column_type) == (b.name.lower(), b.column_type):
                    continue
                # Same column and base type, other length/precision: the usual shard drift.
                same_base = a.name.lower() == b.name.lower() and a.data_type == b.data_type
                err = CheckError(
                    State.FAILURE,
                    "different column definition (column length mismatch)" if same_base
                    else "different column definition",
                    self_=f"sourceID {first_source} table {first_table} column "
                          f"{a.name.lower()} {a.column_type}",
                    other=f"sourceID {source} table {table} column "
                          f"{b.name.lower()} {b.column_type}")
                break
        if err is not None:
            r.state = State.FAILURE
            r.errors.append(err)
    if r.state == State.FAILURE:
        r.extra = f"error on sharding {target}"
        r.instruction = "please set same table structure for sharding tables"
    return r


def _base_type(c: Column) -> tuple[str, bool]:
    return c.data_type, "unsigned" in c.column_type


def check_optimistic_shard(target: TableRef, members: Sequence[ShardMember]) -> CheckResult:
    """Optimistic shards may differ (columns added/dropped, lengths), but one column name
    must not carry incompatible types: the structures must be joinable."""
    r = CheckResult("schema_of_shard_tables",
                    f"optimistic sharding table {target} consistency checking",
                    "check consistency of sharding table structures for Optimistic Sharding "
                    "Merge", extra=f"sharding {target}")
    seen: dict[str, tuple[str, TableRef, Column]] = {}
    for source, table, cols in members:
        for c in cols:
            key = c.name.lower()
            if key not in seen:
                seen[key] = (source, table, c)
                continue
            s0, t0, c0 = seen[key]
            if _base_type(c0) != _base_type(c):
                r.fail(f"incompatible column definition of {key}: {c0.column_type} vs "
                       f"{c.column_type}",
                       self_=f"sourceID {s0} table {t0} column {key} {c0.column_type}",
                       other=f"sourceID {source} table {table} column {key} {c.column_type}")
    if r.state == State.FAILURE:
        r.extra = f"fail to join table info of sharding {target}"
        r.instruction = "please set compatible table structures for sharding tables"
    return r


def check_auto_increment(target: TableRef, members: Sequence[ShardMember]) -> CheckResult:
    r = CheckResult("auto_increment_ID", f"sharding table {target} auto-increment key checking",
                    "check whether sharding tables have auto-increment keys")
    for source, table, cols in members:
        if any(c.auto_increment for c in cols):
            r.warn(f"sourceID {source} table {table} of sharding {target} have auto-increment "
                   f"key, please make sure them don't conflict in target table!")
    if r.errors:
        r.extra = "auto-increment key checking"
        r.instruction = (
            "If happen conflict, please handle it by yourself. You can refer to "
            "https://docs.pingcap.com/tidb-data-migration/stable/shard-merge-best-practices/"
            "#handle-conflicts-between-primary-keys-or-unique-indexes-across-multiple-sharded-"
            "tables")
    return r
