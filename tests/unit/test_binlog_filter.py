"""mysqlkit.binlog.filter: DM's binlog event filter semantics on a task's rules."""

from __future__ import annotations

from typing import Any

import pytest

from domain.task_models import Task
from errors import DMError
from mysqlkit.binlog.filter import BinlogFilter, normalize_event
from mysqlkit.routing import RouteRule, TableRouter, router_for_source


def make(filters: dict[str, dict[str, Any]],
         rules: list[tuple[str, str, tuple[str, ...]]],
         case_sensitive: bool = True) -> BinlogFilter:
    task = Task.model_validate({
        "name": "bf", "task_mode": "incremental",
        "target_config": {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""},
        "binlog_filter_rule": filters,
        "table_migrate_rule": [
            {"source": {"source_name": "s1", "schema": s, "table": t},
             "binlog_filter_rule": list(names)} for s, t, names in rules],
        "source_config": {"source_conf": [{"source_name": "s1"}]},
    })
    return BinlogFilter(task, router_for_source(task, "s1", case_sensitive))


def dml_skips(f: BinlogFilter, schema: str = "db", table: str = "t") -> set[str]:
    return {k for k in ("insert", "update", "delete") if f.skip_dml(schema, table, k)}


@pytest.mark.parametrize(("events", "dml", "ddl_skipped"), [
    (["all"], {"insert", "update", "delete"}, True),
    (["all dml"], {"insert", "update", "delete"}, False),
    (["all ddl"], set(), True),
    (["none"], set(), False),
    (["none dml", "insert"], set(), False),  # first deciding entry wins, as in DM
    (["insert", "none dml"], {"insert"}, False),
    (["none ddl", "all dml"], {"insert", "update", "delete"}, False),
    (["none dml", "all ddl"], set(), True),
    (["delete", "truncate table"], {"delete"}, False),
    (["DELETE", "Alter Table"], {"delete"}, True),  # case-insensitive names
    (["incompatible ddl changes"], set(), False),  # alter table is not incompatible
    ([], set(), False),
])
def test_event_sets(events: list[str], dml: set[str], ddl_skipped: bool) -> None:
    f = make({"r": {"ignore_event": events}}, [("db", "t", ("r",))])
    assert dml_skips(f) == dml
    assert f.skip_ddl("db", "t", "alter table", "ALTER TABLE t ADD c INT") is ddl_skipped


def test_ddl_event_types() -> None:
    f = make({"r": {"ignore_event": ["truncate table", "drop schema", "create view"]}},
             [("db", "*", ("r",))])
    assert f.skip_ddl("db", "t", "truncate table", "TRUNCATE t")
    assert not f.skip_ddl("db", "t", "drop table", "DROP TABLE t")
    assert f.skip_ddl("db", "", "drop database", "DROP DATABASE db")  # alias in the rule
    assert f.skip_ddl("db", "", "drop schema", "DROP SCHEMA db")  # alias in the call
    assert f.skip_ddl("db", "v", "create view", "CREATE VIEW v AS SELECT 1")
    assert dml_skips(f) == set()
    g = make({"r": {"ignore_event": ["incompatible ddl changes"]}}, [("db", "*", ("r",))])
    assert g.skip_ddl("db", "t", "drop table", "DROP TABLE t")
    assert g.skip_ddl("db", "t", "add column", "ALTER TABLE t ADD c INT")
    assert not g.skip_ddl("db", "t", "create table", "CREATE TABLE t (a INT)")


def test_ignore_sql() -> None:
    f = make({"r": {"ignore_sql": ["^DROP\\s+PROCEDURE", "add\\s+column\\s+`?tmp"]}},
             [("db", "*", ("r",))])
    assert f.skip_ddl("db", "", "", "drop  procedure p")  # case-insensitive
    assert f.skip_ddl("db", "t", "alter table", "ALTER TABLE t ADD COLUMN `tmp_x` INT")
    assert not f.skip_ddl("db", "t", "alter table", "ALTER TABLE t ADD COLUMN c INT")
    assert not f.skip_ddl("db", "t", "", "CREATE PROCEDURE p() BEGIN END")
    # SQL patterns never touch row events.
    assert dml_skips(f) == set()


def test_scoping_by_rules() -> None:
    f = make({"nodel": {"ignore_event": ["delete"]}, "noins": {"ignore_event": ["insert"]}},
             [("db_*", "t_*", ("nodel",)), ("db_1", "*", ("noins",)), ("other", "*", ())])
    assert dml_skips(f, "db_1", "t_1") == {"insert", "delete"}
    assert dml_skips(f, "db_2", "t_1") == {"delete"}
    assert dml_skips(f, "db_1", "x") == {"insert"}
    assert dml_skips(f, "other", "t_1") == set()
    assert dml_skips(f, "nomatch", "t") == set()
    assert dml_skips(f, "mysql", "t_1") == set()


def test_database_level_ddl_matches_schema_pattern() -> None:
    f = make({"nodrop": {"ignore_event": ["drop database"]},
              "nocreate": {"ignore_event": ["create database"]}},
             [("db_*", "t_*", ("nodrop",)), ("x", "", ("nocreate",))])
    assert f.skip_ddl("db_1", "", "drop database", "DROP DATABASE db_1")
    assert not f.skip_ddl("db_1", "", "create database", "CREATE DATABASE db_1")
    assert f.skip_ddl("x", "", "create database", "CREATE DATABASE x")
    assert not f.skip_ddl("y", "", "drop database", "DROP DATABASE y")
    assert not f.skip_ddl("mysql", "", "drop database", "DROP DATABASE mysql")


def test_case_insensitive_router() -> None:
    f = make({"r": {"ignore_event": ["insert"]}}, [("DB", "T", ("r",))], case_sensitive=False)
    assert f.skip_dml("db", "t", "insert")
    g = make({"r": {"ignore_event": ["insert"]}}, [("DB", "T", ("r",))])
    assert not g.skip_dml("db", "t", "insert")


def test_no_rules_fast_path() -> None:
    f = make({}, [("db", "*", ())])
    assert not f.skip_dml("db", "t", "insert")
    assert not f.skip_ddl("db", "t", "drop table", "DROP TABLE t")


def test_invalid_event_is_config_error() -> None:
    with pytest.raises(DMError) as info:
        make({"r": {"ignore_event": ["insertt"]}}, [("db", "*", ("r",))])
    assert info.value.code == 20001 and "insertt" in info.value.message


def test_invalid_regex_is_config_error() -> None:
    with pytest.raises(DMError) as info:
        make({"r": {"ignore_sql": ["^DROP("]}}, [("db", "*", ("r",))])
    assert info.value.code == 20001 and "^DROP(" in info.value.message


def test_invalid_rule_reported_even_when_unused() -> None:
    with pytest.raises(DMError):
        make({"r": {"ignore_event": ["bogus"]}}, [("db", "*", ())])


def test_unknown_filter_name_from_router() -> None:
    task = Task.model_validate({
        "name": "bf", "task_mode": "incremental",
        "target_config": {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""},
        "table_migrate_rule": [{"source": {"source_name": "s1", "schema": "db", "table": "*"}}],
        "source_config": {"source_conf": [{"source_name": "s1"}]},
    })
    router = TableRouter([RouteRule("db", "*", filter_names=("missing",))])
    with pytest.raises(DMError) as info:
        BinlogFilter(task, router)
    assert info.value.code == 49001 and "missing" in info.value.message


def test_skip_ddl_rejects_non_ddl_event_type() -> None:
    f = make({"r": {"ignore_event": ["all"]}}, [("db", "*", ("r",))])
    for bad in ("insert", "all ddl", "nonsense"):
        with pytest.raises(ValueError):
            f.skip_ddl("db", "t", bad, "x")


def test_normalize_event() -> None:
    assert normalize_event(" Create Schema ") == "create database"
    assert normalize_event("add column") == "add column"
    assert normalize_event("alter procedure") is None
