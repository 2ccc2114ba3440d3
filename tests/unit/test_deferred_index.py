"""mysqlkit.full.deferred_index without a database: which index lines of a SHOW CREATE TABLE
text are deferred, the text left to create, and the ALTER that adds them back."""

from __future__ import annotations

import pytest

from mysqlkit.full.deferred_index import (
    DeferredSplit,
    alter_add_indexes,
    index_name,
    referenced_tables,
    split_create,
)

TAIL = ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"

# MariaDB 10.11's SHOW CREATE TABLE of a table with every kind of index.
MANY = (
    "CREATE TABLE `t1` (\n"
    "  `id` int(11) NOT NULL,\n"
    "  `a` int(11) DEFAULT NULL,\n"
    "  `b``q` varchar(100) DEFAULT NULL,\n"
    "  `c` text DEFAULT NULL,\n"
    "  `d` date DEFAULT NULL,\n"
    "  `g` point NOT NULL,\n"
    "  PRIMARY KEY (`id`),\n"
    "  UNIQUE KEY `u1` (`d`),\n"
    "  KEY `k1` (`a`),\n"
    "  KEY `k``2` (`a`,`b``q`(10)) COMMENT 'it''s, (a) \\\\ comment',\n"
    "  KEY `k3` (`a` DESC) USING BTREE,\n"
    "  KEY `k4` (`c`(20)) IGNORED,\n"
    "  SPATIAL KEY `sp` (`g`),\n"
    "  KEY `k5` (`d`) USING HASH KEY_BLOCK_SIZE=8,\n"
    "  FULLTEXT KEY `ft` (`c`)\n"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci COMMENT='x,(y)'")


def test_plain_keys_are_deferred_verbatim_and_the_rest_kept() -> None:
    got = split_create(MANY)
    assert got.indexes == (
        "KEY `k1` (`a`)",
        "KEY `k``2` (`a`,`b``q`(10)) COMMENT 'it''s, (a) \\\\ comment'",
        "KEY `k3` (`a` DESC) USING BTREE",
        "KEY `k4` (`c`(20)) IGNORED",
        "KEY `k5` (`d`) USING HASH KEY_BLOCK_SIZE=8",
    )
    assert got.create_sql == (
        "CREATE TABLE `t1` (\n"
        "  `id` int(11) NOT NULL,\n"
        "  `a` int(11) DEFAULT NULL,\n"
        "  `b``q` varchar(100) DEFAULT NULL,\n"
        "  `c` text DEFAULT NULL,\n"
        "  `d` date DEFAULT NULL,\n"
        "  `g` point NOT NULL,\n"
        "  PRIMARY KEY (`id`),\n"
        "  UNIQUE KEY `u1` (`d`),\n"
        "  SPATIAL KEY `sp` (`g`),\n"
        "  FULLTEXT KEY `ft` (`c`)\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci COMMENT='x,(y)'")
    assert [index_name(d) for d in got.indexes] == ["k1", "k`2", "k3", "k4", "k5"]


def test_last_line_deferred_keeps_the_closing_layout() -> None:
    sql = ("CREATE TABLE `sbtest1` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n"
           "  `k` int(11) NOT NULL DEFAULT 0,\n  `c` char(120) NOT NULL DEFAULT '',\n"
           "  PRIMARY KEY (`id`),\n  KEY `k_1` (`k`)\n" + TAIL)
    got = split_create(sql)
    assert got == DeferredSplit(
        "CREATE TABLE `sbtest1` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n"
        "  `k` int(11) NOT NULL DEFAULT 0,\n  `c` char(120) NOT NULL DEFAULT '',\n"
        "  PRIMARY KEY (`id`)\n" + TAIL, ("KEY `k_1` (`k`)",))


@pytest.mark.parametrize("sql", [
    # a foreign key: InnoDB needs an index for it, nothing is deferred
    "CREATE TABLE `ch` (\n  `id` int(11) NOT NULL,\n  `pid` int(11) DEFAULT NULL,\n"
    "  `z` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `kz` (`z`),\n"
    "  KEY `fk1` (`pid`),\n  CONSTRAINT `fk1` FOREIGN KEY (`pid`) REFERENCES `p` (`id`) "
    "ON DELETE CASCADE\n" + TAIL,
    # system versioning refuses plain ALTERs
    "CREATE TABLE `sv` (\n  `id` int(11) NOT NULL,\n  `a` int(11) DEFAULT NULL,\n"
    "  PRIMARY KEY (`id`),\n  KEY `ka` (`a`)\n" + TAIL + " WITH SYSTEM VERSIONING",
    # not InnoDB
    "CREATE TABLE `my` (\n  `id` int(11) NOT NULL,\n  `a` int(11) DEFAULT NULL,\n"
    "  PRIMARY KEY (`id`),\n  KEY `ka` (`a`)\n) ENGINE=MyISAM DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE `noengine` (\n  `id` int(11) NOT NULL,\n  KEY `ka` (`id`)\n)",
    # nothing to defer
    "CREATE TABLE `u` (\n  `id` int(11) NOT NULL,\n  `a` int(11) DEFAULT NULL,\n"
    "  PRIMARY KEY (`id`),\n  UNIQUE KEY `ua` (`a`)\n" + TAIL,
    # not parsable with confidence
    "CREATE TABLE `bad` (\n  `id` int(11) NOT NULL,\n  KEY `ka` (`id`) COMMENT 'open\n" + TAIL,
    "CREATE TABLE `bad` (\n  `id` int(11) NOT NULL,\n  KEY `ka` (`id`)\n",
    "CREATE TABLE `bad` (\n  `id` int(11) NOT NULL, -- note\n  KEY `ka` (`id`)\n" + TAIL,
    "CREATE TABLE `bad` LIKE `other`",
    "CREATE TABLE `bad` AS SELECT 1",
    "CREATE VIEW `v` AS SELECT 1",
    "",
    # ANSI_QUOTES names: not the shape we know
    'CREATE TABLE "q" (\n  "id" int(11) NOT NULL,\n  "a" int(11) DEFAULT NULL,\n'
    '  PRIMARY KEY ("id"),\n  KEY "ka" ("a")\n' + TAIL,
])
def test_nothing_deferred_unless_certainly_safe(sql: str) -> None:
    assert split_create(sql) == DeferredSplit(sql, ())


def test_the_index_of_an_auto_increment_column_stays() -> None:
    sql = ("CREATE TABLE `ai` (\n  `a` int(11) NOT NULL,\n"
           "  `id` bigint(20) NOT NULL AUTO_INCREMENT,\n  `v` int(11) DEFAULT NULL,\n"
           "  PRIMARY KEY (`a`),\n  KEY `by_id` (`id`,`v`),\n  KEY `by_v` (`v`,`id`)\n"
           + TAIL + " AUTO_INCREMENT=10")
    got = split_create(sql)
    assert got.indexes == ("KEY `by_v` (`v`,`id`)",)
    assert "KEY `by_id` (`id`,`v`)\n)" in got.create_sql
    assert got.create_sql.endswith(TAIL + " AUTO_INCREMENT=10")


def test_other_shapes() -> None:
    # MySQL 8: functional key parts, invisible indexes in versioned comments, a
    # schema-qualified name with IF NOT EXISTS (a renamed statement), partitions.
    sql = ("CREATE TABLE IF NOT EXISTS `s`.`m8` (\n  `id` int NOT NULL,\n"
           "  `j` json DEFAULT NULL,\n  `e` enum('a,b','c)') DEFAULT NULL,\n"
           "  PRIMARY KEY (`id`),\n  KEY `f` ((cast(json_extract(`j`,_utf8mb4'$.x') as "
           "unsigned))),\n  KEY `inv` (`e`) /*!80000 INVISIBLE */,\n"
           "  INDEX `lower` (`e`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4\n"
           "/*!50100 PARTITION BY HASH (`id`)\nPARTITIONS 2 */")
    got = split_create(sql)
    assert got.indexes == (
        "KEY `f` ((cast(json_extract(`j`,_utf8mb4'$.x') as unsigned)))",
        "KEY `inv` (`e`) /*!80000 INVISIBLE */", "INDEX `lower` (`e`)")
    assert got.create_sql == (
        "CREATE TABLE IF NOT EXISTS `s`.`m8` (\n  `id` int NOT NULL,\n"
        "  `j` json DEFAULT NULL,\n  `e` enum('a,b','c)') DEFAULT NULL,\n"
        "  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4\n"
        "/*!50100 PARTITION BY HASH (`id`)\nPARTITIONS 2 */")
    # mydumper's schema file: comments before the statement; a CHECK constraint stays.
    sql = ("/*!40101 SET NAMES binary*/;\n/* x */ CREATE TABLE `ck` (\n"
           "  `id` int(11) NOT NULL,\n  `a` int(11) DEFAULT NULL CHECK (`a` > 0),\n"
           "  `b` int(11) DEFAULT NULL,\n  PRIMARY KEY (`id`),\n  KEY `kb` (`b`),\n"
           "  CONSTRAINT `c2` CHECK (`b` < 10)\n" + TAIL)
    # a SET statement first is not a CREATE TABLE head: left alone
    assert split_create(sql).indexes == ()
    got = split_create(sql[sql.index("/* x */"):])
    assert got.indexes == ("KEY `kb` (`b`)",)
    assert got.create_sql.endswith("  PRIMARY KEY (`id`),\n  CONSTRAINT `c2` CHECK "
                                   "(`b` < 10)\n" + TAIL)
    # strings with quotes, backslashes and parentheses in column defaults
    sql = ("CREATE TABLE `q` (\n  `a` varchar(10) DEFAULT 'x''),\\\\',\n"
           "  `b` varchar(10) DEFAULT \"(\\\"\",\n  KEY `ka` (`a`(3)),\n"
           "  KEY `kb` (`b`) COMMENT 'a\\nb'\n" + TAIL)
    got = split_create(sql)
    assert got.indexes == ("KEY `ka` (`a`(3))", "KEY `kb` (`b`) COMMENT 'a\\nb'")
    assert got.create_sql == ("CREATE TABLE `q` (\n  `a` varchar(10) DEFAULT 'x''),\\\\',\n"
                              "  `b` varchar(10) DEFAULT \"(\\\"\"\n" + TAIL)


def test_alter_and_names() -> None:
    assert alter_add_indexes("s`x", "t", ["KEY `a` (`a`)", "KEY `b``c` (`b`(4)) COMMENT 'z'"]) \
        == "ALTER TABLE `s``x`.`t` ADD KEY `a` (`a`), ADD KEY `b``c` (`b`(4)) COMMENT 'z'"
    with pytest.raises(ValueError):
        alter_add_indexes("s", "t", [])
    assert index_name("INDEX `x``y` (`a`)") == "x`y"
    with pytest.raises(ValueError):
        index_name("KEY (`a`)")


def test_referenced_tables() -> None:
    assert referenced_tables(
        "CREATE TABLE `c` (\n  `p` int,\n  `q` int,\n"
        "  CONSTRAINT `f1` FOREIGN KEY (`p`) REFERENCES `Parent` (`id`),\n"
        "  CONSTRAINT `f2` FOREIGN KEY (`q`) REFERENCES `other`.`p``2` (`id`)\n" + TAIL) \
        == {"parent", "p`2"}
    assert referenced_tables(MANY) == set()
    assert referenced_tables("CREATE TABLE `x` (`a` int COMMENT 'open") == set()
