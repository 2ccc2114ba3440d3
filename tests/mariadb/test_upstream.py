"""mysqlkit.upstream against real private MariaDB servers."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from actors.task_spec import target_conn
from domain.task_models import Task
from errors import DMError
from mysqlkit.precheck.run import precheck
from mysqlkit.sqlquote import quote_ident
from mysqlkit.upstream import (
    ConnConfig,
    ServerInfo,
    list_schemas,
    list_tables,
    open_conn,
    verify,
)
from testbed.mariadb import MariaDBServer
from testbed.tls import make_tls

pytestmark = pytest.mark.mariadb


def cfg_of(server: MariaDBServer, **overrides: object) -> ConnConfig:
    kwargs: dict[str, object] = {"host": server.host, "port": server.port,
                                 "user": server.user, "password": server.password}
    kwargs.update(overrides)
    return ConnConfig(**kwargs)  # type: ignore[arg-type]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


# --- verify ----------------------------------------------------------------------------------


async def test_verify_detects_mariadb(source1: MariaDBServer) -> None:
    info = await verify(cfg_of(source1))
    [(version, hostname)] = source1.query("SELECT VERSION(), @@hostname")
    assert info == ServerInfo(flavor="mariadb", version=version, server_id=101, log_bin=True,
                              binlog_format="ROW", binlog_row_image="FULL", gtid_mode="",
                              hostname=hostname, port=source1.port)
    assert info.same_server(await verify(cfg_of(source1)))
    assert "MariaDB" in info.version


async def test_verify_reads_each_servers_own_id(source2: MariaDBServer,
                                                target: MariaDBServer) -> None:
    infos = await asyncio.gather(verify(cfg_of(source2)), verify(cfg_of(target)))
    assert [i.server_id for i in infos] == [102, 201]
    assert not infos[0].same_server(infos[1])


# --- errors ----------------------------------------------------------------------------------


async def test_wrong_password_is_db_driver_error(source1: MariaDBServer) -> None:
    secret = "not-the-Password-42"
    with pytest.raises(DMError) as info:
        await verify(cfg_of(source1, password=secret))
    err = info.value
    assert err.code == 10001
    assert "Access denied for user 'dmray'" in err.cause
    assert "1045" in err.cause
    text = str(err)
    assert text.startswith("[code=10001:class=database:scope=not-set:level=high]")
    assert "RawCause: (1045, " in text
    assert secret not in text and secret not in repr(err) and secret not in err.cause
    assert "Traceback" not in text
    assert err.__cause__ is None and err.__suppress_context__


async def test_wrong_password_cause_is_the_drivers_message_verbatim(source1: MariaDBServer) -> None:
    with pytest.raises(DMError) as info:
        await verify(cfg_of(source1, password="wrong"))
    assert info.value.cause == (
        "(1045, \"Access denied for user 'dmray'@'127.0.0.1' (using password: YES)\")")


async def test_closed_port_fails_fast() -> None:
    cfg = ConnConfig(host="127.0.0.1", port=closed_port(), user="dmray", password="pw")
    t0 = time.monotonic()
    with pytest.raises(DMError) as info:
        await verify(cfg)
    assert time.monotonic() - t0 < 6
    assert info.value.code == 10001
    assert "Can't connect to MySQL server on '127.0.0.1'" in info.value.cause


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP but never sends the MySQL greeting."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


async def test_silent_server_fails_within_connect_timeout(silent_listener: int) -> None:
    cfg = ConnConfig(host="127.0.0.1", port=silent_listener, user="dmray", password="pw")
    t0 = time.monotonic()
    with pytest.raises(DMError) as info:
        await verify(cfg, connect_timeout=1.0)
    elapsed = time.monotonic() - t0
    assert 0.9 < elapsed < 3
    assert info.value.code == 10001
    assert info.value.cause == (
        f"Can't connect to MySQL server on '127.0.0.1:{silent_listener}' (timed out after 1s)")


async def test_query_errors_inside_open_conn_are_translated(source1: MariaDBServer) -> None:
    with pytest.raises(DMError) as info:
        async with open_conn(cfg_of(source1)) as conn, conn.cursor() as cur:
            await cur.execute("SELECT * FROM no_such_schema.no_such_table")
    assert info.value.code == 10001
    assert "1146" in info.value.cause


async def test_unknown_database_is_translated(source1: MariaDBServer) -> None:
    with pytest.raises(DMError) as info:
        async with open_conn(cfg_of(source1), database="no_such_db_xyz"):
            pass
    assert info.value.code == 10001 and "1049" in info.value.cause


def test_conn_config_repr_hides_password() -> None:
    cfg = ConnConfig("h", 3306, "u", "s3cr3t", ssl_key="-----BEGIN PRIVATE KEY-----x")
    assert "s3cr3t" not in repr(cfg) and "s3cr3t" not in str(cfg)
    assert "PRIVATE KEY" not in repr(cfg)
    assert repr(cfg) == ("ConnConfig(host='h', port=3306, user='u', password='******', "
                         "tls=True)")
    assert "password=''" in repr(ConnConfig("h", 1, "u"))


# --- listing ---------------------------------------------------------------------------------


async def test_list_schemas(source1: MariaDBServer) -> None:
    source1.execute("CREATE DATABASE IF NOT EXISTS up_schemas")
    try:
        schemas = await list_schemas(cfg_of(source1))
    finally:
        source1.execute("DROP DATABASE up_schemas")
    assert {"mysql", "information_schema", "performance_schema", "up_schemas"} <= set(schemas)


async def test_list_tables_excludes_views_and_sequences(source1: MariaDBServer) -> None:
    source1.execute(
        "DROP DATABASE IF EXISTS up_tables; CREATE DATABASE up_tables; USE up_tables; "
        "CREATE TABLE b (id INT PRIMARY KEY); CREATE TABLE a (id INT PRIMARY KEY); "
        "CREATE TABLE B2 (id INT) ENGINE=MyISAM; "
        "CREATE TABLE hist (id INT) WITH SYSTEM VERSIONING; "
        "CREATE VIEW v AS SELECT id FROM a; CREATE SEQUENCE s;")
    try:
        assert await list_tables(cfg_of(source1), "up_tables") == ["B2", "a", "b", "hist"]
        assert await list_tables(cfg_of(source1), "no_such_schema") == []
    finally:
        source1.execute("DROP DATABASE up_tables")


async def test_awkward_names(source1: MariaDBServer) -> None:
    schema = "db-name"
    tables = ["we`ird", "it's", 'dq"t', "tâble_ü", "日本", "sp ace", "a.b"]
    stmts = [f"DROP DATABASE IF EXISTS {quote_ident(schema)}",
             f"CREATE DATABASE {quote_ident(schema)}"]
    stmts += [f"CREATE TABLE {quote_ident(schema)}.{quote_ident(t)} (id INT)" for t in tables]
    stmts.append(f"CREATE VIEW {quote_ident(schema)}.{quote_ident('v`iew')} AS SELECT 1")
    source1.execute("; ".join(stmts))
    try:
        cfg = cfg_of(source1)
        assert schema in await list_schemas(cfg)
        assert await list_tables(cfg, schema) == sorted(tables)
        # Connecting with the awkward name as default database works too.
        async with open_conn(cfg, database=schema) as conn, conn.cursor() as cur:
            await cur.execute(f"INSERT INTO {quote_ident('we`ird')} VALUES (7)")
            await cur.execute(f"SELECT id FROM {quote_ident('we`ird')}")
            assert await cur.fetchall() == ((7,),)
    finally:
        source1.execute(f"DROP DATABASE {quote_ident(schema)}")


@pytest.mark.parametrize(("name", "quoted"), [
    ("t", "`t`"),
    ("we`ird", "`we``ird`"),
    ("`", "````"),
    ("``", "``````"),
    ("db-name", "`db-name`"),
    ("a.b", "`a.b`"),  # one identifier, never split on the dot
    ("it's \"x\"", "`it's \"x\"`"),
    ("tâble_日本", "`tâble_日本`"),
    ("select", "`select`"),
])
def test_quote_ident(name: str, quoted: str) -> None:
    assert quote_ident(name) == quoted


@pytest.mark.parametrize("bad", ["", "a\x00b"])
def test_quote_ident_rejects_impossible_names(bad: str) -> None:
    with pytest.raises(ValueError):
        quote_ident(bad)


async def test_quote_ident_round_trips_through_the_server(source1: MariaDBServer) -> None:
    name = "x`y``z'\"\\ é"
    async with open_conn(cfg_of(source1)) as conn, conn.cursor() as cur:
        await cur.execute(f"SELECT 1 AS {quote_ident(name)}")
        assert cur.description[0][0] == name


# --- TLS -------------------------------------------------------------------------------------


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _issue(cn: str, issuer_key: ec.EllipticCurvePrivateKey | None = None,
           issuer: x509.Name | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    is_ca = issuer_key is None
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(issuer or name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .sign(issuer_key or key, hashes.SHA256()))
    return cert, key


@pytest.fixture(scope="module")
def tls_pems() -> dict[str, str]:
    ca, ca_key = _issue("dmray test CA")
    server, server_key = _issue("some-other-name", ca_key, ca.subject)
    client, client_key = _issue("dmray client", ca_key, ca.subject)
    other_ca, _ = _issue("unrelated CA")
    return {"ca": _pem_cert(ca), "server": _pem_cert(server), "server_key": _pem_key(server_key),
            "client": _pem_cert(client), "client_key": _pem_key(client_key),
            "other_ca": _pem_cert(other_ca)}


@pytest.fixture(scope="module")
def tls_server(tls_pems: dict[str, str],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    d: Path = tmp_path_factory.mktemp("tls")
    for name in ("ca", "server", "server_key"):
        (d / f"{name}.pem").write_text(tls_pems[name])
    server = MariaDBServer(301, name="tls", extra_args=[
        f"--ssl-ca={d / 'ca.pem'}", f"--ssl-cert={d / 'server.pem'}",
        f"--ssl-key={d / 'server_key.pem'}"])
    with server:
        server.execute("CREATE USER tls_user@'%' IDENTIFIED BY 'tls-pw' REQUIRE SSL; "
                       "CREATE USER x509_user@'%' IDENTIFIED BY 'x509-pw' REQUIRE X509")
        yield server


async def _cipher(cfg: ConnConfig) -> str:
    async with open_conn(cfg) as conn, conn.cursor() as cur:
        await cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        [(_, cipher)] = await cur.fetchall()
        return str(cipher)


async def test_tls_with_ca(tls_server: MariaDBServer, tls_pems: dict[str, str]) -> None:
    cfg = cfg_of(tls_server, user="tls_user", password="tls-pw", ssl_ca=tls_pems["ca"])
    assert await _cipher(cfg)  # non-empty: the session is encrypted
    # Without TLS the REQUIRE SSL account is refused.
    with pytest.raises(DMError) as info:
        await _cipher(cfg_of(tls_server, user="tls_user", password="tls-pw"))
    assert "Access denied" in info.value.cause


async def test_tls_with_client_certificate(tls_server: MariaDBServer,
                                           tls_pems: dict[str, str]) -> None:
    cfg = cfg_of(tls_server, user="x509_user", password="x509-pw", ssl_ca=tls_pems["ca"],
                 ssl_cert=tls_pems["client"], ssl_key=tls_pems["client_key"])
    assert await _cipher(cfg)
    with pytest.raises(DMError) as info:  # REQUIRE X509 without a client certificate
        await _cipher(cfg_of(tls_server, user="x509_user", password="x509-pw",
                             ssl_ca=tls_pems["ca"]))
    assert info.value.code == 10001


async def test_tls_rejects_server_signed_by_another_ca(tls_server: MariaDBServer,
                                                       tls_pems: dict[str, str]) -> None:
    cfg = cfg_of(tls_server, user="tls_user", password="tls-pw", ssl_ca=tls_pems["other_ca"])
    with pytest.raises(DMError) as info:
        await verify(cfg)
    assert info.value.code == 10001
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.cause


async def test_tls_bad_pem_is_db_driver_error() -> None:
    cfg = ConnConfig("127.0.0.1", closed_port(), "u", ssl_ca="not a pem")
    with pytest.raises(DMError) as info:
        await verify(cfg)
    assert info.value.code == 10001


async def test_tls_key_without_cert_is_config_error() -> None:
    cfg = ConnConfig("127.0.0.1", closed_port(), "u", ssl_key="k")
    with pytest.raises(DMError) as info:
        await verify(cfg)
    assert info.value.code == 20001


@pytest.fixture(scope="module")
def tls_ip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MariaDBServer,
                                                                               str]]:
    """A TLS server whose certificate names 127.0.0.1, and the CA that signed it."""
    tls = make_tls(tmp_path_factory.mktemp("tls-ip"), "127.0.0.1")
    server = MariaDBServer(302, name="tls-ip", extra_args=[
        f"--ssl-ca={tls.ca_cert}", f"--ssl-cert={tls.cert}", f"--ssl-key={tls.key}"])
    with server:
        server.execute("CREATE USER tls_admin@'%' IDENTIFIED BY 'tls-pw' REQUIRE SSL; "
                       "GRANT ALL PRIVILEGES ON *.* TO tls_admin@'%'")
        yield server, tls.ca_cert.read_text()


async def test_tls_host_name_checked_when_asked(tls_server: MariaDBServer,
                                                tls_pems: dict[str, str],
                                                tls_ip_server: tuple[MariaDBServer, str]
                                                ) -> None:
    # The fixture's certificate names "some-other-name": accepted by the CA alone, refused
    # once its name is checked against the address dialled.
    named_other = cfg_of(tls_server, user="tls_user", password="tls-pw", ssl_ca=tls_pems["ca"])
    assert await _cipher(named_other)
    with pytest.raises(DMError) as info:
        await verify(cfg_of(tls_server, user="tls_user", password="tls-pw",
                            ssl_ca=tls_pems["ca"], ssl_verify_identity=True))
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.cause and "mismatch" in info.value.cause
    server, ca = tls_ip_server
    assert await _cipher(cfg_of(server, user="tls_admin", password="tls-pw", ssl_ca=ca,
                                ssl_verify_identity=True))
    with pytest.raises(DMError) as no_ca:
        await verify(cfg_of(server, ssl_verify_identity=True))
    assert no_ca.value.code == 20001 and "ssl_ca" in str(no_ca.value)


async def test_precheck_reaches_a_tls_only_target_with_its_security(
        source1: MariaDBServer, tls_ip_server: tuple[MariaDBServer, str]) -> None:
    """The precheck of a task create connects to the target as the task will: with its
    `security` (it used to ignore it, so a TLS-only target failed with 1045)."""
    server, ca = tls_ip_server
    target: dict[str, object] = {"host": server.host, "port": server.port,
                                 "user": "tls_admin", "password": "tls-pw"}
    body = {"name": "tls-precheck", "task_mode": "full", "target_config": target,
            "table_migrate_rule": [{"source": {"source_name": "s1", "schema": "mysql",
                                               "table": "*"}}],
            "source_config": {"source_conf": [{"source_name": "s1"}]},
            "ignore_checking_items": ["version"]}
    sources = {"s1": cfg_of(source1)}
    plain = await precheck(Task.model_validate(body), sources,
                           target_conn(Task.model_validate(body)))
    assert not plain.passed and "Access denied" in plain.text()
    secure = {**body, "target_config": {**target, "security": {
        "ssl_ca_content": ca, "ssl_cert_content": "", "ssl_key_content": "",
        "ssl_verify_identity": True}}}
    task = Task.model_validate(secure)
    result = await precheck(task, sources, target_conn(task))
    assert "Access denied" not in result.text(), result.text()
