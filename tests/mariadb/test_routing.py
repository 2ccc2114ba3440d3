"""mysqlkit.routing: selection and routing of one source's tables (pure), and
migrate_targets against a real source."""

from __future__ import annotations

from typing import Any

import pytest

from domain.task_models import Task
from errors import DMError
from mysqlkit.routing import (
    Pattern,
    RouteRule,
    TableRef,
    TableRouter,
    is_system_schema,
    migrate_targets,
    router_for_source,
)
from mysqlkit.sqlquote import quote_ident
from mysqlkit.upstream import ConnConfig
from testbed.mariadb import MariaDBServer

# --- patterns ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("db", "db", True),
    ("db", "db1", False),
    ("db*", "db", True),
    ("db*", "db_1", True),
    ("db?", "db1", True),
    ("db?", "db12", False),
    ("*", "", True),
    ("a.b", "a.b", True),
    ("a.b", "aXb", False),  # regex metacharacters are literal
    ("db-[1]", "db-[1]", True),
    ("DB", "db", False),  # case-sensitive by default
    ("~^test.*", "test_1", True),  # DM's regex form
    ("~^test.*", "mytest", False),
    ("~test", "mytest_x", True),  # searched, not anchored (Go's MatchString)
])
def test_pattern(pattern: str, name: str, expected: bool) -> None:
    assert Pattern(pattern).matches(name) is expected


def test_pattern_case_insensitive_option() -> None:
    assert Pattern("DB_*", case_sensitive=False).matches("db_1")


def test_bad_regex_is_config_error() -> None:
    with pytest.raises(DMError) as info:
        Pattern("~(")
    assert info.value.code == 20001 and "~(" in info.value.message


# --- router ------------------------------------------------------------------------------------


def test_route_keeps_names_without_target() -> None:
    router = TableRouter([("db", "*", None, None, ())])
    assert router.route("db", "t") == TableRef("db", "t")
    assert router.route("other", "t") is None


def test_route_with_targets() -> None:
    router = TableRouter([
        RouteRule("shard_?", "orders_*", "merged", "orders"),
        RouteRule("app", "users", "app2"),  # schema only: table name kept
        RouteRule("logs", "*", "", "all_logs"),  # empty target schema keeps the schema
    ])
    assert router.route("shard_1", "orders_2024") == TableRef("merged", "orders")
    assert router.route("shard_12", "orders_2024") is None
    assert router.route("app", "users") == TableRef("app2", "users")
    assert router.route("logs", "x") == TableRef("logs", "all_logs")


def test_first_routing_rule_wins() -> None:
    router = TableRouter([
        ("db", "t1", "first", None, ()),
        ("db", "t*", "second", None, ()),
    ])
    assert router.route("db", "t1") == TableRef("first", "t1")
    assert router.route("db", "t2") == TableRef("second", "t2")


def test_selection_is_a_union_and_routing_is_not_shadowed() -> None:
    # As DM: `db.*` selects, `db.t1 → x` still routes t1 although listed after.
    router = TableRouter([("db", "*", None, None, ()), ("db", "t1", "x", None, ())])
    assert router.route("db", "t1") == TableRef("x", "t1")
    assert router.route("db", "t2") == TableRef("db", "t2")


def test_table_level_rules_route_before_whole_schema_rules() -> None:
    # DM's table router: a rule with a table pattern beats a schema-level one.
    router = TableRouter([("db", "", "y", None, ()), ("db", "t1", "x", None, ())])
    assert router.route("db", "t1") == TableRef("x", "t1")
    assert router.route("db", "t2") == TableRef("y", "t2")


def test_system_schemas_are_never_migrated() -> None:
    router = TableRouter([("*", "*", None, None, ())])
    for schema in ("mysql", "information_schema", "INFORMATION_SCHEMA", "performance_schema",
                   "sys"):
        assert is_system_schema(schema)
        assert router.route(schema, "user") is None
        assert not router.may_select_schema(schema)
    assert router.route("mysql_app", "t") == TableRef("mysql_app", "t")


def test_rules_for_and_filter_names() -> None:
    router = TableRouter([
        ("db", "*", None, None, ("f1", "f2")),
        ("db", "t1", "x", None, ("f2", "f3")),
        ("other", "*", None, None, ("f4",)),
    ])
    assert [r.filter_names for r in router.rules_for("db", "t1")] == [("f1", "f2"), ("f2", "f3")]
    assert router.filter_names("db", "t1") == ("f1", "f2", "f3")
    assert router.filter_names("db", "t9") == ("f1", "f2")
    assert router.filter_names("nope", "t") == ()


def test_empty_table_pattern_selects_whole_schema() -> None:
    router = TableRouter([RouteRule("db", "")])
    assert router.route("db", "anything") == TableRef("db", "anything")


def test_tableref_str_quotes() -> None:
    assert str(TableRef("db-1", "t`x")) == "`db-1`.`t``x`"


# --- from a Task -------------------------------------------------------------------------------


def task_dict(**overrides: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "name": "t1", "task_mode": "all", "on_duplicate": "replace",
        "enhance_online_schema_change": True,
        "target_config": {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""},
        "binlog_filter_rule": {"no-drop": {"ignore_sql": ["^DROP"]}},
        "table_migrate_rule": [
            {"source": {"source_name": "s1", "schema": "db_*", "table": "t_*"},
             "target": {"schema": "merged", "table": "t"}, "binlog_filter_rule": ["no-drop"]},
            {"source": {"source_name": "s1", "schema": "plain", "table": "*"}},
            {"source": {"source_name": "s2", "schema": "db_*", "table": "t_*"},
             "target": {"schema": "merged"}},
        ],
        "source_config": {"source_conf": [{"source_name": "s1"}, {"source_name": "s2"}]},
    }
    task.update(overrides)
    return task


def test_router_for_source() -> None:
    task = Task.model_validate(task_dict())
    r1 = router_for_source(task, "s1")
    assert r1.route("db_1", "t_1") == TableRef("merged", "t")
    assert r1.route("plain", "x") == TableRef("plain", "x")
    assert r1.filter_names("db_1", "t_1") == ("no-drop",)
    r2 = router_for_source(task, "s2")
    assert r2.route("db_1", "t_1") == TableRef("merged", "t_1")
    assert r2.route("plain", "x") is None
    assert router_for_source(task, "s3").route("db_1", "t_1") is None


def test_router_for_source_rejects_unknown_filter_name() -> None:
    data = task_dict()
    data["table_migrate_rule"][2]["binlog_filter_rule"] = ["no-such-rule"]
    task = Task.model_validate(data)
    with pytest.raises(DMError) as info:
        router_for_source(task, "s1")  # any rule of the task is checked
    assert info.value.code == 49001
    assert "no-such-rule" in str(info.value)
    assert str(info.value).startswith("[code=49001:class=openapi")


# --- migrate_targets against source1 -----------------------------------------------------------


def cfg_of(server: MariaDBServer) -> ConnConfig:
    return ConnConfig(**server.conn_kwargs())


@pytest.mark.mariadb
async def test_migrate_targets_with_names_needing_quotes(source1: MariaDBServer) -> None:
    schemas = ["rt-db`1", "rt-db 2", "rt_plain"]
    for s in schemas:
        source1.execute(f"DROP DATABASE IF EXISTS {quote_ident(s)}")
        source1.execute(f"CREATE DATABASE {quote_ident(s)}")
    try:
        for s in schemas[:2]:
            for t in ("order-1", "order`2", "misc"):
                source1.execute(f"CREATE TABLE {quote_ident(s)}.{quote_ident(t)} (id INT)")
        source1.execute("CREATE TABLE `rt_plain`.`keep` (id INT PRIMARY KEY)")
        source1.execute("CREATE VIEW `rt_plain`.`v` AS SELECT 1 AS x")  # views never listed
        router = TableRouter([
            ("rt-db*", "order*", "rt-merged", "orders", ()),
            ("rt_plain", "*", None, None, ()),
        ])
        cfg = cfg_of(source1)
        pairs = await migrate_targets(cfg, router)
        assert pairs == [
            (TableRef("rt-db 2", "order-1"), TableRef("rt-merged", "orders")),
            (TableRef("rt-db 2", "order`2"), TableRef("rt-merged", "orders")),
            (TableRef("rt-db`1", "order-1"), TableRef("rt-merged", "orders")),
            (TableRef("rt-db`1", "order`2"), TableRef("rt-merged", "orders")),
            (TableRef("rt_plain", "keep"), TableRef("rt_plain", "keep")),
        ]
        assert await migrate_targets(cfg, router, schema_pattern="rt-db`*",
                                     table_pattern="*2") == [
            (TableRef("rt-db`1", "order`2"), TableRef("rt-merged", "orders"))]
        assert await migrate_targets(cfg, router, table_pattern="misc") == []
        assert await migrate_targets(cfg, TableRouter([("*", "*", None, None, ())]),
                                     schema_pattern="mysql") == []
    finally:
        for s in schemas:
            source1.execute(f"DROP DATABASE IF EXISTS {quote_ident(s)}")
