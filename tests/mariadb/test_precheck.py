"""mysqlkit.precheck.run: the evaluators (pure) and whole prechecks against real MariaDB."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from domain.task_models import Task
from errors import DMError
from mysqlkit.precheck.checks import (
    check_binlog_db,
    check_dump_privilege,
    check_optimistic_shard,
    check_pessimistic_shard,
    check_replication_privilege,
)
from mysqlkit.precheck.facts import Column, ServerFacts
from mysqlkit.precheck.grants import parse_grant
from mysqlkit.precheck.result import (
    CHECK_TASK_MSG_HEADER,
    CHECK_TASK_SUCCESS,
    CheckResult,
    PrecheckResult,
    State,
)
from mysqlkit.precheck.run import precheck
from mysqlkit.routing import TableRef
from mysqlkit.upstream import ConnConfig
from testbed.mariadb import MariaDBServer

WARN_PREFIX = f"{CHECK_TASK_MSG_HEADER}: no errors but some warnings\n detail: "
CFG = ConnConfig("127.0.0.1", 3306, "u")

# --- grants (pure) -----------------------------------------------------------------------------


def test_parse_grant_shapes() -> None:
    g = parse_grant("GRANT ALL PRIVILEGES ON *.* TO `dmray`@`%` IDENTIFIED BY PASSWORD "
                    "'*4D15' WITH GRANT OPTION")
    assert g is not None and g.level == "global" and g.privs == {"ALL"}
    g = parse_grant("GRANT SELECT, RELOAD, BINLOG MONITOR, REPLICATION SLAVE ON *.* TO `u`@`%`")
    assert g is not None and g.privs == {"SELECT", "RELOAD", "REPLICATION CLIENT",
                                         "REPLICATION SLAVE"}
    g = parse_grant("GRANT SELECT (`a`, `b,c`), INSERT ON `my-db`.`t``1` TO `u`@`h`")
    assert g is not None and (g.level, g.db, g.table) == ("table", "my-db", "t`1")
    assert g.privs == {"INSERT"} and g.column_only == {"SELECT"}
    g = parse_grant(r"GRANT SELECT ON `app\_%`.* TO 'u'@'%'")
    assert g is not None and (g.level, g.db) == ("db", r"app\_%")
    g = parse_grant("GRANT EXECUTE ON PROCEDURE `db`.`p` TO `u`@`%`")
    assert g is not None and g.level == "routine"
    g = parse_grant("REVOKE SELECT ON `secret`.* FROM `u`@`%`")
    assert g is not None and g.revoke
    g = parse_grant("GRANT BACKUP_ADMIN,FLUSH_TABLES ON *.* TO `u`@`%`")  # MySQL 8 dynamic
    assert g is not None and g.privs == {"BACKUP_ADMIN", "FLUSH_TABLES"}
    assert parse_grant("GRANT `role1` TO `u`@`%`") is None
    assert parse_grant("GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION") is None
    assert parse_grant("SET DEFAULT ROLE `role1` FOR `u`@`%`") is None


def facts(*grants: str) -> ServerFacts:
    return ServerFacts(version="10.11.6-MariaDB", grants=list(grants))


def test_replication_privilege() -> None:
    ok = check_replication_privilege(facts("GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO "
                                           "`u`@`%`"), CFG)
    assert ok.state == State.SUCCESS
    r = check_replication_privilege(facts("GRANT SELECT ON *.* TO `u`@`%`"), CFG)
    assert r.state == State.FAILURE
    assert r.errors[0].short_error == ("lack of REPLICATION CLIENT global (*.*) privilege; "
                                       "lack of REPLICATION SLAVE global (*.*) privilege; ")
    # SUPER is enough for SHOW MASTER STATUS, as DM accepts.
    r = check_replication_privilege(facts("GRANT SUPER, REPLICATION SLAVE ON *.* TO u"), CFG)
    assert r.state == State.SUCCESS
    r = check_replication_privilege(ServerFacts(grants=None, grants_error="denied"), CFG)
    assert r.state == State.FAILURE and r.errors[0].short_error == "denied"


def test_dump_privilege_tables_and_consistency() -> None:
    tables = [TableRef("app_1", "t"), TableRef("app_1", "u"), TableRef("other", "t"),
              TableRef("z", "only")]
    grants = facts(r"GRANT SELECT, LOCK TABLES ON `app\_%`.* TO `u`@`%`",
                   "GRANT SELECT ON `z`.`only` TO `u`@`%`",
                   "GRANT SELECT (`c`) ON `other`.`t` TO `u`@`%`")  # columns only: not enough
    r = check_dump_privilege(grants, tables, "flush", CFG)
    assert r.state == State.FAILURE
    assert r.errors[0].short_error == ("lack of Select privilege: {`other`.`t`}; "
                                       "lack of RELOAD global (*.*) privilege; ")
    r = check_dump_privilege(grants, tables[:2], "auto", CFG)  # auto falls back to LOCK TABLES
    assert r.state == State.SUCCESS
    r = check_dump_privilege(grants, tables[:2], "lock", CFG)
    assert r.state == State.SUCCESS
    r = check_dump_privilege(grants, tables[:2], "flush", CFG)
    assert r.errors[0].short_error == "lack of RELOAD global (*.*) privilege; "
    # Db-level grant names are LIKE patterns: `\_` is a literal underscore, `_` any character.
    r = check_dump_privilege(grants, [TableRef("appX1", "t")], "none", CFG)
    assert r.errors[0].short_error == "lack of Select privilege: {`appX1`.`t`}; "
    like = facts("GRANT SELECT ON `log_`.* TO `u`@`%`")
    assert check_dump_privilege(like, [TableRef("logs", "t")], "none", CFG).state == \
        State.SUCCESS
    revoked = facts("GRANT SELECT, RELOAD ON *.* TO u", "REVOKE SELECT ON `secret`.* FROM u")
    r = check_dump_privilege(revoked, [TableRef("secret", "a"), TableRef("open", "b")],
                             "flush", CFG)
    assert r.errors[0].short_error == "lack of Select privilege: {`secret`.`a`}; "


def test_binlog_db() -> None:
    base = ServerFacts(master_status=("app,logs", ""))
    assert check_binlog_db(base, {"app"}, CFG).state == State.SUCCESS
    r = check_binlog_db(base, {"app", "crm", "bi"}, CFG)
    assert r.state == State.FAILURE
    assert r.extra == "these dbs [bi,crm] are not in binlog_do_db[app,logs]"
    ignore = ServerFacts(master_status=("", "tmp, crm"))
    r = check_binlog_db(ignore, {"crm"}, CFG)
    assert r.extra == "db [crm] is in binlog_ignore_db[tmp,crm]"
    assert check_binlog_db(ServerFacts(master_status=("", "")), {"x"}, CFG).state == \
        State.SUCCESS


def col(name: str, column_type: str, auto: bool = False) -> Column:
    return Column(name, column_type.split("(")[0].split()[0], column_type, auto)


def test_pessimistic_shard_messages() -> None:
    target = TableRef("m", "t")
    a = ("s1", TableRef("d1", "t"), [col("id", "int(11)"), col("name", "varchar(20)")])
    b = ("s2", TableRef("d2", "t"), [col("id", "int(11)"), col("name", "varchar(30)")])
    c = ("s2", TableRef("d3", "t"), [col("id", "int(11)")])
    d = ("s2", TableRef("d4", "t"), [col("id", "int(11)"), col("name", "text")])
    r = check_pessimistic_shard(target, [a, b, c, d])
    assert r.state == State.FAILURE and r.item == "schema_of_shard_tables"
    e_len, e_count, e_type = r.errors
    assert e_len.short_error == "different column definition (column length mismatch)"
    assert e_len.self_ == "sourceID s1 table `d1`.`t` column name varchar(20)"
    assert e_len.other == "sourceID s2 table `d2`.`t` column name varchar(30)"
    assert e_count.short_error == "column length mismatch (self: 2 vs other: 1)"
    assert e_count.other == "sourceID s2 table `d3`.`t` columns [id]"
    assert e_type.short_error == "different column definition"
    assert r.extra == "error on sharding `m`.`t`"
    assert check_pessimistic_shard(target, [a, a]).state == State.SUCCESS


def test_optimistic_shard_allows_joinable_structures() -> None:
    target = TableRef("m", "t")
    a = ("s1", TableRef("d1", "t"), [col("id", "int(11)"), col("name", "varchar(20)")])
    b = ("s2", TableRef("d2", "t"), [col("id", "int(11)"), col("name", "varchar(30)"),
                                     col("extra", "int(11)")])
    assert check_optimistic_shard(target, [a, b]).state == State.SUCCESS
    bad = ("s2", TableRef("d3", "t"), [col("id", "varchar(10)")])
    r = check_optimistic_shard(target, [a, bad])
    assert r.state == State.FAILURE and "incompatible column definition of id" in \
        r.errors[0].short_error


def test_result_text_and_limits() -> None:
    assert PrecheckResult([CheckResult("version", "v", "d")]).text() == CHECK_TASK_SUCCESS
    assert PrecheckResult(skipped_all=True).text() == ""
    warn = CheckResult("table_schema", "n", "d")
    for i in range(12):
        warn.warn(f"w{i} <&>")
    res = PrecheckResult([warn])
    text = res.text()
    assert res.passed and text.startswith(WARN_PREFIX)
    detail = json.loads(text[len(WARN_PREFIX):])
    assert len(detail["results"][0]["errors"]) == 10  # DM shows at most 10 warnings
    assert detail["summary"] == {"passed": True, "total": 1, "successful": 0, "failed": 0,
                                 "warning": 1}
    assert "\\u003c\\u0026\\u003e" in text  # Go's HTML-safe escaping
    assert text[len(WARN_PREFIX):].startswith('{\n\t\t"results": [\n\t\t\t{\n\t\t\t\t"id": 0,')
    failed = PrecheckResult([CheckResult("binlog_format", "n", "d").fail("boom")])
    err = failed.to_error()
    assert err.code == 26005 and not failed.passed
    assert err.message.startswith("fail to check synchronization configuration with type: "
                                  "check was failed, please see detail\n detail: {")
    assert failed.text() == err.message
    assert json.loads(err.message.split(" detail: ", 1)[1])["summary"]["failed"] == 1


# --- against real MariaDB ----------------------------------------------------------------------


def cfg_of(server: MariaDBServer, **overrides: Any) -> ConnConfig:
    return ConnConfig(**{**server.conn_kwargs(), **overrides})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_task(target: MariaDBServer, mode: str = "all",
              rules: Sequence[tuple[str, str, str, str | None, str | None]] | None = None,
              sources: tuple[str, ...] = ("s1",), **extra: Any) -> Task:
    rules = rules if rules is not None else [("s1", "pc_clean", "*", None, None)]
    data: dict[str, Any] = {
        "name": "pc-task", "task_mode": mode,
        "target_config": target.conn_kwargs(),
        "table_migrate_rule": [
            {"source": {"source_name": s, "schema": sch, "table": tbl},
             **({"target": {"schema": ts, "table": tt}} if ts or tt else {})}
            for s, sch, tbl, ts, tt in rules],
        "source_config": {"source_conf": [{"source_name": s} for s in sources]},
    }
    data.update(extra)
    return Task.model_validate(data)


def by_item(result: PrecheckResult, item: str) -> list[CheckResult]:
    return [r for r in result.results if r.item == item]


def failed_items(result: PrecheckResult) -> set[str]:
    return {r.item for r in result.errors}


@pytest.fixture(scope="module")
def clean_schema(source1: MariaDBServer) -> Iterator[None]:
    source1.execute("DROP DATABASE IF EXISTS pc_clean; CREATE DATABASE pc_clean; "
                    "CREATE TABLE pc_clean.a (id INT PRIMARY KEY, v VARCHAR(10)); "
                    "CREATE TABLE pc_clean.b (k VARCHAR(5) NOT NULL, UNIQUE KEY (k))")
    yield
    source1.execute("DROP DATABASE IF EXISTS pc_clean")


pytestmark_db = pytest.mark.mariadb


@pytestmark_db
async def test_clean_mariadb_only_warns_about_version(
        source1: MariaDBServer, target: MariaDBServer, clean_schema: None) -> None:
    task = make_task(target)
    res = await precheck(task, {"s1": cfg_of(source1)}, cfg_of(target))
    assert res.passed
    assert [(r.item, r.state) for r in res.warnings] == [("version", State.WARNING)]
    ran = {r.item for r in res.results}
    assert {"dump_privilege", "replication_privilege", "target_privilege", "server_id",
            "binlog_enable", "binlog_format", "binlog_row_image", "binlog_db", "table_schema",
            "conn_number", "version"} <= ran
    text = res.text()
    assert text.startswith(WARN_PREFIX)
    detail = json.loads(text[len(WARN_PREFIX):])
    assert [r["name"] for r in detail["results"]] == ["mysql_version"]
    assert detail["results"][0]["errors"][0]["short_error"] == \
        "Migrating from MariaDB is experimentally supported"
    assert detail["summary"]["passed"] is True and detail["summary"]["warning"] == 1


@pytestmark_db
async def test_clean_mariadb_ignoring_version_is_passed(
        source1: MariaDBServer, target: MariaDBServer, clean_schema: None) -> None:
    task = make_task(target, ignore_checking_items=["version"])
    res = await precheck(task, {"s1": cfg_of(source1)}, cfg_of(target))
    assert res.text() == "pre-check is passed. "
    assert res.passed and not res.warnings and len(res.results) >= 10
    assert not by_item(res, "version")


@pytestmark_db
async def test_table_without_primary_key_warns(
        source1: MariaDBServer, target: MariaDBServer) -> None:
    source1.execute("DROP DATABASE IF EXISTS pc_nopk; CREATE DATABASE pc_nopk; "
                    "CREATE TABLE pc_nopk.with_pk (id INT PRIMARY KEY); "
                    "CREATE TABLE pc_nopk.`log-lines` (line TEXT, KEY (line(10)))")
    try:
        task = make_task(target, "full", rules=[("s1", "pc_nopk", "*", None, None)],
                         ignore_checking_items=["version"])
        res = await precheck(task, {"s1": cfg_of(source1)}, cfg_of(target))
        assert res.passed
        [ts] = by_item(res, "table_schema")
        assert ts.state == State.WARNING
        assert [e.short_error for e in ts.errors] == [
            "table `pc_nopk`.`log-lines` primary/unique key does not exist"]
        assert res.text().startswith(WARN_PREFIX)
        assert "primary/unique key does not exist" in res.text()
        # primary_key is opt-in; when asked for, a missing primary key fails.
        res2 = await precheck(task, {"s1": cfg_of(source1)}, cfg_of(target),
                              extra_items=["primary_key"])
        assert failed_items(res2) == {"primary_key"}
        assert "table `pc_nopk`.`log-lines` primary key does not exist" in res2.text()
    finally:
        source1.execute("DROP DATABASE IF EXISTS pc_nopk")


@pytest.fixture
def shards(source1: MariaDBServer, source2: MariaDBServer) -> Iterator[None]:
    source1.execute("DROP DATABASE IF EXISTS pc_shard_1; CREATE DATABASE pc_shard_1; "
                    "CREATE TABLE pc_shard_1.orders (id INT PRIMARY KEY, note VARCHAR(20))")
    source2.execute("DROP DATABASE IF EXISTS pc_shard_2; CREATE DATABASE pc_shard_2; "
                    "CREATE TABLE pc_shard_2.orders (id INT PRIMARY KEY, note VARCHAR(30))")
    yield
    source1.execute("DROP DATABASE IF EXISTS pc_shard_1")
    source2.execute("DROP DATABASE IF EXISTS pc_shard_2")


SHARD_RULES = [("s1", "pc_shard_?", "orders", "pc_merged", "orders"),
               ("s2", "pc_shard_?", "orders", "pc_merged", "orders")]


@pytestmark_db
async def test_shard_tables_with_different_varchar_lengths_fail(
        source1: MariaDBServer, source2: MariaDBServer, target: MariaDBServer,
        shards: None) -> None:
    sources = {"s1": cfg_of(source1), "s2": cfg_of(source2)}
    task = make_task(target, "all", rules=SHARD_RULES, sources=("s1", "s2"),
                     shard_mode="pessimistic")
    res = await precheck(task, sources, cfg_of(target))
    assert not res.passed
    assert failed_items(res) == {"schema_of_shard_tables"}
    [shard] = by_item(res, "schema_of_shard_tables")
    assert shard.name == "sharding table `pc_merged`.`orders` consistency checking"
    assert shard.errors[0].self_ == \
        "sourceID s1 table `pc_shard_1`.`orders` column note varchar(20)"
    assert shard.errors[0].other == \
        "sourceID s2 table `pc_shard_2`.`orders` column note varchar(30)"
    err = res.to_error()
    assert isinstance(err, DMError) and err.code == 26005
    assert "column length mismatch" in err.message and "column length mismatch" in str(err)
    assert str(err).startswith("[code=26005:class=task-check:")
    detail = json.loads(err.message.split(" detail: ", 1)[1])
    assert detail["summary"]["passed"] is False and detail["summary"]["failed"] == 1
    assert res.text() == err.message

    # Optimistic shards may differ in lengths (the structures join).
    res = await precheck(make_task(target, "all", rules=SHARD_RULES, sources=("s1", "s2"),
                                   shard_mode="optimistic"), sources, cfg_of(target))
    assert res.passed and by_item(res, "schema_of_shard_tables")[0].state == State.SUCCESS
    # Incremental tasks do not compare shards (SHOW CREATE TABLE is not the binlog's view).
    res = await precheck(make_task(target, "incremental", rules=SHARD_RULES,
                                   sources=("s1", "s2"), shard_mode="pessimistic"),
                         sources, cfg_of(target))
    assert res.passed and not by_item(res, "schema_of_shard_tables")


@pytestmark_db
async def test_auto_increment_in_shards_warns(
        source1: MariaDBServer, source2: MariaDBServer, target: MariaDBServer,
        shards: None) -> None:
    for server, db in ((source1, "pc_shard_1"), (source2, "pc_shard_2")):
        server.execute(f"DROP TABLE {db}.orders; CREATE TABLE {db}.orders "
                       "(id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(20))")
    task = make_task(target, "full", rules=SHARD_RULES, sources=("s1", "s2"),
                     shard_mode="pessimistic", ignore_checking_items=["version"])
    res = await precheck(task, {"s1": cfg_of(source1), "s2": cfg_of(source2)}, cfg_of(target))
    assert res.passed
    [auto] = by_item(res, "auto_increment_ID")
    assert auto.state == State.WARNING and len(auto.errors) == 2
    assert "have auto-increment key" in auto.errors[0].short_error
    assert by_item(res, "schema_of_shard_tables")[0].state == State.SUCCESS


@contextlib.contextmanager
def global_binlog_format(server: MariaDBServer, value: str) -> Iterator[None]:
    [(old,)] = server.query("SELECT @@GLOBAL.binlog_format")
    server.execute(f"SET GLOBAL binlog_format = '{value}'")
    try:
        yield
    finally:
        server.execute(f"SET GLOBAL binlog_format = '{old}'")


@pytestmark_db
async def test_statement_binlog_fails_incremental_but_not_full(
        source1: MariaDBServer, target: MariaDBServer, clean_schema: None) -> None:
    sources = {"s1": cfg_of(source1)}
    with global_binlog_format(source1, "STATEMENT"):
        inc = await precheck(make_task(target, "incremental", ignore_checking_items=["version"]),
                             sources, cfg_of(target))
        full = await precheck(make_task(target, "full", ignore_checking_items=["version"]),
                              sources, cfg_of(target))
    assert failed_items(inc) == {"binlog_format"}
    [bf] = by_item(inc, "binlog_format")
    assert bf.errors[0].short_error == "binlog_format is STATEMENT, and should be ROW"
    assert inc.to_error().code == 26005 and "binlog_format is STATEMENT" in inc.text()
    assert full.text() == CHECK_TASK_SUCCESS and not by_item(full, "binlog_format")
    assert source1.query("SELECT @@GLOBAL.binlog_format") == [("ROW",)]


@pytest.fixture
def limited_user(source1: MariaDBServer) -> Iterator[ConnConfig]:
    for host in ("%", "localhost"):
        source1.execute("DROP USER IF EXISTS %s@%s", ("pc_limited", host))
        source1.execute("CREATE USER %s@%s IDENTIFIED BY 'pc-pw'", ("pc_limited", host))
        source1.execute("GRANT SELECT ON `pc\\_clean`.* TO %s@%s", ("pc_limited", host))
    yield cfg_of(source1, user="pc_limited", password="pc-pw")
    for host in ("%", "localhost"):
        source1.execute("DROP USER IF EXISTS %s@%s", ("pc_limited", host))


@pytestmark_db
async def test_user_without_replication_privileges(
        source1: MariaDBServer, target: MariaDBServer, clean_schema: None,
        limited_user: ConnConfig) -> None:
    task = make_task(target, "all", ignore_checking_items=["version"])
    res = await precheck(task, {"s1": limited_user}, cfg_of(target))
    assert not res.passed
    [rp] = by_item(res, "replication_privilege")
    assert rp.state == State.FAILURE
    assert rp.errors[0].short_error == ("lack of REPLICATION CLIENT global (*.*) privilege; "
                                        "lack of REPLICATION SLAVE global (*.*) privilege; ")
    # SELECT on the schema is there, but neither RELOAD nor LOCK TABLES for a consistent dump.
    [dp] = by_item(res, "dump_privilege")
    assert dp.errors[0].short_error == "lack of RELOAD global (*.*) privilege; "
    # SHOW MASTER STATUS is denied too, which binlog_db reports with the driver's message.
    [bdb] = by_item(res, "binlog_db")
    assert bdb.state == State.FAILURE and "1227" in bdb.errors[0].short_error
    assert "replication_privilege" in failed_items(res)
    assert "REPLICATION SLAVE" in res.to_error().message

    # MariaDB's own names for the privileges satisfy the check.
    for host in ("%", "localhost"):
        source1.execute("GRANT RELOAD, BINLOG MONITOR, REPLICATION SLAVE ON *.* TO %s@%s",
                        ("pc_limited", host))
    res = await precheck(task, {"s1": limited_user}, cfg_of(target))
    assert res.text() == CHECK_TASK_SUCCESS


@pytestmark_db
async def test_ignore_all_skips_everything(target: MariaDBServer) -> None:
    dead = ConnConfig("127.0.0.1", closed_port(), "nobody")
    task = make_task(target, ignore_checking_items=["all"])
    res = await precheck(task, {"s1": dead}, dead)
    assert res.skipped_all and res.passed and res.results == []
    assert res.text() == ""  # DM answers an empty check result when everything is ignored


@pytestmark_db
async def test_unreachable_source_is_a_failed_item(
        source2: MariaDBServer, target: MariaDBServer, clean_schema: None) -> None:
    port = closed_port()
    dead = ConnConfig("127.0.0.1", port, "dmray", "secret-pw-123")
    task = make_task(target, "all", rules=[("s1", "pc_clean", "*", None, None),
                                           ("s2", "nothing", "*", None, None)],
                     sources=("s1", "s2"), ignore_checking_items=["version"])
    res = await precheck(task, {"s1": dead, "s2": cfg_of(source2)}, cfg_of(target))
    assert not res.passed
    [conn] = res.errors
    assert (conn.name, conn.source, conn.item) == ("source s1 connection", "s1", "")
    assert "Can't connect" in conn.errors[0].short_error
    assert conn.errors[0].short_error.startswith("[code=10001:")
    assert conn.extra == f"address of db instance - 127.0.0.1:{port}"
    # The other source was still checked, and passed.
    assert all(r.state == State.SUCCESS for r in res.results if r.source == "s2")
    assert any(r.source == "s2" for r in res.results)
    text = res.to_error().message
    assert "Can't connect" in text and "secret-pw-123" not in text

    # An unreachable target, likewise.
    res = await precheck(make_task(target, "full", ignore_checking_items=["version"]),
                         {"s1": cfg_of(source2)}, dead)
    assert [r.name for r in res.errors] == ["target db connection"]


@pytestmark_db
async def test_meta_position(source1: MariaDBServer, target: MariaDBServer,
                             clean_schema: None) -> None:
    [(name, pos, *_)] = source1.query("SHOW MASTER STATUS")
    sources = {"s1": cfg_of(source1)}

    def task_at(binlog_name: str, binlog_pos: int) -> Task:
        return make_task(target, "incremental", ignore_checking_items=["version"],
                         source_config={"source_conf": [{
                             "source_name": "s1", "binlog_name": binlog_name,
                             "binlog_pos": binlog_pos}]})

    ok = await precheck(task_at(name, int(pos)), sources, cfg_of(target))
    assert ok.text() == CHECK_TASK_SUCCESS and by_item(ok, "meta_position")
    bad = await precheck(task_at("mysql-bin.999999", 4), sources, cfg_of(target))
    assert failed_items(bad) == {"meta_position"}
    assert "binlog file mysql-bin.999999 does not exist" in bad.text()
    beyond = await precheck(task_at(name, int(pos) + 10**9), sources, cfg_of(target))
    assert failed_items(beyond) == {"meta_position"}


@pytestmark_db
async def test_modes_and_connection_numbers(source1: MariaDBServer, source2: MariaDBServer,
                                            target: MariaDBServer, clean_schema: None) -> None:
    dead = ConnConfig("127.0.0.1", closed_port(), "nobody")
    # load reads data_dir, not the sources: they are not even connected...
    load = make_task(target, "load", ignore_checking_items=["version"])
    res = await precheck(load, {"s1": dead}, cfg_of(target))
    assert res.text() == CHECK_TASK_SUCCESS
    assert {r.item for r in res.results} == {"conn_number", "target_privilege"}
    # ...but they must be configured.
    res = await precheck(load, {}, cfg_of(target))
    assert [r.errors[0].short_error for r in res.errors] == ["source s1 not exists"]
    # dump writes files only: the target is not needed.
    res = await precheck(make_task(target, "dump", ignore_checking_items=["version"]),
                         {"s1": cfg_of(source1)}, dead)
    assert res.text() == CHECK_TASK_SUCCESS
    assert not by_item(res, "target_privilege") and not by_item(res, "replication_privilege")
    # Two subtasks with 256 import threads each need 514 target connections (max 300).
    many = make_task(target, "full", rules=[("s1", "pc_clean", "*", None, None)],
                     sources=("s1", "s2"), ignore_checking_items=["version"],
                     source_config={"full_migrate_conf": {"import_threads": 256},
                                    "source_conf": [{"source_name": "s1"},
                                                    {"source_name": "s2"}]})
    res = await precheck(many, {"s1": cfg_of(source1), "s2": cfg_of(source2)}, cfg_of(target))
    assert failed_items(res) == {"conn_number"}
    assert ("downstream's max_connections: 300 is less than the amount loader needs: 514"
            in res.text())


@pytestmark_db
async def test_unknown_checking_item_is_rejected(target: MariaDBServer) -> None:
    task = make_task(target, ignore_checking_items=["versoin"])
    with pytest.raises(DMError) as info:
        await precheck(task, {}, cfg_of(target))
    assert info.value.code == 20003 and "versoin" in info.value.message
