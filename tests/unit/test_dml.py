"""mysqlkit.sync.dml (statement building and merging) and mysqlkit.sync.causality, without a
server."""

from __future__ import annotations

import pytest

from errors import DMError
from mysqlkit.sync.causality import Causality, change_keys, fold_value
from mysqlkit.sync.dml import RowChange, build_batch, row_identity

COLS = ("id", "v")
COLS2 = ("a", "b", "v")
GCOLS = ("id", "g", "v")  # g is generated


def ins(*after: str, table: str = "t", cols: tuple[str, ...] = COLS,
        key: tuple[int, ...] = (0,), skip: frozenset[int] = frozenset()) -> RowChange:
    return RowChange("insert", "s", table, cols, skip, key, None, after)


def dele(*before: str, table: str = "t", cols: tuple[str, ...] = COLS,
         key: tuple[int, ...] = (0,), skip: frozenset[int] = frozenset()) -> RowChange:
    return RowChange("delete", "s", table, cols, skip, key, before, None)


def upd(before: tuple[str, ...], after: tuple[str, ...], table: str = "t",
        cols: tuple[str, ...] = COLS, key: tuple[int, ...] = (0,),
        skip: frozenset[int] = frozenset(), merge: bool = False) -> RowChange:
    return RowChange("update", "s", table, cols, skip, key, before, after, merge)


# --- inserts -----------------------------------------------------------------------------------


def test_insert_run_merges() -> None:
    assert build_batch([ins("1", "'a'"), ins("2", "NULL")], False) == [
        "INSERT INTO `s`.`t` (`id`,`v`) VALUES (1,'a'),(2,NULL)"]


def test_insert_run_safe_mode_replaces() -> None:
    assert build_batch([ins("1", "'a'"), ins("1", "'b'")], True) == [
        "REPLACE INTO `s`.`t` (`id`,`v`) VALUES (1,'a'),(1,'b')"]


def test_insert_run_splits_on_repeated_key() -> None:
    # A duplicate must fail where the single INSERTs would: at the second row, the first
    # one applied.
    assert build_batch([ins("1", "'a'"), ins("2", "'b'"), ins("1", "'c'"), ins("3", "'d'")],
                       False) == [
        "INSERT INTO `s`.`t` (`id`,`v`) VALUES (1,'a'),(2,'b')",
        "INSERT INTO `s`.`t` (`id`,`v`) VALUES (1,'c'),(3,'d')",
    ]


def test_insert_repeats_without_key_or_with_null_key_do_not_split() -> None:
    assert len(build_batch([ins("1", "'a'", key=()), ins("1", "'a'", key=())], False)) == 1
    rows = [ins("NULL", "1", "'x'", cols=COLS2, key=(0, 1)),
            ins("NULL", "1", "'y'", cols=COLS2, key=(0, 1))]
    assert build_batch(rows, False) == [
        "INSERT INTO `s`.`t` (`a`,`b`,`v`) VALUES (NULL,1,'x'),(NULL,1,'y')"]


def test_insert_delete_insert_same_key_keeps_order() -> None:
    assert build_batch([ins("1", "'a'"), dele("1", "'a'"), ins("1", "'b'")], False) == [
        "INSERT INTO `s`.`t` (`id`,`v`) VALUES (1,'a')",
        "DELETE FROM `s`.`t` WHERE `id`=1",
        "INSERT INTO `s`.`t` (`id`,`v`) VALUES (1,'b')",
    ]


def test_runs_split_by_table_and_columns() -> None:
    out = build_batch([ins("1", "2"), ins("1", "2", table="u"), ins("3", "4", table="u"),
                       ins("5", "6", table="u", cols=("id", "w"))], False)
    assert out == [
        "INSERT INTO `s`.`t` (`id`,`v`) VALUES (1,2)",
        "INSERT INTO `s`.`u` (`id`,`v`) VALUES (1,2),(3,4)",
        "INSERT INTO `s`.`u` (`id`,`w`) VALUES (5,6)",
    ]


def test_generated_columns_are_not_written() -> None:
    g = frozenset({1})
    assert build_batch([ins("1", "99", "'a'", cols=GCOLS, skip=g)], False) == [
        "INSERT INTO `s`.`t` (`id`,`v`) VALUES (1,'a')"]
    assert build_batch([upd(("1", "9", "'a'"), ("1", "10", "'b'"), cols=GCOLS, skip=g)],
                       False) == ["UPDATE `s`.`t` SET `id`=1,`v`='b' WHERE `id`=1"]
    # Without a key the row is found by its written columns only.
    assert build_batch([dele("1", "9", "'a'", cols=GCOLS, skip=g, key=())], False) == [
        "DELETE FROM `s`.`t` WHERE `id`=1 AND `v`='a' LIMIT 1"]


def test_max_rows_splits() -> None:
    out = build_batch([ins(str(i), "0") for i in range(5)], False, max_rows=2)
    assert out == ["INSERT INTO `s`.`t` (`id`,`v`) VALUES (0,0),(1,0)",
                   "INSERT INTO `s`.`t` (`id`,`v`) VALUES (2,0),(3,0)",
                   "INSERT INTO `s`.`t` (`id`,`v`) VALUES (4,0)"]
    dels = build_batch([dele(str(i), "0") for i in range(3)], False, max_rows=2)
    assert dels == ["DELETE FROM `s`.`t` WHERE `id` IN (0,1)",
                    "DELETE FROM `s`.`t` WHERE `id`=2"]


def test_identifiers_are_quoted() -> None:
    c = RowChange("insert", "db-1", "t`x", ("select", "a b"), frozenset(), (0,), None,
                  ("1", "2"))
    assert build_batch([c], False) == ["INSERT INTO `db-1`.`t``x` (`select`,`a b`) VALUES (1,2)"]


def test_column_count_mismatch() -> None:
    with pytest.raises(DMError) as info:
        build_batch([ins("1")], False)
    assert info.value.code == 36027
    with pytest.raises(ValueError):
        build_batch([RowChange("insert", "s", "t", COLS, frozenset(), (0,), ("1", "2"))],
                    False)


# --- deletes -----------------------------------------------------------------------------------


def test_delete_run_single_key() -> None:
    assert build_batch([dele("1", "'a'"), dele("2", "'b'"), dele("1", "'a'")], False) == [
        "DELETE FROM `s`.`t` WHERE `id` IN (1,2,1)"]


def test_delete_run_composite_key() -> None:
    out = build_batch([dele("1", "2", "'x'", cols=COLS2, key=(0, 1)),
                       dele("3", "'q'", "'y'", cols=COLS2, key=(0, 1))], False)
    assert out == ["DELETE FROM `s`.`t` WHERE (`a`=1 AND `b`=2) OR (`a`=3 AND `b`='q')"]


def test_delete_null_key_falls_back_to_all_columns() -> None:
    # A nullable unique key holding NULL identifies nothing (NULLs may repeat).
    out = build_batch([dele("1", "NULL", "'x'", cols=COLS2, key=(0, 1)),
                       dele("1", "2", "NULL", cols=COLS2, key=(0, 1))], False)
    assert out == [
        "DELETE FROM `s`.`t` WHERE `a`=1 AND `b` IS NULL AND `v`='x' LIMIT 1",
        "DELETE FROM `s`.`t` WHERE `a`=1 AND `b`=2",
    ]


def test_delete_without_key_one_statement_per_row() -> None:
    out = build_batch([dele("1", "'a'", key=()), dele("1", "'a'", key=())], False)
    assert out == ["DELETE FROM `s`.`t` WHERE `id`=1 AND `v`='a' LIMIT 1"] * 2


# --- updates -----------------------------------------------------------------------------------


def test_update_normal_mode() -> None:
    out = build_batch([upd(("1", "'a'"), ("1", "'b'")), upd(("1", "'b'"), ("2", "'b'"))],
                      False)
    assert out == ["UPDATE `s`.`t` SET `id`=1,`v`='b' WHERE `id`=1",
                   "UPDATE `s`.`t` SET `id`=2,`v`='b' WHERE `id`=1"]


def test_update_without_key_or_null_key() -> None:
    assert build_batch([upd(("1", "NULL"), ("1", "'b'"), key=())], False) == [
        "UPDATE `s`.`t` SET `id`=1,`v`='b' WHERE `id`=1 AND `v` IS NULL LIMIT 1"]
    assert build_batch([upd(("NULL", "1", "2"), ("3", "1", "2"), cols=COLS2, key=(0, 1))],
                       False) == [
        "UPDATE `s`.`t` SET `a`=3,`b`=1,`v`=2 WHERE `a` IS NULL AND `b`=1 AND `v`=2 LIMIT 1"]


def test_key_preserving_updates_merge_into_one_case_statement() -> None:
    out = build_batch([upd(("1", "'a'"), ("1", "'b'"), merge=True),
                       upd(("2", "'a'"), ("2", "NULL"), merge=True)], False)
    assert out == ["UPDATE `s`.`t` SET `v`=CASE WHEN `id`=1 THEN 'b' WHEN `id`=2 THEN NULL END"
                   " WHERE `id` IN (1,2)"]
    # Composite key, a generated column (never set) and the key columns left alone.
    out = build_batch([upd(("1", "'x'", "5"), ("1", "'x'", "6"), cols=COLS2, key=(0, 1),
                           merge=True),
                       upd(("2", "'y'", "7"), ("2", "'y'", "8"), cols=COLS2, key=(0, 1),
                           merge=True)], False)
    assert out == ["UPDATE `s`.`t` SET `v`=CASE WHEN `a`=1 AND `b`='x' THEN 6 "
                   "WHEN `a`=2 AND `b`='y' THEN 8 END "
                   "WHERE (`a`=1 AND `b`='x') OR (`a`=2 AND `b`='y')"]
    out = build_batch([upd(("1", "2", "3"), ("1", "2", "4"), cols=GCOLS, skip=frozenset({1}),
                           merge=True),
                       upd(("2", "3", "4"), ("2", "5", "6"), cols=GCOLS, skip=frozenset({1}),
                           merge=True)], False)
    assert out == ["UPDATE `s`.`t` SET `v`=CASE WHEN `id`=1 THEN 4 WHEN `id`=2 THEN 6 END "
                   "WHERE `id` IN (1,2)"]


def test_merged_updates_keep_order_around_key_changes_and_repeats() -> None:
    out = build_batch([upd(("1", "'a'"), ("1", "'b'"), merge=True),
                       upd(("2", "'a'"), ("2", "'c'"), merge=True),
                       upd(("1", "'b'"), ("1", "'d'"), merge=True),  # row 1 again
                       upd(("3", "'a'"), ("4", "'a'"), merge=True),  # key change
                       upd(("5", "'a'"), ("5", "'e'"), merge=True)], False)
    assert out == [
        "UPDATE `s`.`t` SET `v`=CASE WHEN `id`=1 THEN 'b' WHEN `id`=2 THEN 'c' END "
        "WHERE `id` IN (1,2)",
        "UPDATE `s`.`t` SET `v`='d' WHERE `id`=1",
        "UPDATE `s`.`t` SET `id`=4,`v`='a' WHERE `id`=3",
        "UPDATE `s`.`t` SET `v`='e' WHERE `id`=5",
    ]
    # Without merge_updates (another unique key, a folding collation): a statement each.
    assert len(build_batch([upd(("1", "'a'"), ("1", "'b'")),
                            upd(("2", "'a'"), ("2", "'c'"))], False)) == 2
    # A NULL key value finds rows by all columns: never merged.
    assert len(build_batch([upd(("NULL", "1", "2"), ("NULL", "1", "3"), cols=COLS2,
                                key=(0, 1), merge=True)] * 2, False)) == 2


def test_merged_updates_split_at_max_rows() -> None:
    run = [upd((str(i), "0"), (str(i), "1"), merge=True) for i in range(150)]
    out = build_batch(run, False)
    assert [s.count(" WHEN ") for s in out] == [64, 64, 22]
    assert build_batch(run[:5], False, max_rows=2)[-1] == \
        "UPDATE `s`.`t` SET `v`=1 WHERE `id`=4"
    # A wide table merges fewer rows: 200 columns set, 1024 // 200 = 5 rows a statement.
    cols = tuple(f"c{i}" for i in range(201))
    wide = [upd((str(i),) + ("0",) * 200, (str(i),) + ("1",) * 200, cols=cols, merge=True)
            for i in range(12)]
    assert [s.rsplit(" IN (", 1)[1] for s in build_batch(wide, False)] == [
        "0,1,2,3,4)", "5,6,7,8,9)", "10,11)"]


def test_update_safe_mode_same_key_merges_into_replace() -> None:
    out = build_batch([upd(("1", "'a'"), ("1", "'b'")), upd(("2", "'a'"), ("2", "'c'")),
                       upd(("1", "'b'"), ("1", "'d'"))], True)
    assert out == ["REPLACE INTO `s`.`t` (`id`,`v`) VALUES (1,'b'),(2,'c'),(1,'d')"]


def test_update_safe_mode_key_change_deletes_before_row_in_order() -> None:
    # 1→2 then 2→3: the DELETE of 2 must follow the REPLACE that wrote 2.
    out = build_batch([upd(("0", "'z'"), ("0", "'y'")), upd(("1", "'a'"), ("2", "'a'")),
                       upd(("2", "'a'"), ("3", "'a'"))], True)
    assert out == [
        "REPLACE INTO `s`.`t` (`id`,`v`) VALUES (0,'y')",
        "DELETE FROM `s`.`t` WHERE `id`=1",
        "REPLACE INTO `s`.`t` (`id`,`v`) VALUES (2,'a')",
        "DELETE FROM `s`.`t` WHERE `id`=2",
        "REPLACE INTO `s`.`t` (`id`,`v`) VALUES (3,'a')",
    ]


def test_update_safe_mode_without_key() -> None:
    out = build_batch([upd(("1", "'a'"), ("1", "'b'"), key=())], True)
    assert out == ["DELETE FROM `s`.`t` WHERE `id`=1 AND `v`='a' LIMIT 1",
                   "REPLACE INTO `s`.`t` (`id`,`v`) VALUES (1,'b')"]


def test_delete_safe_mode_same_as_normal() -> None:
    rows = [dele("1", "'a'"), dele("2", "'b'")]
    assert build_batch(rows, True) == build_batch(rows, False)


def test_mixed_sequence_order() -> None:
    seq = [ins("1", "0"), ins("2", "0"), upd(("1", "0"), ("1", "1")), dele("2", "0"),
           dele("1", "1"), ins("2", "5")]
    assert build_batch(seq, False) == [
        "INSERT INTO `s`.`t` (`id`,`v`) VALUES (1,0),(2,0)",
        "UPDATE `s`.`t` SET `id`=1,`v`=1 WHERE `id`=1",
        "DELETE FROM `s`.`t` WHERE `id` IN (2,1)",
        "INSERT INTO `s`.`t` (`id`,`v`) VALUES (2,5)",
    ]


def test_row_identity() -> None:
    assert row_identity(ins("1", "'a'"), ("1", "'a'")) == ("1",)
    c = ins("NULL", "1", "'x'", cols=COLS2, key=(0, 1))
    assert row_identity(c, ("NULL", "1", "'x'")) == ("NULL", "1", "'x'")
    g = ins("1", "2", "3", cols=GCOLS, key=(), skip=frozenset({1}))
    assert row_identity(g, ("1", "2", "3")) == ("1", "3")


# --- causality ---------------------------------------------------------------------------------


def test_change_keys() -> None:
    assert change_keys(ins("1", "'a'")) == ["s.t:1"]
    assert change_keys(upd(("1", "'a'"), ("1", "'b'"))) == ["s.t:1"]
    assert change_keys(upd(("1", "'a'"), ("2", "'a'"))) == ["s.t:1", "s.t:2"]
    c = dele("1", "2", "'x'", cols=COLS2, key=(0, 1))
    assert change_keys(c) == ["s.t:1\x002"]
    n = dele("1", "NULL", "'x'", cols=COLS2, key=(0, 1))
    assert change_keys(n) == ["s.t:1\x00NULL\x00'x'"]
    # Other unique keys, NULLs left out.
    u = upd(("1", "2", "'x'"), ("1", "NULL", "'y'"), cols=COLS2, key=(0,))
    assert change_keys(u, unique_keys=[(1,)]) == ["s.t:1", "s.t:#0:2"]


def test_change_keys_fold() -> None:
    a = change_keys(ins("'Abc  '", "1"), fold=True)
    b = change_keys(ins("'abc'", "2"), fold=True)
    c = change_keys(ins("'ÁBC'", "3"), fold=True)
    assert a == b == c == ["s.t:'abc'"]
    assert change_keys(ins("'Abc'", "1")) != change_keys(ins("'abc'", "1"))
    assert fold_value("12") == "12"


def test_causality_same_key_same_lane() -> None:
    c = Causality(4)
    lanes = [c.assign(None, [f"k{i}"]) for i in range(4)]
    assert sorted(lanes) == [0, 1, 2, 3]  # type: ignore[type-var]
    assert c.assign(None, ["k2"]) == lanes[2]
    # A change binding a new key to an existing lane.
    assert c.assign(None, ["k2", "k9"]) == lanes[2]
    assert c.assign(None, ["k9"]) == lanes[2]


def test_causality_stride_fills_one_lane_at_a_time() -> None:
    c = Causality(3, stride=2)
    assert [c.assign(None, [f"k{i}"]) for i in range(7)] == [0, 0, 1, 1, 2, 2, 0]
    # A bound key keeps its lane and does not use up the current lane's turn.
    assert c.assign(None, ["k2"]) == 1
    assert c.assign(None, ["k8"]) == 0
    assert c.assign(None, ["k9"]) == 1
    with pytest.raises(ValueError):
        Causality(2, stride=0)


def test_causality_conflict_and_reset() -> None:
    c = Causality(2)
    a = c.assign(None, ["k1"])
    b = c.assign(None, ["k2"])
    assert a != b
    assert c.assign(None, ["k1", "k2"]) is None
    # Nothing was bound by the refused change.
    assert c.assign(None, ["k3"]) is not None
    assert len(c) == 3
    c.reset()
    assert len(c) == 0
    assert c.assign(None, ["k1", "k2"]) is not None


def test_causality_single_lane_never_conflicts() -> None:
    c = Causality(1)
    assert {c.assign(None, [f"k{i}", f"k{i + 1}"]) for i in range(10)} == {0}


def test_causality_key_change_chain() -> None:
    # insert 1, update 1→2, and a later delete of 2 must share one lane.
    c = Causality(3)
    lane = c.assign(None, change_keys(ins("1", "0")))
    c.assign(None, change_keys(ins("7", "0")))
    assert c.assign(None, change_keys(upd(("1", "0"), ("2", "0")))) == lane
    assert c.assign(None, change_keys(dele("2", "0"))) == lane
    assert Causality(3).assign(None, []) is not None
    with pytest.raises(ValueError):
        Causality(0)
