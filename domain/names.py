"""The names users give (sources, tasks, templates) and the file names they pass (binlog
files): one rule each, checked where a request is parsed.

A name ends up in URL paths, actor names, file paths under the data dir and MySQL
identifiers in the target's meta schema. DM's contract lets a name hold any character
(a task called ``t-Ë!s`t``, percent-encoded in paths), so the rule refuses only what one
of those places cannot take back: a slash or a backslash (a path could never name it
again, nor could its directory stay in the data dir), a control character (NUL, newline,
...), `.` and `..`, white space at either end (MySQL drops it from identifiers), and
more characters than the longest identifier made from the name holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator, Field, StrictStr, ValidationInfo

# Refused anywhere in a name: path separators and control characters (C0, DEL, C1, and
# the Unicode line and paragraph separators).
_REFUSED = re.compile(r"[/\\\x00-\x1f\x7f-\x9f\u2028\u2029]")
# DM's own limit for a source id (MaxSourceIDLength).
SOURCE_NAME_MAX = 32
# The longest meta table is `<task>_loader_deferred_index`: 22 more characters, and a
# MySQL identifier holds 64.
TASK_NAME_MAX = 64 - len("_loader_deferred_index")
# A binlog file: DM's rule (binlog.VerifyFilename), a base name and a numeric extension.
_BINLOG_FILE = re.compile(r"[A-Za-z0-9_.-]+\.[0-9]+")
BINLOG_FILE_MAX = 255


def check_name(kind: str, value: str, limit: int) -> str:
    """`value` if it is a valid name of this kind, else ValueError saying why."""
    if not value:
        raise ValueError(f"{kind} must not be empty")
    if len(value) > limit:
        raise ValueError(f"{kind} is {len(value)} characters long, at most {limit} are allowed")
    bad = _REFUSED.search(value)
    if bad:
        what = "a slash" if bad.group() in "/\\" else f"the control character {bad.group()!r}"
        raise ValueError(f"{kind} {_shown(value)} is not valid: it holds {what}")
    if value in (".", "..") or value != value.strip():
        raise ValueError(f"{kind} {_shown(value)} is not valid: not '.' or '..', and no "
                         "white space at either end")
    return value


# /tasks/templates and /tasks/converters are routes of their own, not tasks.
RESERVED_TASK_NAMES = frozenset({"templates", "converters"})


def check_task_name(value: str) -> str:
    check_name("task name", value, TASK_NAME_MAX)
    if value in RESERVED_TASK_NAMES:
        raise ValueError(f"task name {value!r} is not valid: /tasks/{value} is another "
                         "route of the API")
    return value


def check_binlog_file(value: str) -> str:
    """A binlog file name (no directory part), as DM checks relay_binlog_name; empty is
    "not given"."""
    if not value:
        return value
    if len(value) > BINLOG_FILE_MAX or not _BINLOG_FILE.fullmatch(value) \
            or value.startswith("."):
        raise ValueError(f"binlog file name {_shown(value)} is not valid: a file name such "
                         "as mysql-bin.000001, without a directory")
    return value


def check_identifier(kind: str, value: str) -> str:
    """A schema name dmray creates on the target (the meta schema)."""
    if not value or len(value) > 64 or "\x00" in value or value.endswith(" "):
        raise ValueError(f"{kind} {_shown(value)} is not a valid MySQL schema name "
                         "(1 to 64 characters, no NUL, not ending with a space)")
    return value


def _shown(value: str) -> str:
    """The value as an error message may quote it: bounded and printable."""
    text = value if len(value) <= 64 else value[:64] + "..."
    return repr(text)


def _checked(check: Callable[[str], str]) -> AfterValidator:
    """A field validator running `check`, except on what the log already holds (parsed
    with context {"stored": True}): a name accepted by an earlier version stays usable,
    so that it can be deleted."""
    def run(value: str, info: ValidationInfo) -> str:
        if isinstance(info.context, dict) and info.context.get("stored"):
            return value
        return check(value)
    return AfterValidator(run)


SourceName = Annotated[StrictStr, Field(min_length=1), _checked(
    lambda v: check_name("source name", v, SOURCE_NAME_MAX))]
TaskName = Annotated[StrictStr, Field(min_length=1), _checked(check_task_name)]
BinlogFile = Annotated[StrictStr, _checked(check_binlog_file)]
MetaSchema = Annotated[StrictStr, _checked(lambda v: check_identifier("meta_schema", v))]
