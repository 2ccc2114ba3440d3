"""The private MariaDB test bed is what the rest of the suite assumes it is."""

from __future__ import annotations

import pymysql
import pytest

from testbed.mariadb import MariaDBServer
from tests.support.fixtures_mariadb import MariaDBServers

pytestmark = pytest.mark.mariadb


def test_three_private_servers_on_distinct_ports(mariadb_servers: MariaDBServers) -> None:
    servers = mariadb_servers.all()
    ports = {s.port for s in servers}
    assert len(ports) == 3
    assert 3306 not in ports
    assert all(s.running for s in servers)
    assert all(s.host == "127.0.0.1" for s in servers)
    assert len({s.socket for s in servers}) == 3
    # Each one reports its own port: we are not talking to some shared server.
    for s in servers:
        assert s.query("SELECT @@port") == [(s.port,)]


def test_binlog_settings_and_server_ids(mariadb_servers: MariaDBServers) -> None:
    seen = {}
    for s in mariadb_servers.all():
        [(log_bin, fmt, row_image, server_id)] = s.query(
            "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, @@server_id")
        assert log_bin in (1, "1", "ON")
        assert (fmt, row_image) == ("ROW", "FULL")
        seen[s.name] = server_id
    assert seen == {"source1": 101, "source2": 102, "target": 201}


def test_dmray_user_logs_in_over_tcp(mariadb_servers: MariaDBServers) -> None:
    for s in mariadb_servers.all():
        conn = pymysql.connect(host=s.host, port=s.port, user="dmray",
                               password="dmray-secret-pw", connect_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT CURRENT_USER(), @@server_id")
                assert cur.fetchone() == ("dmray@%", s.server_id)
                cur.execute("SHOW GRANTS")
                grants = " ".join(row[0] for row in cur.fetchall())
            assert "ALL PRIVILEGES ON *.*" in grants and "WITH GRANT OPTION" in grants
            assert conn.get_host_info() == f"socket {s.host}:{s.port}"
        finally:
            conn.close()


def test_wrong_password_is_refused(source1: MariaDBServer) -> None:
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql.connect(host=source1.host, port=source1.port, user="dmray",
                        password="wrong", connect_timeout=5)
    assert info.value.args[0] == 1045


def test_sql_helpers(source1: MariaDBServer) -> None:
    source1.execute("DROP DATABASE IF EXISTS tb_helpers; CREATE DATABASE tb_helpers; "
                    "CREATE TABLE tb_helpers.t (id INT PRIMARY KEY, v VARCHAR(10))")
    assert source1.executemany("INSERT INTO t VALUES (%s, %s)", [(1, "a"), (2, "ü")],
                               database="tb_helpers") == 2
    assert source1.query("SELECT id, v FROM tb_helpers.t WHERE id >= %s ORDER BY id",
                         (1,)) == [(1, "a"), (2, "ü")]
    with source1.connect("tb_helpers", as_root=False) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM t")
        assert cur.fetchone() == (2,)
    assert source1.url("tb_helpers") == (
        f"mysql+asyncmy://dmray:dmray-secret-pw@127.0.0.1:{source1.port}/tb_helpers")
    source1.execute("DROP DATABASE tb_helpers")
