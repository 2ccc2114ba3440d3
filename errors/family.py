"""The error type itself: `ErrorCode` (a catalogue entry: code, message, scope, level,
workaround, whether retrying can cure it), `DMError` (what is raised and rendered, DM's
`[code=…:class=…:scope=…:level=…], Message: …`) and `scrub` (passwords out of messages)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class ErrScope(StrEnum):
    NOT_SET = "not-set"
    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"
    INTERNAL = "internal"


class ErrLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


# Class names by code range, as DM's terror assigns them.
_CLASS_BY_RANGE: tuple[tuple[int, str], ...] = (
    (49001, "openapi"),
    (46001, "scheduler"),
    (44001, "schema-tracker"),
    (42001, "dm-tracer"),
    (40001, "dm-worker"),
    (38001, "dm-master"),
    (36001, "sync-unit"),
    (34001, "load-unit"),
    (32001, "dump-unit"),
    (30001, "relay-unit"),
    (28001, "relay-event-lib"),
    (26001, "task-check"),
    (24001, "checkpoint"),
    (22001, "binlog-op"),
    (20001, "config"),
    (11001, "functional"),
    (10001, "database"),
)


def class_of(code: int) -> str:
    for start, name in _CLASS_BY_RANGE:
        if code >= start:
            return name
    return "not-set"


@dataclass(frozen=True)
class ErrorCode:
    """A catalogue entry: the fixed part of an error, its message a format string."""

    code: int
    message: str
    scope: ErrScope = ErrScope.INTERNAL
    level: ErrLevel = ErrLevel.MEDIUM
    workaround: str = ""
    # Whether waiting and trying again can cure it (a lost connection, an unreachable
    # server, a lock wait), as DM's terror classes errors. A subtask retries a retryable
    # error for a bounded time (RuntimeConfig.retry_timeout), showing it in error_msg;
    # any other error pauses it at once.
    retryable: bool = False

    @property
    def cls(self) -> str:
        return class_of(self.code)

    def __call__(self, *args: object, cause: str = "", workaround: str | None = None,
                 retryable: bool | None = None) -> DMError:
        return DMError(
            self,
            self.message.format(*args) if args else self.message,
            cause=cause,
            workaround=self.workaround if workaround is None else workaround,
            retryable=self.retryable if retryable is None else retryable,
        )


# `password=…` / `pwd=…` assignments and the password part of a URL; MySQL's own
# "(using password: YES)" carries no secret and is kept, users know it well.
_ASSIGN_RE = re.compile(r"\b(password|passwd|pwd)(\s*=\s*)('[^']*'|\"[^\"]*\"|[^\s,;&)]+)",
                        re.IGNORECASE)
# Greedy up to the last '@' before the host: a password may hold an unencoded '@'.
_URL_RE = re.compile(r"(://[^:/@\s]+:)(\S+)(@[^@\s]+)")


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove passwords from a message meant for users or logs: known secrets verbatim,
    and anything shaped like a password assignment or a URL's password."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "******")
    text = _ASSIGN_RE.sub(r"\1\2******", text)
    return _URL_RE.sub(r"\1******\3", text)


class DMError(Exception):
    """An error with DM's code/class/scope/level; what the API and the logs show."""

    def __init__(self, code: ErrorCode, message: str, cause: str = "", workaround: str = "",
                 retryable: bool | None = None):
        super().__init__(message)
        self.error_code = code
        self.message = message
        self.cause = scrub(cause)
        self.workaround = workaround
        self.retryable = code.retryable if retryable is None else retryable

    @property
    def code(self) -> int:
        return self.error_code.code

    def __str__(self) -> str:
        ec = self.error_code
        text = (
            f"[code={ec.code}:class={ec.cls}:scope={ec.scope.value}:level={ec.level.value}], "
            f"Message: {self.message}"
        )
        if self.cause:
            text += f", RawCause: {self.cause}"
        if self.workaround:
            text += f", Workaround: {self.workaround}"
        return text

    def __reduce__(self) -> tuple[object, ...]:
        # Ray pickles exceptions across processes; keep every field.
        return (DMError, (self.error_code, self.message, self.cause, self.workaround,
                          self.retryable))
