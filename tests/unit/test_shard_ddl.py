"""Shard merge DDL decisions (mysqlkit.sync.shard_ddl) and DDL.without_alters, without a server."""

from __future__ import annotations

import pytest

from errors import DMError
from mysqlkit.schema.ddl import DDL, parse_ddl
from mysqlkit.schema.tracker import SchemaTracker, TableSchema
from mysqlkit.sync.shard_ddl import decide

BASE = "CREATE TABLE t (id INT NOT NULL, v VARCHAR(20), c INT, PRIMARY KEY (id), KEY ix_v (v))"


def table(sql: str = BASE, name: str = "t") -> TableSchema:
    return SchemaTracker().set_table("s", name, sql)


def one(sql: str) -> DDL:
    [ddl] = parse_ddl(sql, "s")
    return ddl


def run(sql: str, target: TableSchema | None, peers: list[TableSchema] | None) -> str | None:
    d = decide(one(sql), target, peers)
    return None if d.ddl is None else d.ddl.routed(lambda s, t: ("m", "merged"))


# SHOW CREATE TABLE of the merged table, as the target prints it.
TARGET = table("CREATE TABLE `merged` (\n  `id` int(11) NOT NULL,\n  `v` varchar(20) DEFAULT NULL,"
               "\n  `c` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `ix_v` (`v`)\n)"
               " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")


def test_destructive_table_ddl_of_a_shard_is_not_run() -> None:
    for sql in ("DROP TABLE s.t", "TRUNCATE TABLE s.t", "RENAME TABLE s.t TO s.t_old",
                "DROP DATABASE s"):
        d = decide(one(sql), TARGET, [table(name="t2")])
        assert d.ddl is None and d.skipped, sql


def test_create_table_only_when_the_merged_table_is_missing() -> None:
    assert run(BASE, TARGET, []) is None
    assert run(BASE, None, []) is not None


def test_add_column_once_then_skipped_and_a_type_clash_is_a_conflict() -> None:
    assert run("ALTER TABLE t ADD COLUMN n INT", TARGET, [table(name="t2")]) == (
        "ALTER TABLE `m`.`merged` ADD COLUMN n INT")
    assert run("ALTER TABLE t ADD COLUMN c INT", TARGET, []) is None  # int vs int(11)
    with pytest.raises(DMError) as exc:
        run("ALTER TABLE t ADD COLUMN c VARCHAR(10)", TARGET, [])
    assert exc.value.code == 36102 and "varchar(10)" in str(exc.value).lower()


def test_drop_column_waits_for_the_last_shard() -> None:
    other_has_c = table(name="t2")
    other_without_c = table(BASE.replace(" c INT,", ""), name="t2")
    sql = "ALTER TABLE t DROP COLUMN c"
    assert run(sql, TARGET, [other_has_c]) is None
    assert run(sql, TARGET, None) is None  # a source whose shards are not known yet
    assert run(sql, TARGET, [other_without_c]) == "ALTER TABLE `m`.`merged` DROP COLUMN c"
    no_c = table("CREATE TABLE m (id INT NOT NULL PRIMARY KEY, v VARCHAR(20))")
    assert run(sql, no_c, []) is None  # dropped already


def test_mixed_alter_keeps_only_what_applies() -> None:
    sql = "ALTER TABLE t ADD COLUMN c INT, ADD COLUMN n2 INT AFTER v, DROP COLUMN c, " \
          "ADD INDEX ix_v (v), ENGINE=InnoDB"
    got = run(sql, TARGET, [table(name="t2")])
    assert got == "ALTER TABLE `m`.`merged` ADD COLUMN n2 INT AFTER v, ENGINE=InnoDB"


def test_indexes() -> None:
    assert run("CREATE INDEX ix_v ON t (v)", TARGET, []) is None
    assert run("CREATE INDEX ix_c ON t (c)", TARGET, []) is not None
    assert run("ALTER TABLE t ADD PRIMARY KEY (id)", TARGET, []) is None
    assert run("ALTER TABLE t DROP INDEX ix_v", TARGET, [table(name="t2")]) is None
    assert run("ALTER TABLE t DROP INDEX ix_v", TARGET, []) is not None
    assert run("DROP INDEX ix_v ON t", TARGET, [table(name="t2")]) is None
    assert run("DROP INDEX ix_nope ON t", TARGET, []) is None


def test_rename_column_is_a_conflict_unless_the_shard_is_alone() -> None:
    for sql in ("ALTER TABLE t RENAME COLUMN v TO w", "ALTER TABLE t CHANGE v w VARCHAR(20)"):
        with pytest.raises(DMError) as exc:
            run(sql, TARGET, [table(name="t2")])
        assert exc.value.code == 36102
        assert run(sql, TARGET, []) is not None
    # CHANGE that keeps the name is a MODIFY; run unless the target is already so.
    assert run("ALTER TABLE t CHANGE v v VARCHAR(40)", TARGET, [table(name="t2")]) is not None


def test_without_alters_keeps_text_and_routes_names() -> None:
    ddl = one("ALTER TABLE t ADD COLUMN (a INT, b INT), ADD CONSTRAINT fk FOREIGN KEY (a) "
              "REFERENCES u (id), DROP COLUMN z /* why */")
    route = {("s", "t"): ("m", "merged"), ("s", "u"): ("m", "u2")}

    def r(s: str, t: str) -> tuple[str, str] | None:
        return route.get((s, t))

    kept = ddl.without_alters([0])  # `a` shares its part with `b`: the part stays
    assert kept is not None and kept.routed(r) == ddl.routed(r)
    kept = ddl.without_alters([0, 1, 3])
    assert kept is not None and kept.routed(r) == (
        "ALTER TABLE `m`.`merged` ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES `m`.`u2` (id) "
        "/* why */")
    kept = ddl.without_alters([2])
    assert kept is not None and kept.routed(r) == (
        "ALTER TABLE `m`.`merged` ADD COLUMN (a INT, b INT), DROP COLUMN z /* why */")
    assert ddl.without_alters(range(4)) is None


def test_modify_widening_runs_at_once_narrowing_waits_for_every_shard() -> None:
    peer_old = table(name="t2")  # v VARCHAR(20), c INT
    assert run("ALTER TABLE t MODIFY v VARCHAR(40)", TARGET, [peer_old]) is not None
    assert run("ALTER TABLE t MODIFY c BIGINT", TARGET, [peer_old]) is not None
    assert run("ALTER TABLE t MODIFY c INT UNSIGNED", TARGET, [peer_old]) is None
    d = decide(one("ALTER TABLE t MODIFY v VARCHAR(10)"), TARGET, [peer_old])
    assert d.ddl is None and "until every shard" in d.skipped[0]
    assert run("ALTER TABLE t MODIFY v VARCHAR(20) NOT NULL", TARGET, [peer_old]) is None
    assert run("ALTER TABLE t MODIFY v VARCHAR(10)", TARGET, None) is None
    # The last shard to narrow it: now it runs.
    peer_new = table(BASE.replace("v VARCHAR(20)", "v VARCHAR(10)"), name="t2")
    assert run("ALTER TABLE t MODIFY v VARCHAR(10)", TARGET, [peer_new]) == (
        "ALTER TABLE `m`.`merged` MODIFY v VARCHAR(10)")
    assert run("ALTER TABLE t MODIFY v TEXT", TARGET, [peer_old]) is None  # another type
