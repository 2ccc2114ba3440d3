"""A precheck's result as DM renders it: items with their state, errors and instructions;
`PrecheckResult` gives DM's text (\"pre-check is passed. \" or the header and the JSON of
`checker.Results`) and the error 26005 on failure."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from errors import PRECHECK_FAILED, DMError

__all__ = [
    "CHECK_TASK_MSG_HEADER",
    "CHECK_TASK_SUCCESS",
    "CheckError",
    "CheckResult",
    "PrecheckResult",
    "State",
]


CHECK_TASK_MSG_HEADER = "fail to check synchronization configuration with type"


CHECK_TASK_SUCCESS = "pre-check is passed. "


# DM's ctl defaults for how many errors/warnings the detail shows.
DEFAULT_ERROR_LIMIT = 10


DEFAULT_WARN_LIMIT = 10


class State(StrEnum):
    SUCCESS = "success"
    FAILURE = "fail"
    WARNING = "warn"


@dataclass
class CheckError:
    severity: State
    short_error: str
    self_: str = ""
    other: str = ""
    instruction: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity.value, "short_error": self.short_error}
        if self.self_:
            out["self"] = self.self_
        if self.other:
            out["other"] = self.other
        if self.instruction:
            out["instruction"] = self.instruction
        return out


@dataclass
class CheckResult:
    """One checker's outcome (DM's checker.Result), with the item name it belongs to."""

    item: str  # the ignore_checking_items name; "" for connection failures
    name: str
    desc: str
    state: State = State.SUCCESS
    errors: list[CheckError] = field(default_factory=list)
    instruction: str = ""
    extra: str = ""
    source: str | None = None  # None: the target, or several sources
    id: int = 0

    def fail(self, message: str, **kw: str) -> CheckResult:
        self.state = State.FAILURE
        self.errors.append(CheckError(State.FAILURE, message, **kw))
        return self

    def warn(self, message: str, **kw: str) -> CheckResult:
        if self.state != State.FAILURE:
            self.state = State.WARNING
        self.errors.append(CheckError(State.WARNING, message, **kw))
        return self

    def to_json(self, errors: list[CheckError] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name, "desc": self.desc,
                               "state": self.state.value}
        errs = self.errors if errors is None else errors
        if errs:
            out["errors"] = [e.to_json() for e in errs]
        if self.instruction:
            out["instruction"] = self.instruction
        if self.extra:
            out["extra"] = self.extra
        return out


def _go_json(obj: Any) -> str:
    """json.MarshalIndent(obj, "\\t", "\\t") as Go writes it, HTML-safe escapes included."""
    text = json.dumps(obj, indent="\t", ensure_ascii=False).replace("\n", "\n\t")
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


@dataclass
class PrecheckResult:
    results: list[CheckResult] = field(default_factory=list)
    # ignore_checking_items held `all`: DM runs nothing and answers an empty check result.
    skipped_all: bool = False
    error_limit: int = DEFAULT_ERROR_LIMIT
    warn_limit: int = DEFAULT_WARN_LIMIT

    @property
    def errors(self) -> list[CheckResult]:
        return [r for r in self.results if r.state == State.FAILURE]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if r.state == State.WARNING]

    @property
    def passed(self) -> bool:
        return not self.errors

    def summary(self) -> dict[str, Any]:
        ok = sum(r.state == State.SUCCESS for r in self.results)
        return {"passed": self.passed, "total": len(self.results), "successful": ok,
                "failed": len(self.errors), "warning": len(self.warnings)}

    def detail(self) -> dict[str, Any]:
        """DM's checker.Results with only failed/warning items, errors and warnings capped
        at the limits (the summary still counts everything)."""
        warn_left, err_left = self.warn_limit, self.error_limit
        shown: list[dict[str, Any]] = []
        for r in self.results:
            if r.state == State.SUCCESS:
                continue
            if not r.errors:
                if r.state == State.WARNING and warn_left > 0:
                    warn_left -= 1
                    shown.append(r.to_json([]))
                elif r.state == State.FAILURE and err_left > 0:
                    err_left -= 1
                    shown.append(r.to_json([]))
                continue
            kept: list[CheckError] = []
            for e in r.errors:
                if e.severity == State.WARNING and warn_left > 0:
                    warn_left -= 1
                    kept.append(e)
                elif e.severity == State.FAILURE and err_left > 0:
                    err_left -= 1
                    kept.append(e)
            if kept:
                shown.append(r.to_json(kept))
        return {"results": shown, "summary": self.summary()}

    def detail_json(self) -> str:
        return _go_json(self.detail())

    def _failure_message(self) -> str:
        return f"check was failed, please see detail\n detail: {self.detail_json()}"

    def text(self) -> str:
        """The `check_result` string DM answers (for a failure: the error's message)."""
        if self.skipped_all:
            return ""
        if not self.passed:
            return f"{CHECK_TASK_MSG_HEADER}: {self._failure_message()}"
        if all(r.state == State.SUCCESS for r in self.results):
            return CHECK_TASK_SUCCESS
        return (f"{CHECK_TASK_MSG_HEADER}: no errors but some warnings\n"
                f" detail: {self.detail_json()}")

    def to_error(self) -> DMError:
        """26005 with the JSON detail; only meaningful when not passed."""
        return PRECHECK_FAILED(self._failure_message())
