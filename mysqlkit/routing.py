"""Block-allow list and table routing of one source, from a task's table_migrate_rule.

A rule `(schema_pattern, table_pattern, target_schema, target_table, filter_names)` both
selects tables (DM's block-allow list) and may route them (DM's table router). Patterns use
DM's wildcards `*` and `?`; a pattern starting with `~` is a regular expression, as in DM's
block-allow list. Matching is case-sensitive unless asked otherwise.

Selection is the union of all rules. The target of a selected table comes from the first
matching rule that routes (has a non-empty target schema or table), rules with a table
pattern before whole-schema rules (empty table pattern). This is what DM does with the
same task: it selects with a block-allow list and routes with a table router that prefers
table-level rules, so `[db.*]` followed by `[db.t1 → x.t1]` still sends `db.t1` to `x`. A
table matched only by rules without a target keeps its names.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from errors import CONFIG_INVALID, FILTER_RULE_NOT_FOUND
from mysqlkit.upstream import ConnConfig, list_schemas, list_tables

if TYPE_CHECKING:
    from domain.task_models import Task

__all__ = [
    "SYSTEM_SCHEMAS",
    "Pattern",
    "RouteRule",
    "TableRef",
    "TableRouter",
    "is_system_schema",
    "migrate_targets",
    "router_for_source",
    "validate_filter_names",
]

# Never migrated, whatever the rules say. METRICS_SCHEMA/INSPECTION_SCHEMA are TiDB's, listed
# because DM treats them as system schemas too; names compare case-insensitively, as the
# server does for information_schema and performance_schema.
SYSTEM_SCHEMAS = frozenset({
    "mysql", "information_schema", "performance_schema", "sys",
    "metrics_schema", "inspection_schema",
})

# How many schemas migrate_targets lists at once (each listing is one connection).
_LIST_CONCURRENCY = 8


def is_system_schema(schema: str) -> bool:
    return schema.lower() in SYSTEM_SCHEMAS


@dataclass(frozen=True, order=True)
class TableRef:
    schema: str
    table: str

    def __str__(self) -> str:
        # DM's filter.Table.String(): backtick-quoted, inner backticks doubled.
        return "`{}`.`{}`".format(self.schema.replace("`", "``"), self.table.replace("`", "``"))


class Pattern:
    """One schema or table pattern: wildcards `*` (any run) and `?` (one character), or a
    regular expression after `~` (searched, not anchored, as Go's MatchString does)."""

    __slots__ = ("_re", "_search", "text")

    def __init__(self, text: str, case_sensitive: bool = True) -> None:
        self.text = text
        flags = 0 if case_sensitive else re.IGNORECASE
        if text.startswith("~"):
            try:
                self._re = re.compile(text[1:], flags)
            except re.error as exc:
                raise CONFIG_INVALID(f"invalid regular expression pattern {text!r}: {exc}") \
                    from None
            self._search = True
        else:
            parts = ("." if ch == "?" else ".*" if ch == "*" else re.escape(ch) for ch in text)
            self._re = re.compile("".join(parts), flags | re.DOTALL)
            self._search = False

    @property
    def is_literal(self) -> bool:
        return not self.text.startswith("~") and "*" not in self.text and "?" not in self.text

    def matches(self, name: str) -> bool:
        if self._search:
            return self._re.search(name) is not None
        return self._re.fullmatch(name) is not None

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


@dataclass(frozen=True)
class RouteRule:
    schema_pattern: str
    table_pattern: str = "*"
    target_schema: str | None = None
    target_table: str | None = None
    filter_names: tuple[str, ...] = ()

    @property
    def routes(self) -> bool:
        """Whether the rule renames anything (an empty target keeps the source name)."""
        return bool(self.target_schema) or bool(self.target_table)


RuleLike = RouteRule | tuple[str, str, str | None, str | None, Sequence[str]]


def _as_rule(rule: RuleLike) -> RouteRule:
    if isinstance(rule, RouteRule):
        return rule
    schema, table, tschema, ttable, filters = rule
    return RouteRule(schema, table, tschema, ttable, tuple(filters))


class TableRouter:
    """Selection and routing for one source; immutable once built."""

    def __init__(self, rules: Iterable[RuleLike], case_sensitive: bool = True) -> None:
        self.rules: tuple[RouteRule, ...] = tuple(_as_rule(r) for r in rules)
        self.case_sensitive = case_sensitive
        compiled: list[tuple[RouteRule, Pattern, Pattern]] = []
        for rule in self.rules:
            if not rule.schema_pattern:
                raise CONFIG_INVALID("schema pattern of a table migrate rule must not be empty")
            # An empty table pattern selects the whole schema, as DM's do-dbs does.
            compiled.append((rule, Pattern(rule.schema_pattern, case_sensitive),
                             Pattern(rule.table_pattern or "*", case_sensitive)))
        self._compiled = tuple(compiled)

    def __repr__(self) -> str:
        return f"TableRouter({list(self.rules)!r})"

    def rules_for(self, schema: str, table: str) -> list[RouteRule]:
        """Every rule matching the table, in rule order (system schemas match none)."""
        if is_system_schema(schema):
            return []
        return [rule for rule, sp, tp in self._compiled
                if sp.matches(schema) and tp.matches(table)]

    def selects(self, schema: str, table: str) -> bool:
        return bool(self.rules_for(schema, table))

    def may_select_schema(self, schema: str) -> bool:
        """Whether some table of `schema` could be selected (to skip listing the others)."""
        if is_system_schema(schema):
            return False
        return any(sp.matches(schema) for _, sp, _ in self._compiled)

    def route(self, schema: str, table: str) -> TableRef | None:
        """Target of `schema.table`, or None when it is not migrated."""
        matched = self.rules_for(schema, table)
        if not matched:
            return None
        routing = [r for r in matched if r.routes]
        if not routing:
            return TableRef(schema, table)
        rule = next((r for r in routing if r.table_pattern), routing[0])
        return TableRef(rule.target_schema or schema, rule.target_table or table)

    def route_schema(self, schema: str) -> str | None:
        """Target of a database-level statement (CREATE/DROP DATABASE): the target schema of
        the first whole-schema rule that routes, else of the first routing rule matching
        the schema, else the schema itself; None when no table of it is migrated."""
        if not self.may_select_schema(schema):
            return None
        matched = [r for r, sp, _ in self._compiled if sp.matches(schema)]
        routing = [r for r in matched if r.target_schema]
        if not routing:
            return schema
        rule = next((r for r in routing if r.table_pattern in ("", "*")), routing[0])
        return rule.target_schema

    def filter_names(self, schema: str, table: str) -> tuple[str, ...]:
        """Binlog filter rule names applying to the table: those of every matching rule,
        as DM attaches each rule's filters to that rule's patterns."""
        names: dict[str, None] = {}
        for rule in self.rules_for(schema, table):
            names.update(dict.fromkeys(rule.filter_names))
        return tuple(names)


def validate_filter_names(task: Task) -> None:
    """Every binlog_filter_rule name used by a rule must exist in the task's map."""
    known = task.binlog_filter_rule or {}
    for rule in task.table_migrate_rule:
        for name in rule.binlog_filter_rule or ():
            if name not in known:
                raise FILTER_RULE_NOT_FOUND(name)


def router_for_source(task: Task, source_name: str, case_sensitive: bool = True) -> TableRouter:
    """The router of one subtask: the task's rules whose source is `source_name`."""
    validate_filter_names(task)
    rules = []
    for rule in task.table_migrate_rule:
        if rule.source.source_name != source_name:
            continue
        target = rule.target
        rules.append(RouteRule(
            schema_pattern=rule.source.schema_,
            table_pattern=rule.source.table,
            target_schema=target.schema_ if target is not None else None,
            target_table=target.table if target is not None else None,
            filter_names=tuple(rule.binlog_filter_rule or ()),
        ))
    return TableRouter(rules, case_sensitive=case_sensitive)


async def migrate_schemas(cfg: ConnConfig, router: TableRouter) -> list[tuple[str, str]]:
    """(source, target) of every upstream schema the router migrates, tables or not: a
    schema still empty at the dump exists on the target all the same, for the tables
    created in it later."""
    out = []
    for s in await list_schemas(cfg):
        target = router.route_schema(s)
        if target is not None:
            out.append((s, target))
    return out


async def migrate_targets(
    cfg: ConnConfig,
    router: TableRouter,
    schema_pattern: str | None = None,
    table_pattern: str | None = None,
) -> list[tuple[TableRef, TableRef]]:
    """(source, target) of every upstream base table the router migrates, sorted by source.

    `schema_pattern`/`table_pattern` narrow the source tables further (wildcards; empty or
    None means no narrowing). Driver errors surface as DB_DRIVER.
    """
    sp = Pattern(schema_pattern, router.case_sensitive) if schema_pattern else None
    tp = Pattern(table_pattern, router.case_sensitive) if table_pattern else None
    schemas = [s for s in await list_schemas(cfg)
               if router.may_select_schema(s) and (sp is None or sp.matches(s))]
    gate = asyncio.Semaphore(_LIST_CONCURRENCY)

    async def tables_of(schema: str) -> list[str]:
        async with gate:
            return await list_tables(cfg, schema)

    listed = await asyncio.gather(*(tables_of(s) for s in schemas))
    pairs: list[tuple[TableRef, TableRef]] = []
    for schema, tables in zip(schemas, listed, strict=True):
        for table in tables:
            if tp is not None and not tp.matches(table):
                continue
            target = router.route(schema, table)
            if target is not None:
                pairs.append((TableRef(schema, table), target))
    pairs.sort()
    return pairs
