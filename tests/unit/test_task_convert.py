"""domain.task_convert: OpenAPI Task ⇄ DM YAML task file (pure)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from domain.task_convert import task_to_config, task_to_yaml, yaml_to_task
from domain.task_models import Task
from errors import DMError

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def rich_task() -> dict[str, Any]:
    return {
        "name": "task-Ë!s`t", "task_mode": "all", "shard_mode": "optimistic",
        "strict_optimistic_shard_mode": True, "meta_schema": "dm_meta",
        "timezone": "Asia/Shanghai", "enhance_online_schema_change": False,
        "on_duplicate": "ignore",
        "target_config": {
            "host": "10.0.0.9", "port": 4000, "user": "root", "password": "pw: '#x",
            "session": {"foreign_key_checks": "0"},
            "security": {"ssl_ca_content": PEM, "ssl_cert_content": PEM,
                         "ssl_key_content": "key", "cert_allowed_cn": ["dm"]},
        },
        "binlog_filter_rule": {
            "no-drop": {"ignore_sql": ["^DROP\\s+TABLE"], "ignore_event": []},
            "no-truncate": {"ignore_event": ["truncate table"]},
            "no-drop-2": {"ignore_event": ["drop database"]},  # looks derived, is not
        },
        "table_migrate_rule": [
            {"source": {"source_name": "mysql-01", "schema": "shard_*", "table": "orders_?"},
             "target": {"schema": "merged", "table": "orders"},
             "binlog_filter_rule": ["no-truncate", "no-drop"]},
            {"source": {"source_name": "mysql-01", "schema": "app", "table": "*"},
             "binlog_filter_rule": ["no-drop", "no-drop-2"]},
            {"source": {"source_name": "mysql-01", "schema": "logs", "table": "l*"},
             "target": {"table": "all_logs"}},
            {"source": {"source_name": "mysql-02", "schema": "shard_*", "table": "orders_?"},
             "target": {"schema": "merged", "table": "orders"},
             "binlog_filter_rule": ["no-drop"]},
            {"source": {"source_name": "mysql-02", "schema": "x", "table": "y"},
             "target": {"schema": ""}},
        ],
        "source_config": {
            "full_migrate_conf": {
                "export_threads": 8, "import_threads": 12, "data_dir": "/data/dump",
                "consistency": "flush", "import_mode": "logical", "sorting_dir": "/sort",
                "disk_quota": "10GB", "checksum": "optional", "analyze": "off",
                "range_concurrency": 2, "compress-kv-pairs": "gzip", "pd_addr": "pd:2379",
                "security": {"ssl_ca_content": PEM, "ssl_cert_content": PEM,
                             "ssl_key_content": "k2"},
                "on_duplicate_logical": "error", "on_duplicate_physical": "manual",
            },
            "incr_migrate_conf": {"repl_threads": 32, "repl_batch": 200, "safe_mode": True},
            "source_conf": [
                {"source_name": "mysql-01", "binlog_name": "mysql-bin.000003",
                 "binlog_pos": 1979, "binlog_gtid": "0-101-5"},
                {"source_name": "mysql-02"},
            ],
        },
        "ignore_checking_items": ["version", "auto_increment_ID"],
    }


def minimal_task() -> dict[str, Any]:
    return {
        "name": "t", "task_mode": "incremental",
        "target_config": {"host": "h", "port": 3306, "user": "u", "password": ""},
        "table_migrate_rule": [{"source": {"source_name": "s", "schema": "db", "table": "*"}}],
        "source_config": {"source_conf": [{"source_name": "s"}]},
    }


@pytest.mark.parametrize("data", [rich_task(), minimal_task()], ids=["rich", "minimal"])
def test_round_trip(data: dict[str, Any]) -> None:
    task = Task.model_validate(data)
    text = task_to_yaml(task)
    back = yaml_to_task(text)
    assert back == task
    assert back.dump() == task.dump()
    assert task_to_yaml(back) == text  # and the file is stable


def test_yaml_has_dm_layout() -> None:
    doc = yaml.safe_load(task_to_yaml(Task.model_validate(rich_task())))
    assert doc == task_to_config(Task.model_validate(rich_task()))
    assert doc["task-mode"] == "all" and doc["shard-mode"] == "optimistic"
    assert doc["online-ddl"] is False and doc["meta-schema"] == "dm_meta"
    assert doc["target-database"]["session"] == {"foreign_key_checks": "0"}
    assert doc["target-database"]["security"]["ssl-ca-bytes"] == PEM
    inst1, inst2 = doc["mysql-instances"]
    assert inst1["source-id"] == "mysql-01"
    assert inst1["meta"] == {"binlog-name": "mysql-bin.000003", "binlog-pos": 1979,
                             "binlog-gtid": "0-101-5"}
    assert inst1["mydumper-config-name"] == inst1["loader-config-name"] == "global"
    assert "meta" not in inst2
    assert doc["routes"][inst1["route-rules"][0]] == {
        "schema-pattern": "shard_*", "table-pattern": "orders_?", "target-schema": "merged",
        "target-table": "orders"}
    assert doc["block-allow-list"][inst1["block-allow-list"]]["do-tables"][0] == {
        "db-name": "shard_*", "tbl-name": "orders_?"}
    # One filter per (template, patterns), shared between sources with the same patterns.
    assert inst1["filter-rules"] == ["no-truncate", "no-drop", "no-drop-3", "no-drop-2"]
    assert inst2["filter-rules"] == ["no-drop"]
    # `no-drop-2` is a template of its own, so the second use of `no-drop` is `no-drop-3`.
    assert doc["filters"]["no-drop-3"] == {"schema-pattern": "app", "table-pattern": "*",
                                           "sql-pattern": ["^DROP\\s+TABLE"], "events": [],
                                           "action": "Ignore"}
    assert doc["filters"]["no-drop-2"]["events"] == ["drop database"]
    assert doc["mydumpers"]["global"] == {"threads": 8, "extra-args": "--consistency flush"}
    loader = doc["loaders"]["global"]
    assert loader["pool-size"] == 12 and loader["dir"] == "/data/dump"
    assert loader["on-duplicate"] == "ignore" and loader["on-duplicate-logical"] == "error"
    assert doc["syncers"]["global"] == {"worker-count": 32, "batch": 200, "safe-mode": True}
    assert doc["ignore-checking-items"] == ["version", "auto_increment_ID"]


def whole_schema_task() -> dict[str, Any]:
    data = minimal_task()
    data["binlog_filter_rule"] = {"f": {"ignore_event": ["drop database"]}}
    data["table_migrate_rule"] = [
        {"source": {"source_name": "s", "schema": "db", "table": ""},
         "target": {"schema": "db2"}, "binlog_filter_rule": ["f"]},
        {"source": {"source_name": "s", "schema": "other", "table": ""}},
        {"source": {"source_name": "s", "schema": "db", "table": "t1"},
         "target": {"schema": "x"}},
    ]
    return data


def test_whole_schema_rules_use_do_dbs() -> None:
    task = Task.model_validate(whole_schema_task())
    doc = task_to_config(task)
    assert doc["block-allow-list"]["bw-rule-1"] == {
        "do-dbs": ["db", "other"], "do-tables": [{"db-name": "db", "tbl-name": "t1"}]}
    assert doc["routes"]["route-rule-1"] == {"schema-pattern": "db", "target-schema": "db2"}
    assert doc["filters"]["f"] == {"schema-pattern": "db", "events": ["drop database"],
                                   "action": "Ignore"}
    assert yaml_to_task(task_to_yaml(task)) == task


def test_interleaved_rules_are_grouped_by_source() -> None:
    data = minimal_task()
    data["source_config"]["source_conf"] = [{"source_name": "a"}, {"source_name": "b"}]
    data["table_migrate_rule"] = [
        {"source": {"source_name": "b", "schema": "b1", "table": "*"}},
        {"source": {"source_name": "a", "schema": "a1", "table": "*"}},
        {"source": {"source_name": "b", "schema": "b2", "table": "*"}},
    ]
    back = yaml_to_task(task_to_yaml(Task.model_validate(data)))
    assert [(r.source.source_name, r.source.schema_) for r in back.table_migrate_rule] == [
        ("a", "a1"), ("b", "b1"), ("b", "b2")]


def test_unused_filter_rules_are_dropped() -> None:
    data = minimal_task()
    data["binlog_filter_rule"] = {"unused": {"ignore_event": ["all dml"]}}
    assert yaml_to_task(task_to_yaml(Task.model_validate(data))).binlog_filter_rule is None


def test_unknown_filter_name_in_task() -> None:
    data = minimal_task()
    data["table_migrate_rule"][0]["binlog_filter_rule"] = ["ghost"]
    with pytest.raises(DMError) as info:
        task_to_yaml(Task.model_validate(data))
    assert "ghost" in info.value.message


# A task file shaped like DM's documentation (task-configuration-file-full).
DM_DOC_TASK = """
# ********* Basic configuration *********
name: test
task-mode: all
shard-mode: "pessimistic"
meta-schema: "dm_meta"
timezone: "Asia/Shanghai"
case-sensitive: false
online-ddl: true
online-ddl-scheme: "gh-ost"
clean-dump-file: true
collation_compatible: "loose"
ignore-checking-items: []

target-database:
  host: "192.168.0.1"
  port: 4000
  user: "root"
  password: 123456
  max-allowed-packet: 67108864
  session:
    sql_mode: "ANSI_QUOTES,NO_ZERO_IN_DATE,NO_ZERO_DATE"
    tidb_skip_utf8_check: 1
    foreign_key_checks: 1

routes:
  route-rule-1:
    schema-pattern: "test_*"
    table-pattern: "t_*"
    target-schema: "test"
    target-table: "t"
    extract-table:
      table-regexp: "t_(.*)"
      target-column: "c_table"
  route-rule-2:
    schema-pattern: "test_*"
    target-schema: "test"

filters:
  filter-rule-1:
    schema-pattern: "test_*"
    table-pattern: "t_*"
    events: ["truncate table", "drop table"]
    action: Ignore
  filter-rule-2:
    schema-pattern: "user"
    events: ["drop database"]
    sql-pattern: ["^DROP\\\\s+DATABASE"]
    action: Ignore

expression-filter:
  even_c:
    schema: "expr_filter"
    table: "tbl"
    insert-value-expr: "c % 2 = 0"

block-allow-list:
  bw-rule-1:
    do-dbs: ["~^test.*", "user"]
    ignore-dbs: ["mysql", "account"]
    do-tables:
    - db-name: "~^test.*"
      tbl-name: "~^t.*"
    - db-name: "user"
      tbl-name: "information"
  bw-rule-2:
    ignore-tables:
    - db-name: "user"
      tbl-name: "log"

mydumpers:
  global:
    threads: 4
    chunk-filesize: 64
    extra-args: "--consistency auto"

loaders:
  global:
    pool-size: 16
    import-mode: "logical"
    on-duplicate-logical: "replace"
    on-duplicate-physical: "none"
    disk-quota-physical: "0"
    checksum-physical: "required"
    analyze: "optional"
    range-concurrency: 0
    compress-kv-pairs: ""
    pd-addr: "192.168.0.1:2379"
    dir: "./dumped_data"

syncers:
  global:
    worker-count: 16
    batch: 100
    enable-ansi-quotes: true
    safe-mode: false
    safe-mode-duration: "60s"
    compact: false
    multiple-rows: false

mysql-instances:
  -
    source-id: "mysql-replica-01"
    meta:
      binlog-name: binlog.000001
      binlog-pos: 4
      binlog-gtid: "03fc0263-28c7-11e7-a653-6c0b84d59f30:1-7041423"
    route-rules: ["route-rule-1", "route-rule-2"]
    filter-rules: ["filter-rule-1", "filter-rule-2"]
    block-allow-list: "bw-rule-1"
    expression-filters: ["even_c"]
    mydumper-config-name: "global"
    loader-config-name: "global"
    syncer-config-name: "global"
  -
    source-id: "mysql-replica-02"
    mydumper-thread: 4
    loader-thread: 16
    syncer-thread: 16
"""


def test_reads_dm_documentation_task_file() -> None:
    task = yaml_to_task(DM_DOC_TASK)
    assert (task.name, task.task_mode, task.shard_mode) == ("test", "all", "pessimistic")
    assert task.meta_schema == "dm_meta" and task.timezone == "Asia/Shanghai"
    assert task.enhance_online_schema_change is True
    assert task.ignore_checking_items == []
    tc = task.target_config
    assert (tc.host, tc.port, tc.user, tc.password) == ("192.168.0.1", 4000, "root", "123456")
    assert tc.session is not None and tc.session.foreign_key_checks == "1"
    s1, s2 = task.source_config.source_conf
    assert (s1.source_name, s1.binlog_name, s1.binlog_pos) == ("mysql-replica-01",
                                                               "binlog.000001", 4)
    assert s1.binlog_gtid == "03fc0263-28c7-11e7-a653-6c0b84d59f30:1-7041423"
    assert s2.source_name == "mysql-replica-02" and s2.binlog_name is None

    rules = [(r.source.source_name, r.source.schema_, r.source.table,
              (r.target.schema_, r.target.table) if r.target else None,
              r.binlog_filter_rule) for r in task.table_migrate_rule]
    # Every route and allow entry is a rule (as in DM's converter); whole-schema rules come
    # first. A filter attaches to the rule with its very patterns (else to those its
    # patterns select): user.information is still filtered by filter-rule-2 at run time,
    # through the whole-schema `user` rule that matches it too.
    assert rules == [
        ("mysql-replica-01", "test_*", "", ("test", None), None),
        ("mysql-replica-01", "~^test.*", "", None, None),
        ("mysql-replica-01", "user", "", None, ["filter-rule-2"]),
        ("mysql-replica-01", "test_*", "t_*", ("test", "t"), ["filter-rule-1"]),
        ("mysql-replica-01", "~^test.*", "~^t.*", None, None),
        ("mysql-replica-01", "user", "information", None, None),
    ]
    assert task.binlog_filter_rule is not None
    assert task.binlog_filter_rule["filter-rule-1"].ignore_event == ["truncate table",
                                                                     "drop table"]
    assert task.binlog_filter_rule["filter-rule-2"].ignore_sql == ["^DROP\\s+DATABASE"]
    full = task.source_config.full_migrate_conf
    assert full is not None
    assert (full.export_threads, full.import_threads, full.consistency) == (4, 16, "auto")
    assert (full.data_dir, full.import_mode, full.pd_addr) == ("./dumped_data", "logical",
                                                              "192.168.0.1:2379")
    assert (full.checksum, full.analyze, full.disk_quota) == ("required", "optional", "0")
    assert full.on_duplicate_logical == "replace" and task.on_duplicate == "replace"
    incr = task.source_config.incr_migrate_conf
    assert incr is not None and (incr.repl_threads, incr.repl_batch, incr.safe_mode) == (
        16, 100, False)
    # What was read converts back and forth without further change.
    assert yaml_to_task(task_to_yaml(task)) == task


def test_instance_thread_shortcuts_and_legacy_names() -> None:
    text = """
name: legacy
task-mode: full
is-sharding: true
target-database: {host: h, port: "3306", user: u}
black-white-list:
  bw: {do-dbs: [db]}
mysql-instances:
  - source-id: s1
    black-white-list: bw
    mydumper-thread: 2
    loader-thread: 3
    syncer-thread: 5
loaders:
  unused: {pool-size: 99}
"""
    task = yaml_to_task(text)
    assert task.shard_mode == "pessimistic"
    assert task.target_config.port == 3306 and task.target_config.password == ""
    full = task.source_config.full_migrate_conf
    incr = task.source_config.incr_migrate_conf
    assert full is not None and (full.export_threads, full.import_threads) == (2, 3)
    assert incr is not None and incr.repl_threads == 5
    # A whole schema (do-dbs) is an empty table pattern, as DM's converter writes it.
    assert [(r.source.schema_, r.source.table) for r in task.table_migrate_rule] == [
        ("db", "")]


@pytest.mark.parametrize(("text", "code", "needle"), [
    ("name: [unclosed", 20005, "not valid YAML"),
    ("- just\n- a list\n", 20005, "YAML mapping"),
    ("task-mode: all\n", 20001, "`name` is required"),
    ("name: x\ntarget-database: {host: h, port: 1, user: u}\n"
     "mysql-instances: [{source-id: s}]\n", 20001, "`task-mode` is required"),
    ("name: x\ntask-mode: all\nmysql-instances: [{source-id: s}]\n", 20001,
     "`target-database` is required"),
    ("name: x\ntask-mode: all\ntarget-database: {port: 1, user: u}\n"
     "mysql-instances: [{source-id: s}]\n", 20001, "`target-database.host` is required"),
    ("name: x\ntask-mode: all\ntarget-database: {host: h, port: abc, user: u}\n"
     "mysql-instances: [{source-id: s}]\n", 20001, "`target-database.port` must be an integer"),
    ("name: x\ntask-mode: all\ntarget-database: {host: h, port: 1, user: u}\n", 20001,
     "`mysql-instances` is required"),
    ("name: x\ntask-mode: all\ntarget-database: {host: h, port: 1, user: u}\n"
     "mysql-instances: []\n", 20001, "at least one source"),
    ("name: x\ntask-mode: all\ntarget-database: {host: h, port: 1, user: u}\n"
     "mysql-instances: [{meta: {}}]\n", 20001, "`mysql-instances[0].source-id` is required"),
    ("name: x\ntask-mode: all\ntarget-database: {host: h, port: 1, user: u}\n"
     "mysql-instances: [{source-id: s, route-rules: [r9]}]\n", 20001,
     "routes `r9` used by mysql-instance `s` is not defined"),
    ("name: x\ntask-mode: all\ntarget-database: {host: h, port: 1, user: u}\n"
     "filters: {f: {schema-pattern: db, events: [all dml], action: Do}}\n"
     "mysql-instances: [{source-id: s, filter-rules: [f]}]\n", 20001, "action `Do`"),
    ("name: x\ntask-mode: all\ntarget-database: {host: h, port: 1, user: u,\n"
     "  security: {ssl-ca: /etc/ca.pem}}\nmysql-instances: [{source-id: s}]\n", 20001,
     "ssl-ca-bytes"),
    ("name: x\ntask-mode: everything\ntarget-database: {host: h, port: 1, user: u}\n"
     "mysql-instances: [{source-id: s}]\n", 20001, "task_mode"),
])
def test_invalid_files(text: str, code: int, needle: str) -> None:
    with pytest.raises(DMError) as info:
        yaml_to_task(text)
    assert info.value.code == code
    assert needle in info.value.message
    assert str(info.value).startswith(f"[code={code}:class=config:")


def test_round_trip_does_not_mutate_input() -> None:
    data = rich_task()
    task = Task.model_validate(copy.deepcopy(data))
    task_to_yaml(task)
    assert task == Task.model_validate(data)
