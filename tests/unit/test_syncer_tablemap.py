"""How the syncer maps a tracked table's rows: causality keys (folded for text keys under
insensitive collations) and whether key-preserving updates may share a statement."""

from __future__ import annotations

import pytest

from mysqlkit.schema.tracker import SchemaTracker
from mysqlkit.sync.causality import change_keys
from mysqlkit.sync.syncer import _TableMap


def table_map(create: str) -> _TableMap:
    ts = SchemaTracker().set_table("s", "t", create)
    return _TableMap.build(ts, "d", "t")


@pytest.mark.parametrize(("create", "fold", "merge", "simple"), [
    ("CREATE TABLE t (id int NOT NULL PRIMARY KEY, v varchar(9))", False, True, True),
    ("CREATE TABLE t (id varchar(9) NOT NULL PRIMARY KEY, v int)", True, False, False),
    ("CREATE TABLE t (id varchar(9) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, v int)",
     False, True, True),
    ("CREATE TABLE t (id varbinary(9) NOT NULL PRIMARY KEY, v int)", False, True, True),
    ("CREATE TABLE t (id enum('a','B') NOT NULL PRIMARY KEY, v int)", False, True, True),
    ("CREATE TABLE t (a int NOT NULL, b char(3) NOT NULL, v int, PRIMARY KEY (a, b))",
     True, False, False),
    ("CREATE TABLE t (a int NOT NULL, b date NOT NULL, v int, PRIMARY KEY (a, b))",
     False, True, False),
    # Another unique key: updates in one statement could collide on it out of order.
    ("CREATE TABLE t (id int NOT NULL PRIMARY KEY, u int, UNIQUE KEY (u))", False, False,
     False),
    # A nullable unique key identifies nothing exactly.
    ("CREATE TABLE t (u int, v int, UNIQUE KEY (u))", False, False, False),
])
def test_flags(create: str, fold: bool, merge: bool, simple: bool) -> None:
    tm = table_map(create)
    assert (tm.fold, tm.merge_updates, tm.simple_key is not None) == (fold, merge, simple)
    ch = tm.change("update", ("1",) * len(tm.columns), ("1",) * len(tm.columns))
    assert ch.merge_updates is merge


def test_keys_fast_path_equals_change_keys() -> None:
    tm = table_map("CREATE TABLE t (v int, id int NOT NULL PRIMARY KEY)")
    for before, after in [(None, ("1", "7")), (("1", "7"), None), (("1", "7"), ("2", "7")),
                          (("1", "7"), ("2", "8"))]:
        kind = "insert" if before is None else "delete" if after is None else "update"
        ch = tm.change(kind, before, after)  # type: ignore[arg-type]
        assert tm.keys(ch) == change_keys(ch)


def test_text_keys_fold() -> None:
    tm = table_map("CREATE TABLE t (id varchar(9) NOT NULL PRIMARY KEY)")
    a = tm.keys(tm.change("insert", None, ("_binary'Abc'",)))
    b = tm.keys(tm.change("delete", ("_binary'abc '",), None))
    assert a == b
