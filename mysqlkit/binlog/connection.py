"""The client connection a binlog stream runs on (the source's, for the reader and the relay
writer): its pymysql settings, the server flavor, and the translation of what a broken or
refused stream raises into DMErrors (BINLOG_PURGED when the binlog asked for is gone,
BINLOG_READ otherwise; the password never appears in a message)."""

from __future__ import annotations

import re
from typing import Any

import pymysql

from errors import BINLOG_PURGED, BINLOG_READ, DMError
from mysqlkit.upstream import ConnConfig, _ssl_context

__all__ = ["conn_settings", "detect_flavor", "translate_error"]

_ER_MASTER_FATAL_READING_BINLOG = 1236
# 1236 messages that mean "the binlog you ask for is gone" (MariaDB and MySQL wordings).
_PURGED_RE = re.compile(r"could not find first log file|could not find gtid state|"
                        r"purged|no longer available|binary log.*not found",
                        re.IGNORECASE)


def conn_settings(cfg: ConnConfig, connect_timeout: float,
                  read_timeout: float) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "host": cfg.host, "port": cfg.port, "user": cfg.user, "password": cfg.password,
        "connect_timeout": connect_timeout, "read_timeout": read_timeout,
        "charset": "utf8mb4",
    }
    ctx = _ssl_context(cfg)
    if ctx is not None:
        settings["ssl"] = ctx
    return settings


def translate_error(exc: BaseException, cfg: ConnConfig, what: str) -> DMError:
    text = str(exc.args[1]) if isinstance(exc, pymysql.MySQLError) and len(exc.args) > 1 \
        else (str(exc) or type(exc).__name__)
    if cfg.password:
        text = text.replace(cfg.password, "******")
    code = exc.args[0] if isinstance(exc, pymysql.MySQLError) and exc.args else None
    if code == _ER_MASTER_FATAL_READING_BINLOG and _PURGED_RE.search(text):
        return BINLOG_PURGED(what, cause=text)
    return BINLOG_READ(text, cause=text)


def detect_flavor(cfg: ConnConfig, connect_timeout: float) -> str:
    conn = pymysql.connect(**conn_settings(cfg, connect_timeout, 30.0))
    try:
        info = conn.get_server_info()
    finally:
        conn.close()
    return "mariadb" if "mariadb" in str(info).lower() else "mysql"
