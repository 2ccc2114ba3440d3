"""The randomized workload and the table comparator, proven with MariaDB's own replication:
a private primary and a private replica (CHANGE MASTER TO ... START SLAVE) end up equal
after the workload, DDL included; a change made on the replica by hand is reported."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from testbed.mariadb import MariaDBServer, start_servers
from tests.support.compare import (
    TablesDiffer,
    assert_same_tables,
    diff_rows,
    format_diff,
    wait_until_equal,
)
from tests.support.workload import Workload

pytestmark = pytest.mark.mariadb

PRIMARY_ID, REPLICA_ID = 931, 932  # distinct from the session servers' and the benches'


def slave_status(replica: MariaDBServer) -> dict[str, Any]:
    with replica.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW SLAVE STATUS")
        row = cur.fetchone()
        assert row is not None, "replication is not configured"
        return {d[0]: v for d, v in zip(cur.description, row, strict=True)}


def replica_ok(replica: MariaDBServer) -> None:
    st = slave_status(replica)
    if st["Slave_SQL_Running"] != "Yes" or st["Slave_IO_Running"] not in ("Yes", "Connecting"):
        raise AssertionError(f"replica stopped: IO {st['Slave_IO_Running']} "
                             f"({st['Last_IO_Error']}), SQL {st['Slave_SQL_Running']} "
                             f"({st['Last_SQL_Error']})")


def replicated_rows(replica: MariaDBServer, table: str) -> int:
    try:
        return int(replica.query(f"SELECT COUNT(*) FROM {table}")[0][0])
    except pymysql.err.ProgrammingError:  # its CREATE TABLE has not been applied yet
        return 0


@pytest.fixture(scope="module")
def repl() -> Iterator[tuple[MariaDBServer, MariaDBServer]]:
    primary, replica = start_servers([PRIMARY_ID, REPLICA_ID],
                                     names=["wl-primary", "wl-replica"])
    try:
        [(file, pos, *_)] = primary.query("SHOW MASTER STATUS")
        replica.execute(
            "CHANGE MASTER TO MASTER_HOST = %s, MASTER_PORT = %s, MASTER_USER = %s, "
            "MASTER_PASSWORD = %s, MASTER_LOG_FILE = %s, MASTER_LOG_POS = %s, "
            "MASTER_USE_GTID = no, MASTER_CONNECT_RETRY = 1",
            (primary.host, primary.port, primary.user, primary.password, file, int(pos)))
        replica.execute("START SLAVE")
        yield primary, replica
    finally:
        try:
            if replica.running:
                replica.execute("STOP SLAVE")
        finally:
            replica.stop()
            primary.stop()


# --- the comparator alone ---------------------------------------------------------------------

def test_diff_rows_names_each_kind_of_difference() -> None:
    cols = ["id", "v"]
    src = [(b"1", b"a"), (b"2", b"b"), (b"3", b"c"), (b"4", None)]
    tgt = [(b"1", b"a"), (b"2", b"B"), (b"4", b""), (b"5", b"e")]
    d = diff_rows(cols, ["id"], src, tgt)
    assert d.missing == [(b"3", b"c")]
    assert d.extra == [(b"5", b"e")]
    assert d.differing == [((b"2", b"b"), (b"2", b"B")), ((b"4", None), (b"4", b""))]
    text = format_diff((("s", "t"), ("s2", "t")), d)
    assert "s.t -> s2.t: 1 missing in target, 1 extra in target, 0 duplicated, 2 differing" \
        in text
    assert "differing at (id='2'): v: source 'b' != target 'B'" in text
    assert "differing at (id='4'): v: source NULL != target ''" in text

    # Without a key, rows are matched whole; a repeated row is "duplicated".
    d = diff_rows(cols, [], [(b"1", b"\xff"), (b"2", b"x")],
                  [(b"1", b"\xff"), (b"1", b"\xff"), (b"2", b"x")])
    assert d.duplicated == [((b"1", b"\xff"), 1, 2)] and not d.missing and not d.extra
    assert "duplicated: 1x in source, 2x in target: {id='1', v=0xff}" in format_diff(
        (("s", "t"), ("s", "t")), d)
    assert diff_rows(cols, ["id"], src, list(reversed(src))).equal


# --- the workload ------------------------------------------------------------------------------

def test_same_seed_gives_the_same_data(repl: tuple[MariaDBServer, MariaDBServer]) -> None:
    primary, _ = repl
    a = Workload(primary, "det_a", seed=3, with_ddl=True, ddl_every=25).setup()
    b = Workload(primary, "det_b", seed=3, with_ddl=True, ddl_every=25).setup()
    rows_a, rows_b = a.run(300), b.run(300)
    assert rows_a == rows_b > 300
    assert a.ddl_done == b.ddl_done and len(a.ddl_done) >= 12
    assert a.tables() == b.tables()
    assert {"t_ren0", "t_ren1"} <= set(a.tables())
    pairs = [((a.schema, t), (b.schema, t)) for t in a.tables()]
    assert_same_tables(primary, primary, pairs)

    # ... and another seed does not.
    c = Workload(primary, "det_c", seed=4).setup()
    c.run(100)
    with pytest.raises(TablesDiffer):
        assert_same_tables(primary, primary, [((a.schema, "t_int"), (c.schema, "t_int"))],
                           check_types=False)


def test_workload_covers_the_awkward_values(repl: tuple[MariaDBServer, MariaDBServer]) -> None:
    primary, _ = repl
    wl = Workload(primary, "cover", seed=1).setup()
    wl.run(600)
    [(n, nulls, zero_dates, emoji, high_bytes, neg_time)] = primary.query(
        "SELECT COUNT(*), SUM(ti IS NULL), SUM(dd = '0000-00-00'), SUM(vc LIKE '%😀%'), "
        "SUM(vb LIKE CONCAT('%', 0xff, '%')), SUM(t6 < '00:00:00') FROM cover.t_types")
    assert n > 30 and nulls and zero_dates and emoji and high_bytes and neg_time
    [(with_null_uk, total_uk)] = primary.query(
        "SELECT SUM(u IS NULL OR w IS NULL), COUNT(*) FROM cover.t_uk")
    assert 0 < with_null_uk < total_uk


# --- with native replication -------------------------------------------------------------------

def test_native_replica_matches_after_workload_with_ddl(
        repl: tuple[MariaDBServer, MariaDBServer]) -> None:
    primary, replica = repl
    wl = Workload(primary, "wl_repl", seed=11, with_ddl=True, ddl_every=40).setup()
    changed = wl.run(800)
    assert changed > 800 and len(wl.ddl_done) >= 20
    assert {"t_int", "t_comp", "t_uk", "t_types", "t_ren0", "t_ren2"} <= set(wl.tables())
    wait_until_equal(primary, replica, wl.pairs(), timeout=60,
                     check=lambda: replica_ok(replica))


def test_native_replica_matches_after_background_load(
        repl: tuple[MariaDBServer, MariaDBServer]) -> None:
    primary, replica = repl
    wl = Workload(primary, "wl_bg", seed=5, with_ddl=True, ddl_every=60).setup()
    load = wl.run_in_thread(rate=150)
    # The replica follows while the load runs.
    deadline = time.monotonic() + 30
    while not replicated_rows(replica, "wl_bg.t_int"):
        replica_ok(replica)
        assert time.monotonic() < deadline, "the replica applied nothing"
        time.sleep(0.1)
    time.sleep(1.0)
    assert load.running
    ops = load.stop()
    assert ops >= 30 and load.rows > 0
    wait_until_equal(primary, replica, wl.pairs(), timeout=60,
                     check=lambda: replica_ok(replica))


def test_manual_change_on_replica_is_reported(
        repl: tuple[MariaDBServer, MariaDBServer]) -> None:
    primary, replica = repl
    wl = Workload(primary, "wl_neg", seed=23).setup()
    wl.run(300)
    wait_until_equal(primary, replica, wl.pairs(), timeout=60,
                     check=lambda: replica_ok(replica))

    [(first_id,)] = replica.query("SELECT MIN(id) FROM wl_neg.t_int")
    [(a, b)] = replica.query("SELECT a, b FROM wl_neg.t_comp ORDER BY a, b LIMIT 1")
    replica.execute("UPDATE wl_neg.t_int SET v = 'tampered' WHERE id = %s", (first_id,))
    replica.execute("DELETE FROM wl_neg.t_comp WHERE a = %s AND b = %s", (a, b))
    replica.execute("INSERT INTO wl_neg.t_int (id, v) VALUES (2000000, 'extra')")
    replica.execute("INSERT INTO wl_neg.t_uk SELECT * FROM wl_neg.t_uk WHERE u IS NULL LIMIT 1")
    replica.execute("ALTER TABLE wl_neg.t_types MODIFY vc VARCHAR(301)")

    with pytest.raises(TablesDiffer) as err:
        assert_same_tables(primary, replica, wl.pairs())
    msg = str(err.value)
    assert msg.startswith("4 of 4 tables differ:"), msg
    assert "wl_neg.t_int -> wl_neg.t_int: 0 missing in target, 1 extra in target, " \
        "0 duplicated, 1 differing" in msg
    assert f"differing at (id='{first_id}'): v: source " in msg
    assert "!= target 'tampered'" in msg
    assert "extra in target: {" in msg and "id='2000000', v='extra'" in msg
    assert "wl_neg.t_comp -> wl_neg.t_comp: 1 missing in target" in msg
    assert f"missing in target: {{a='{a}', b=" in msg
    assert "wl_neg.t_uk -> wl_neg.t_uk: 0 missing in target, 0 extra in target, " \
        "1 duplicated" in msg
    assert "wl_neg.t_types -> wl_neg.t_types: columns differ" in msg
    assert "vc varchar(300)" in msg and "vc varchar(301)" in msg

    # The timeout path of wait_until_equal says the same.
    with pytest.raises(TablesDiffer, match="still 1 of 1 tables differ after 0s"):
        wait_until_equal(primary, replica, [(("wl_neg", "t_comp"), ("wl_neg", "t_comp"))],
                         timeout=0.3, interval=0.1)
    # ignore_columns: the tampered column alone no longer counts (the extra row does).
    with pytest.raises(TablesDiffer) as err:
        assert_same_tables(primary, replica, [(("wl_neg", "t_int"), ("wl_neg", "t_int"))],
                           ignore_columns=["v"])
    assert "0 differing" in str(err.value)
