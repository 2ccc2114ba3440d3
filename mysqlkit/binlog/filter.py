"""DM's binlog event filter, as the DM v1 OpenAPI configures it.

A task's `binlog_filter_rule` maps names to `ignore_event` (event types) and `ignore_sql`
(regular expressions); each table migrate rule names the filters applying to the tables it
selects. DM turns each (rule, filter) pair into a binlog event rule with action Ignore on
the rule's source schema/table patterns, so an event is skipped when any filter of any
matching rule ignores it: its event type matches the filter's events, or (query events
only) its SQL matches one of the filter's patterns.

Event types are DM's (tiflow pkg/binlog-filter), case-insensitive: `all`, `all dml`,
`all ddl`, `none`, `none dml`, `none ddl`, `insert`, `update`, `delete`, the DDL kinds
(`create database`, `drop database`, `alter database`, `create table`, `drop table`,
`truncate table`, `rename table`, `create index`, `drop index`, `create view`, `drop view`,
`alter table`, partition and the finer alter kinds such as `add column`; `create schema`,
`drop schema` and `alter schema` are aliases), and `incompatible ddl changes`. As in DM,
the events of one filter are read in order and the first deciding entry wins, so
`["none", "insert"]` ignores nothing.

SQL patterns are searched (not anchored), case-insensitively. DM compiles them with Go's
regexp (RE2); Python's `re` accepts nearly the same syntax, but not RE2's `\\z` (write
`\\Z` or `$`) nor a scoped `(?i)` after the pattern's start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from errors import CONFIG_INVALID, FILTER_RULE_NOT_FOUND
from mysqlkit.routing import Pattern, TableRouter, is_system_schema

if TYPE_CHECKING:
    from domain.task_models import Task

__all__ = ["DDL_EVENTS", "DML_EVENTS", "BinlogFilter", "normalize_event"]

DML_EVENTS = frozenset({"insert", "update", "delete"})
# DDL kinds DM classifies as plain DDL...
_PLAIN_DDL = frozenset({
    "create database", "alter database", "create table", "create index", "create view",
    "drop view", "alter table", "add table partition",
})
# ...and those it calls incompatible (they also match `incompatible ddl changes`).
_INCOMPATIBLE_DDL = frozenset({
    "drop database", "drop table", "drop index", "rename table", "truncate table",
    "drop table partition", "truncate table partition",
    "value range decrease", "precision decrease", "modify column", "rename column",
    "rename index", "drop column", "drop primary key", "drop unique key",
    "modify default value", "modify constraint", "modify columns order", "modify charset",
    "modify collation", "remove auto increment", "modify storage engine",
    "reorganize table partition", "rebuild table partition", "coalesce table partition",
    "split table partition", "exchange table partition", "add foreign key",
    "drop foreign key", "modify schema charset and collate",
    "modify table charset and collate", "modify table comment", "recover table",
    "alter table partitioning", "remove table partitioning", "add column",
    "set default value", "rebase auto id", "add primary key", "alter index visibility",
    "alter ttl info", "alter ttl remove", "multi schema change",
})
DDL_EVENTS = _PLAIN_DDL | _INCOMPATIBLE_DDL
_ALIASES = {
    "create schema": "create database",
    "drop schema": "drop database",
    "alter schema": "alter database",
}
# Only valid in a filter's event list. "" is DM's NullEvent: accepted, matches nothing.
_RULE_ONLY = frozenset({
    "all", "all dml", "all ddl", "none", "none dml", "none ddl", "incompatible ddl changes", "",
})


def normalize_event(name: str) -> str | None:
    """DM's canonical event name (lowercase, aliases resolved), or None if unknown."""
    ev = name.strip().lower()
    ev = _ALIASES.get(ev, ev)
    if ev in DML_EVENTS or ev in DDL_EVENTS or ev in _RULE_ONLY:
        return ev
    return None


def _classify(event: str) -> str:
    if event in DML_EVENTS:
        return "dml"
    if event in _PLAIN_DDL:
        return "ddl"
    if event in _INCOMPATIBLE_DDL:
        return "incompatible"
    return ""


def _match_event(events: tuple[str, ...], tp: str, event: str) -> bool:
    """tiflow's BinlogEvent.matchEvent: the first deciding entry wins."""
    for rule in events:
        if rule == "all":
            return True
        if rule == "none":
            return False
        if tp != "dml":
            if rule == "all ddl":
                return True
            if rule == "none ddl":
                return False
            if tp == "incompatible" and rule == "incompatible ddl changes":
                return True
        else:
            if rule == "all dml":
                return True
            if rule == "none dml":
                return False
        if rule == event:
            return True
    return False


@dataclass(frozen=True)
class _Rule:
    name: str
    events: tuple[str, ...]
    sql: tuple[re.Pattern[str], ...]

    def ignores_event(self, tp: str, event: str) -> bool:
        return bool(self.events) and _match_event(self.events, tp, event)

    def ignores_sql(self, sql: str) -> bool:
        return any(p.search(sql) is not None for p in self.sql)


def _compile_rule(name: str, ignore_event: list[str] | None,
                  ignore_sql: list[str] | None) -> _Rule:
    events = []
    for ev in ignore_event or ():
        norm = normalize_event(ev)
        if norm is None:
            raise CONFIG_INVALID(f"binlog filter rule {name}: event type {ev!r} not valid",
                                 workaround="Use DM's event types, e.g. `all dml`, `insert`, "
                                            "`truncate table`.")
        events.append(norm)
    patterns = []
    for text in ignore_sql or ():
        try:
            patterns.append(re.compile(text, re.IGNORECASE))
        except re.error as exc:
            raise CONFIG_INVALID(f"binlog filter rule {name}: invalid regular expression "
                                 f"{text!r} in ignore_sql: {exc}") from None
    return _Rule(name, tuple(events), tuple(patterns))


class BinlogFilter:
    """The binlog filter of one subtask: `task`'s filter rules on `router`'s tables.

    Raises CONFIG_INVALID for an unknown event type or an invalid regular expression, and
    FILTER_RULE_NOT_FOUND for a name the rules use but the task does not define, so that
    building it at task creation reports the mistake.
    """

    def __init__(self, task: Task, router: TableRouter) -> None:
        defined = task.binlog_filter_rule or {}
        self._rules = {name: _compile_rule(name, r.ignore_event, r.ignore_sql)
                       for name, r in defined.items()}
        for rule in router.rules:
            for name in rule.filter_names:
                if name not in self._rules:
                    raise FILTER_RULE_NOT_FOUND(name)
        self._router = router
        self._any = any(rule.filter_names for rule in router.rules)
        self._schema_rules = tuple(
            (Pattern(rule.schema_pattern, router.case_sensitive), rule.filter_names)
            for rule in router.rules if rule.filter_names)
        self._table_rules: dict[tuple[str, str], tuple[_Rule, ...]] = {}
        self._dml_skips: dict[tuple[str, str], frozenset[str]] = {}

    def rules_for(self, schema: str, table: str) -> tuple[_Rule, ...]:
        """Filters applying to a table; `table` empty: to a schema, i.e. those of every
        rule whose schema pattern matches, whatever its table pattern."""
        key = (schema, table)
        got = self._table_rules.get(key)
        if got is None:
            if table:
                names = self._router.filter_names(schema, table)
            elif is_system_schema(schema):
                names = ()
            else:
                seen: dict[str, None] = {}
                for pattern, filter_names in self._schema_rules:
                    if pattern.matches(schema):
                        seen.update(dict.fromkeys(filter_names))
                names = tuple(seen)
            got = self._table_rules[key] = tuple(self._rules[n] for n in names)
        return got

    def skip_dml(self, schema: str, table: str, kind: str) -> bool:
        """Whether row events of this kind ("insert", "update", "delete") on the source
        table are ignored. Cached per table: this runs for every row event."""
        if not self._any:
            return False
        skips = self._dml_skips.get((schema, table))
        if skips is None:
            rules = self.rules_for(schema, table)
            skips = frozenset(k for k in DML_EVENTS
                              if any(r.ignores_event("dml", k) for r in rules))
            self._dml_skips[(schema, table)] = skips
        return kind in skips

    def skip_ddl(self, schema: str, table: str, event_type: str, sql: str) -> bool:
        """Whether a DDL (query event) is ignored. `table` is empty for database-level
        DDL; `event_type` is DM's name ("create table", ...), or "" when the statement has
        no DM event type, so that only the SQL patterns can ignore it."""
        if not self._any:
            return False
        event = normalize_event(event_type) if event_type else ""
        if event is None or event in DML_EVENTS or (event and event in _RULE_ONLY):
            raise ValueError(f"not a DDL event type: {event_type!r}")
        tp = _classify(event)
        for rule in self.rules_for(schema, table):
            if tp and rule.ignores_event(tp, event):
                return True
            if sql and rule.ignores_sql(sql):
                return True
        return False
