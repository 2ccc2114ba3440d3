"""Quoting of SQL identifiers for MySQL/MariaDB."""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """Backtick-quote an identifier (schema, table, column), doubling inner backticks.

    Never build SQL from unquoted names: `db-name`, reserved words and names with quotes
    or backticks are all legal in MySQL.
    """
    if not name:
        raise ValueError("an SQL identifier cannot be empty")
    if "\x00" in name:
        raise ValueError("an SQL identifier cannot contain NUL")
    return "`" + name.replace("`", "``") + "`"
