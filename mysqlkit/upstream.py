"""Async access to an upstream (source) or downstream (target) MySQL/MariaDB server.

This is the driver boundary: every error from asyncmy/pymysql or the network leaves this
module as `DB_DRIVER` (code 10001) with the driver's message, scrubbed, as RawCause.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncmy
import asyncmy.errors
import pymysql
from asyncmy.constants import CLIENT

from errors import CONFIG_INVALID, DB_DRIVER, DMError

__all__ = [
    "ConnConfig",
    "ServerInfo",
    "connect",
    "driver_error",
    "driver_errors",
    "list_schemas",
    "list_tables",
    "open_conn",
    "verify",
]

DEFAULT_CONNECT_TIMEOUT = 5.0

# asyncio.TimeoutError is TimeoutError (an OSError) since 3.11; listed for clarity.
_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncmy.errors.MySQLError, pymysql.MySQLError, OSError, asyncio.TimeoutError,
)


@dataclass(frozen=True, repr=False)
class ConnConfig:
    """Where and as whom to connect. The ssl_* fields hold PEM contents, as DM's Security
    object carries them, not file paths."""

    host: str
    port: int
    user: str
    password: str = ""
    ssl_ca: str | None = None
    ssl_cert: str | None = None
    ssl_key: str | None = None
    # Check the server certificate's name against `host` too (MySQL's
    # --ssl-verify-server-cert); needs ssl_ca.
    ssl_verify_identity: bool = False

    @property
    def uses_tls(self) -> bool:
        return bool(self.ssl_ca or self.ssl_cert or self.ssl_key or self.ssl_verify_identity)

    def __repr__(self) -> str:
        # Configs end up in logs and error reports: never show the password or the key.
        return (f"ConnConfig(host={self.host!r}, port={self.port}, user={self.user!r}, "
                f"password={'******' if self.password else ''!r}, tls={self.uses_tls})")


@dataclass(frozen=True)
class ServerInfo:
    flavor: str  # "mysql" or "mariadb"
    version: str  # SELECT VERSION(), e.g. "10.11.19-MariaDB-0+deb12u1-log"
    server_id: int
    log_bin: bool
    binlog_format: str
    binlog_row_image: str
    gtid_mode: str  # MySQL's @@gtid_mode; "" where it does not exist (MariaDB)
    hostname: str = ""  # @@hostname and @@port: with server_id, which server this is
    port: int = 0

    def same_server(self, other: ServerInfo) -> bool:
        """Whether two connections reach one server, however they were addressed."""
        return (self.server_id, self.hostname, self.port) == (other.server_id,
                                                              other.hostname, other.port)


# --- error translation ---------------------------------------------------------------------


def driver_error(exc: BaseException, cfg: ConnConfig | None = None) -> DMError:
    """`DB_DRIVER` whose cause is the driver's own message, without any secret in it."""
    text = str(exc) or type(exc).__name__
    if cfg is not None and cfg.password:
        # Belt and braces on top of scrub(): a statement echoed back by the server could
        # carry the password verbatim.
        text = text.replace(cfg.password, "******")
    errno = _errno_of(exc)
    # No server errno: a dropped or refused connection, a timeout — worth waiting for.
    return DB_DRIVER(cause=text, retryable=errno in TRANSIENT_ERRNOS if errno else True)


# Server errors a retry can cure: too many connections, shutdown in progress, lock wait
# timeout, deadlock, read-only, can't connect / server gone / lost connection.
TRANSIENT_ERRNOS = frozenset({1040, 1053, 1205, 1213, 1290, 2002, 2003, 2006, 2013, 2055})
_ERRNO_RE = re.compile(r"\((\d{4}),")


def _errno_of(exc: BaseException) -> int | None:
    """The server's error number (not an OSError's errno) of a driver error."""
    if isinstance(exc, OSError):
        return None
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return int(args[0])
    m = _ERRNO_RE.search(str(exc))
    return int(m.group(1)) if m else None


def dm_errno(err: DMError) -> int | None:
    """The server's error number that a DMError made by driver_error carries in its cause
    ("(1213, 'Deadlock found…')"), if any."""
    m = _ERRNO_RE.search(err.cause or "") or _ERRNO_RE.search(err.message)
    return int(m.group(1)) if m else None


@contextlib.contextmanager
def driver_errors(cfg: ConnConfig | None = None) -> Iterator[None]:
    """Translate driver/network errors raised in the block into `DB_DRIVER`."""
    try:
        yield
    except DMError:
        raise
    except _DRIVER_ERRORS as exc:
        # `from None`: the chained driver exception and its frames would hold the config
        # (password included) and add nothing the cause does not already say.
        raise driver_error(exc, cfg) from None


# --- TLS -----------------------------------------------------------------------------------


def _ssl_context(cfg: ConnConfig) -> ssl.SSLContext | None:
    if not cfg.uses_tls:
        return None
    if cfg.ssl_key and not cfg.ssl_cert:
        raise CONFIG_INVALID("ssl-key is set but ssl-cert is not")
    if cfg.ssl_verify_identity and not cfg.ssl_ca:
        raise CONFIG_INVALID("ssl_verify_identity needs ssl_ca_content: the CA that signed "
                             "the server's certificate")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # By default the chain is verified against the given CA and the host name is not:
    # MySQL server certificates are often auto-generated or issued for a name other than
    # the address dialled (DM behaves the same). ssl_verify_identity asks for both.
    ctx.check_hostname = cfg.ssl_verify_identity
    if cfg.ssl_ca:
        ctx.load_verify_locations(cadata=cfg.ssl_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE  # encryption only, as with DM when no CA is given
    if cfg.ssl_cert:
        # load_cert_chain only reads files: write the PEMs to a private temp dir that is
        # removed as soon as they are loaded.
        with tempfile.TemporaryDirectory(prefix="mysqlkit-tls-") as tmp:
            cert = Path(tmp) / "cert.pem"
            cert.write_text(cfg.ssl_cert)
            key: Path | None = None
            if cfg.ssl_key:
                key = Path(tmp) / "key.pem"
                fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(cfg.ssl_key)
            ctx.load_cert_chain(cert, key)
    return ctx


# --- connections ---------------------------------------------------------------------------


async def connect(
    cfg: ConnConfig,
    database: str | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    local_infile: bool = False,
    multi_statements: bool = False,
) -> asyncmy.Connection:
    """An autocommit asyncmy connection; the caller closes it (or use `open_conn`).

    The whole connect, TLS and authentication included, is bounded by `connect_timeout`:
    asyncmy's own timeout only covers the TCP connect, so a peer that accepts and then
    stays silent would otherwise hang us forever.
    """
    with driver_errors(cfg):
        ctx = _ssl_context(cfg)
        try:
            async with asyncio.timeout(connect_timeout):
                conn: asyncmy.Connection = await asyncmy.connect(
                    host=cfg.host, port=cfg.port, user=cfg.user, password=cfg.password,
                    database=database, charset="utf8mb4", autocommit=True, ssl=ctx,
                    local_infile=local_infile,
                    client_flag=CLIENT.MULTI_STATEMENTS if multi_statements else 0,
                    # Only a backstop: the asyncio.timeout above fires first, with a
                    # clearer message than asyncmy's empty "()".
                    connect_timeout=connect_timeout + 1,
                    # Our set-up statements are idempotent by design (IF [NOT] EXISTS):
                    # the notes they raise ("database exists") are noise in the logs.
                    init_command="SET SESSION sql_notes = 0",
                )
        except TimeoutError:
            raise DB_DRIVER(
                retryable=True,
                cause=f"Can't connect to MySQL server on '{cfg.host}:{cfg.port}' "
                      f"(timed out after {connect_timeout:g}s)") from None
        return conn


async def _close(conn: asyncmy.Connection) -> None:
    # COM_QUIT spares the server an "Aborted connection" warning, but must not hang on a
    # dead peer.
    try:
        async with asyncio.timeout(1.0):
            await conn.ensure_closed()
    except _DRIVER_ERRORS:
        conn.close()


@contextlib.asynccontextmanager
async def open_conn(
    cfg: ConnConfig,
    database: str | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> AsyncIterator[asyncmy.Connection]:
    """`async with open_conn(cfg) as conn:`; driver errors in the block become DB_DRIVER
    too."""
    conn = await connect(cfg, database, connect_timeout)
    try:
        with driver_errors(cfg):
            yield conn
    finally:
        await _close(conn)


# --- queries -------------------------------------------------------------------------------

_VARIABLES = ("version_comment", "server_id", "log_bin", "binlog_format", "binlog_row_image",
              "gtid_mode", "hostname", "port")


async def verify(cfg: ConnConfig, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> ServerInfo:
    """Connect and read what a migration needs to know about the server."""
    async with open_conn(cfg, connect_timeout=connect_timeout) as conn:
        [(version,)] = await fetchall(conn, "SELECT VERSION()")
        # SHOW VARIABLES silently omits variables this server does not have (gtid_mode on
        # MariaDB, binlog_row_image on very old servers), where SELECT @@x would fail.
        placeholders = ", ".join(["%s"] * len(_VARIABLES))
        rows = await fetchall(
            conn, f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({placeholders})", _VARIABLES)
    var = {str(name).lower(): "" if value is None else str(value) for name, value in rows}
    version = str(version)
    is_mariadb = "mariadb" in version.lower() or "mariadb" in var.get("version_comment",
                                                                       "").lower()
    return ServerInfo(
        flavor="mariadb" if is_mariadb else "mysql",
        version=version,
        server_id=int(var.get("server_id") or 0),
        log_bin=var.get("log_bin", "").upper() in ("ON", "1"),
        binlog_format=var.get("binlog_format", "").upper(),
        binlog_row_image=var.get("binlog_row_image", "").upper(),
        gtid_mode=var.get("gtid_mode", "").upper(),
        hostname=var.get("hostname", ""),
        port=int(var.get("port") or 0),
    )


async def list_schemas(cfg: ConnConfig,
                       connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> list[str]:
    """All schemas the user can see, system schemas included (SHOW DATABASES)."""
    async with open_conn(cfg, connect_timeout=connect_timeout) as conn:
        return [str(row[0]) for row in await fetchall(conn, "SHOW DATABASES")]


async def list_tables(cfg: ConnConfig, schema: str,
                      connect_timeout: float = DEFAULT_CONNECT_TIMEOUT) -> list[str]:
    """Base tables of `schema` (views and sequences excluded), sorted by code point.

    MariaDB reports system-versioned tables as 'SYSTEM VERSIONED'; they hold data like any
    base table, so they are included.
    """
    async with open_conn(cfg, connect_timeout=connect_timeout) as conn:
        rows = await fetchall(
            conn,
            "SELECT TABLE_NAME FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED')",
            (schema,),
        )
    # Sorted here rather than by ORDER BY, whose order depends on the server's collation.
    return sorted(str(row[0]) for row in rows)


async def fetchall(conn: asyncmy.Connection, sql: str,
                   args: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run one statement and return its rows as tuples (errors untranslated: callers
    wrap a whole operation in driver_errors)."""
    async with conn.cursor() as cur:
        await cur.execute(sql, args)
        return [tuple(r) for r in await cur.fetchall()]


def as_text(v: Any) -> str:
    """A value the server returned as text or bytes (information_schema, SHOW ...)."""
    return v.decode() if isinstance(v, bytes | bytearray) else str(v)
