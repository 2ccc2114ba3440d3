"""Converters between the OpenAPI Task and DM's YAML task file (DM v2.0+ task config).

`task_to_yaml` writes the layout of DM's documentation: global `routes`, `filters`,
`block-allow-list`, `mydumpers`, `loaders` and `syncers`, referenced by name from each of
`mysql-instances`. `yaml_to_task` reads such a file, whether written by us or by a DM user.

Round trip: `yaml_to_task(task_to_yaml(t)) == t` for every task whose rules are grouped by
source in `source_conf` order, whole-schema rules (empty table, DM's `do-dbs`) first within
a source. Other orders are normalised to that one, which changes no meaning: routing only
compares rules of one source and prefers table-level rules anyway. Two things the YAML
format cannot carry are normalised too: binlog filter rules no migrate rule uses are
dropped (DM rejects unused global rules), and `target: {}` becomes no target.

A binlog filter of the OpenAPI task is a template applied with the patterns of each rule
that names it; in the YAML each application is a filter of its own. They are named after
the template: the first is `<name>`, further ones `<name>-2`, `<name>-3`… so that reading
the file back recovers the template names.

Reading a DM file follows DM's own converter: each route rule and each block-allow entry
becomes a migrate rule (a route without a matching allow entry selects its tables too),
mydumper/loader/syncer settings come from the first instance, and `ignore-*` lists, column
mappings, expression filters and validators have no OpenAPI counterpart and are dropped.
Filters with `action: Do` cannot be expressed (OpenAPI rules only ignore) and are refused
rather than silently inverted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from domain.task_models import Task
from errors import CONFIG_INVALID, FILTER_RULE_NOT_FOUND, TASK_FILE_INVALID, DMError

__all__ = ["task_to_config", "task_to_yaml", "yaml_to_task"]

_GLOBAL = "global"  # the name DM's documentation gives the single unit configs
_CONSISTENCY_RE = re.compile(r"--consistency(?:=|\s+)(\S+)")
_DERIVED_NAME_RE = re.compile(r"(.+)-(\d+)")
_LEGACY_IMPORT_MODES = {"sql": "logical", "loader": "logical"}


# --- Task → YAML ------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings, so PEM certificates stay readable."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def _security_to_yaml(sec: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"ssl-ca-bytes": sec.ssl_ca_content,
                           "ssl-cert-bytes": sec.ssl_cert_content,
                           "ssl-key-bytes": sec.ssl_key_content}
    if sec.cert_allowed_cn is not None:
        out["cert-allowed-cn"] = list(sec.cert_allowed_cn)
    return out


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


class _Sections:
    """The named rule sections of a DM task file, filled instance by instance: routes,
    block-allow lists and binlog filters (one filter per (template, schema, table), named
    after its template, "-2", "-3"... when a template is used more than once)."""

    def __init__(self, templates: dict[str, Any]) -> None:
        self.templates = templates
        self.routes: dict[str, Any] = {}
        self.filters: dict[str, Any] = {}
        self.balists: dict[str, Any] = {}
        self._names: dict[tuple[str, str, str], str] = {}  # (template, schema, table) → name
        self._used: set[str] = set(templates)
        self._derived: dict[str, int] = {}

    def route(self, schema: str, table: str, tgt: Any) -> str:
        name = f"route-rule-{len(self.routes) + 1}"
        spec: dict[str, Any] = {"schema-pattern": schema}
        _put(spec, "table-pattern", table or None)
        _put(spec, "target-schema", tgt.schema_)
        _put(spec, "target-table", tgt.table)
        self.routes[name] = spec
        return name

    def balist(self, do_dbs: list[str], do_tables: list[dict[str, str]]) -> str:
        name = f"bw-rule-{len(self.balists) + 1}"
        balist: dict[str, Any] = {}
        if do_dbs:
            balist["do-dbs"] = do_dbs
        if do_tables:
            balist["do-tables"] = do_tables
        self.balists[name] = balist
        return name

    def filter(self, template: str, schema: str, table: str) -> str:
        if template not in self.templates:
            # Same answer as creating such a task: the name must exist.
            raise FILTER_RULE_NOT_FOUND(template)
        key = (template, schema, table)
        if key in self._names:
            return self._names[key]
        name = template if template not in self.filters else self._next_name(template)
        self._used.add(name)
        self._names[key] = name
        spec: dict[str, Any] = {"schema-pattern": schema}
        _put(spec, "table-pattern", table or None)
        tpl = self.templates[template]
        if tpl.ignore_event is not None:
            spec["events"] = list(tpl.ignore_event)
        if tpl.ignore_sql is not None:
            spec["sql-pattern"] = list(tpl.ignore_sql)
        spec["action"] = "Ignore"
        self.filters[name] = spec
        return name

    def _next_name(self, template: str) -> str:
        n = self._derived.get(template, 1)
        while True:
            n += 1
            name = f"{template}-{n}"
            if name not in self._used:
                break
        self._derived[template] = n
        return name


def _target_to_yaml(tc: Any) -> dict[str, Any]:
    target: dict[str, Any] = {"host": tc.host, "port": tc.port, "user": tc.user,
                              "password": tc.password}
    if tc.session is not None:
        target["session"] = ({"foreign_key_checks": tc.session.foreign_key_checks}
                             if tc.session.foreign_key_checks is not None else {})
    if tc.security is not None:
        target["security"] = _security_to_yaml(tc.security)
    return target


def _instance_to_yaml(task: Task, conf: Any, sections: _Sections) -> dict[str, Any]:
    inst: dict[str, Any] = {"source-id": conf.source_name}
    meta: dict[str, Any] = {}
    _put(meta, "binlog-name", conf.binlog_name)
    _put(meta, "binlog-pos", conf.binlog_pos)
    _put(meta, "binlog-gtid", conf.binlog_gtid)
    if meta:
        inst["meta"] = meta
    route_refs: list[str] = []
    filter_refs: list[str] = []
    do_dbs: list[str] = []
    do_tables: list[dict[str, str]] = []
    for rule in task.table_migrate_rule:
        if rule.source.source_name != conf.source_name:
            continue
        schema, table = rule.source.schema_, rule.source.table
        # An empty table pattern is a whole schema: DM's do-dbs (and no table-pattern).
        if table:
            do_tables.append({"db-name": schema, "tbl-name": table})
        else:
            do_dbs.append(schema)
        tgt = rule.target
        if tgt is not None and (tgt.schema_ is not None or tgt.table is not None):
            route_refs.append(sections.route(schema, table, tgt))
        for template in rule.binlog_filter_rule or ():
            ref = sections.filter(template, schema, table)
            if ref not in filter_refs:
                filter_refs.append(ref)
    if route_refs:
        inst["route-rules"] = route_refs
    if filter_refs:
        inst["filter-rules"] = filter_refs
    if do_dbs or do_tables:
        inst["block-allow-list"] = sections.balist(do_dbs, do_tables)
    if task.source_config.full_migrate_conf is not None:
        inst["mydumper-config-name"] = _GLOBAL
    inst["loader-config-name"] = _GLOBAL
    if task.source_config.incr_migrate_conf is not None:
        inst["syncer-config-name"] = _GLOBAL
    return inst


def _loader_to_yaml(task: Task) -> dict[str, Any]:
    # on_duplicate always travels in the loader (as DM's deprecated `on-duplicate`, which
    # `on-duplicate-logical` overrides), so a loader section exists even without full conf.
    full = task.source_config.full_migrate_conf
    loader: dict[str, Any] = {}
    if full is not None:
        loader["pool-size"] = full.import_threads
        for key, value in (("dir", full.data_dir), ("import-mode", full.import_mode),
                           ("sorting-dir-physical", full.sorting_dir),
                           ("disk-quota-physical", full.disk_quota),
                           ("checksum-physical", full.checksum), ("analyze", full.analyze),
                           ("range-concurrency", full.range_concurrency),
                           ("compress-kv-pairs", full.compress_kv_pairs),
                           ("pd-addr", full.pd_addr)):
            _put(loader, key, value)
        if full.security is not None:
            loader["security"] = _security_to_yaml(full.security)
        _put(loader, "on-duplicate-logical", full.on_duplicate_logical)
        _put(loader, "on-duplicate-physical", full.on_duplicate_physical)
    loader["on-duplicate"] = task.on_duplicate
    return loader


def task_to_config(task: Task) -> dict[str, Any]:
    """The DM task file as a plain mapping (what `task_to_yaml` dumps)."""
    doc: dict[str, Any] = {"name": task.name, "task-mode": task.task_mode}
    _put(doc, "shard-mode", task.shard_mode)
    if task.strict_optimistic_shard_mode:
        doc["strict-optimistic-shard-mode"] = True
    doc["meta-schema"] = task.meta_schema
    _put(doc, "timezone", task.timezone)
    doc["online-ddl"] = task.enhance_online_schema_change
    if task.ignore_checking_items is not None:
        doc["ignore-checking-items"] = list(task.ignore_checking_items)
    doc["target-database"] = _target_to_yaml(task.target_config)

    sections = _Sections(task.binlog_filter_rule or {})
    doc["mysql-instances"] = [_instance_to_yaml(task, conf, sections)
                              for conf in task.source_config.source_conf]
    if sections.routes:
        doc["routes"] = sections.routes
    if sections.filters:
        doc["filters"] = sections.filters
    if sections.balists:
        doc["block-allow-list"] = sections.balists

    full = task.source_config.full_migrate_conf
    incr = task.source_config.incr_migrate_conf
    if full is not None:
        mydumper: dict[str, Any] = {"threads": full.export_threads}
        if full.consistency is not None:
            mydumper["extra-args"] = f"--consistency {full.consistency}"
        doc["mydumpers"] = {_GLOBAL: mydumper}
    doc["loaders"] = {_GLOBAL: _loader_to_yaml(task)}
    if incr is not None:
        doc["syncers"] = {_GLOBAL: {"worker-count": incr.repl_threads,
                                    "batch": incr.repl_batch,
                                    "safe-mode": incr.safe_mode}}
    return doc


def task_to_yaml(task: Task) -> str:
    """The task as a DM YAML task file."""
    text: str = yaml.dump(task_to_config(task), Dumper=_Dumper, sort_keys=False,
                          allow_unicode=True, default_flow_style=False, width=100)
    return text


# --- YAML → Task ------------------------------------------------------------------------------


def _invalid(message: str) -> DMError:
    return CONFIG_INVALID(f"invalid task config file: {message}")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _invalid(f"`{where}` must be a mapping, got {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


def _seq(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _invalid(f"`{where}` must be a list, got {type(value).__name__}")
    return value


def _scalar_str(value: Any, where: str) -> str:
    # Go's YAML decoder turns any scalar into a string field (`password: 123456` is common).
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise _invalid(f"`{where}` must be a string, got {type(value).__name__}")


def _str_list(value: Any, where: str) -> list[str]:
    return [_scalar_str(v, f"{where}[{i}]") for i, v in enumerate(_seq(value, where))]


def _int(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise _invalid(f"`{where}` must be an integer, got {value!r}")


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _invalid(f"`{where}` must be true or false, got {value!r}")


def _required(doc: Mapping[str, Any], key: str, where: str = "") -> Any:
    value = doc.get(key)
    if value is None or value == "":
        raise _invalid(f"`{where}{key}` is required")
    return value


def _security_from_yaml(value: Any, where: str) -> dict[str, Any] | None:
    sec = _mapping(value, where)
    if not sec:
        return None
    for path_key in ("ssl-ca", "ssl-cert", "ssl-key"):
        if sec.get(path_key) and not sec.get(f"{path_key}-bytes"):
            raise _invalid(f"`{where}.{path_key}` names a file, which dmray does not read; "
                           f"give the PEM content in `{where}.{path_key}-bytes` instead")
    out: dict[str, Any] = {
        "ssl_ca_content": _scalar_str(sec.get("ssl-ca-bytes", ""), f"{where}.ssl-ca-bytes"),
        "ssl_cert_content": _scalar_str(sec.get("ssl-cert-bytes", ""),
                                        f"{where}.ssl-cert-bytes"),
        "ssl_key_content": _scalar_str(sec.get("ssl-key-bytes", ""), f"{where}.ssl-key-bytes"),
    }
    if "cert-allowed-cn" in sec:
        out["cert_allowed_cn"] = _str_list(sec["cert-allowed-cn"], f"{where}.cert-allowed-cn")
    return out


def _named(section: dict[str, Any], name: Any, kind: str, source: str) -> dict[str, Any]:
    key = _scalar_str(name, f"{kind} name")
    if key not in section:
        raise _invalid(f"{kind} `{key}` used by mysql-instance `{source}` is not defined")
    return _mapping(section[key], f"{kind}.{key}")


def _unit_config(doc: dict[str, Any], inst: dict[str, Any], source: str, section: str,
                 ref_key: str, inline_key: str, thread_key: str,
                 thread_field: str) -> dict[str, Any] | None:
    """The instance's mydumper/loader/syncer config: named, inline, or just a thread
    count; None when the instance sets none of them."""
    found = False
    cfg: dict[str, Any] = {}
    if inst.get(ref_key) is not None:
        cfg = _named(_mapping(doc.get(section), section), inst[ref_key], section, source)
        found = True
    elif inst.get(inline_key) is not None:
        cfg = _mapping(inst[inline_key], f"mysql-instances.{inline_key}")
        found = True
    if inst.get(thread_key) is not None:
        # DM: the per-instance thread count overrides the unit config's.
        cfg = {**cfg, thread_field: inst[thread_key]}
        found = True
    return cfg if found else None


def _filter_content(spec: Mapping[str, Any]) -> tuple[Any, Any]:
    return (spec.get("events"), spec.get("sql-pattern"))


def _template_names(filters: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Filter name → template name: `x-N` is an application of `x` when `x` exists with
    the same events and SQL patterns (see the module docstring)."""
    out: dict[str, str] = {}
    for name, spec in filters.items():
        m = _DERIVED_NAME_RE.fullmatch(name)
        base = m.group(1) if m else None
        if base is not None and base in filters and \
                _filter_content(filters[base]) == _filter_content(spec):
            out[name] = base
        else:
            out[name] = name
    return out


def _pattern_covers(pattern: str, name: str) -> bool:
    """Whether a filter's wildcard pattern selects a rule's pattern (taken as a name)."""
    if pattern.startswith("~"):
        try:
            return re.search(pattern[1:], name) is not None
        except re.error:
            return False
    regex = "".join("." if c == "?" else ".*" if c == "*" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


def _task_settings(doc: dict[str, Any]) -> dict[str, Any]:
    """The task-level scalars."""
    data: dict[str, Any] = {
        "name": _scalar_str(_required(doc, "name"), "name"),
        "task_mode": _scalar_str(_required(doc, "task-mode"), "task-mode"),
    }
    if doc.get("shard-mode"):
        data["shard_mode"] = _scalar_str(doc["shard-mode"], "shard-mode")
    elif doc.get("is-sharding") is not None and _bool(doc["is-sharding"], "is-sharding"):
        data["shard_mode"] = "pessimistic"  # what DM assumes for the old switch
    if doc.get("strict-optimistic-shard-mode") is not None:
        data["strict_optimistic_shard_mode"] = _bool(doc["strict-optimistic-shard-mode"],
                                                     "strict-optimistic-shard-mode")
    if doc.get("meta-schema"):
        data["meta_schema"] = _scalar_str(doc["meta-schema"], "meta-schema")
    if doc.get("timezone") is not None:
        data["timezone"] = _scalar_str(doc["timezone"], "timezone")
    if doc.get("online-ddl") is not None:
        data["enhance_online_schema_change"] = _bool(doc["online-ddl"], "online-ddl")
    elif doc.get("online-ddl-scheme"):
        data["enhance_online_schema_change"] = True
    if "ignore-checking-items" in doc:
        data["ignore_checking_items"] = _str_list(doc["ignore-checking-items"],
                                                  "ignore-checking-items")
    return data


def _target_from_yaml(raw: Any) -> dict[str, Any]:
    tdb = _mapping(raw, "target-database")
    target: dict[str, Any] = {
        "host": _scalar_str(_required(tdb, "host", "target-database."), "target-database.host"),
        "port": _int(_required(tdb, "port", "target-database."), "target-database.port"),
        "user": _scalar_str(_required(tdb, "user", "target-database."), "target-database.user"),
        "password": _scalar_str(tdb.get("password") or "", "target-database.password"),
    }
    if "session" in tdb:
        session = _mapping(tdb["session"], "target-database.session")
        target["session"] = {}
        # The OpenAPI session only carries foreign_key_checks; other variables are dropped.
        for key, value in session.items():
            if key.lower() == "foreign_key_checks":
                target["session"]["foreign_key_checks"] = _scalar_str(
                    value, "target-database.session.foreign_key_checks")
    security = _security_from_yaml(tdb.get("security"), "target-database.security")
    if security is not None:
        target["security"] = security
    return target


def _source_conf(inst: dict[str, Any], where: str) -> dict[str, Any]:
    source = _scalar_str(_required(inst, "source-id", f"{where}."), f"{where}.source-id")
    conf: dict[str, Any] = {"source_name": source}
    meta = _mapping(inst.get("meta"), f"{where}.meta")
    if meta.get("binlog-name") is not None:
        conf["binlog_name"] = _scalar_str(meta["binlog-name"], f"{where}.meta.binlog-name")
    if meta.get("binlog-pos") is not None:
        conf["binlog_pos"] = _int(meta["binlog-pos"], f"{where}.meta.binlog-pos")
    if meta.get("binlog-gtid") is not None:
        conf["binlog_gtid"] = _scalar_str(meta["binlog-gtid"], f"{where}.meta.binlog-gtid")
    return conf


def _route_target(spec: dict[str, Any]) -> dict[str, Any] | None:
    tgt: dict[str, Any] = {}
    if spec.get("target-schema") is not None:
        tgt["schema"] = _scalar_str(spec["target-schema"], "target-schema")
    if spec.get("target-table") is not None:
        tgt["table"] = _scalar_str(spec["target-table"], "target-table")
    return tgt or None


def _route_patterns(spec: dict[str, Any]) -> tuple[str, str]:
    schema = _scalar_str(_required(spec, "schema-pattern", "routes."), "schema-pattern")
    table = _scalar_str(spec.get("table-pattern") or "", "table-pattern")
    return schema, table


def _allow_entries(inst: dict[str, Any], source: str,
                   balists: dict[str, Any]) -> list[tuple[str, str]]:
    """The instance's block-allow list as (schema, table) entries ("" table: do-dbs)."""
    ba_name = inst.get("block-allow-list") or inst.get("black-white-list")
    entries: list[tuple[str, str]] = []
    if ba_name is not None:
        ba = _named(balists, ba_name, "block-allow-list", source)
        entries += [(d, "") for d in _str_list(ba.get("do-dbs"), "do-dbs")]
        for j, item in enumerate(_seq(ba.get("do-tables"), "do-tables")):
            t = _mapping(item, f"do-tables[{j}]")
            entries.append((_scalar_str(_required(t, "db-name", "do-tables."), "db-name"),
                            _scalar_str(_required(t, "tbl-name", "do-tables."), "tbl-name")))
    return entries


def _instance_rules(inst: dict[str, Any], where: str, source: str, routes: dict[str, Any],
                    balists: dict[str, Any]) -> list[dict[str, Any]]:
    """The table_migrate_rule entries of one instance: its allow entries with the route
    each matches, and the routes no entry matches (they select their tables too)."""
    # Routes, in the instance's order; each is consumed by at most one allow entry.
    inst_routes: list[dict[str, Any]] = [
        _named(routes, name, "routes", source)
        for name in _str_list(inst.get("route-rules"), f"{where}.route-rules")]
    consumed = [False] * len(inst_routes)
    ba_rules: list[dict[str, Any]] = []
    for schema, table in _allow_entries(inst, source, balists):
        rule: dict[str, Any] = {"source": {"source_name": source, "schema": schema,
                                           "table": table}}
        for k, spec in enumerate(inst_routes):
            if not consumed[k] and _route_patterns(spec) == (schema, table):
                consumed[k] = True
                tgt = _route_target(spec)
                if tgt is not None:
                    rule["target"] = tgt
                break
        ba_rules.append(rule)
    # Routes that no allow entry matches select their tables too (DM's converter).
    inst_rules: list[dict[str, Any]] = []
    for k, spec in enumerate(inst_routes):
        if not consumed[k]:
            schema, table = _route_patterns(spec)
            rule = {"source": {"source_name": source, "schema": schema, "table": table}}
            tgt = _route_target(spec)
            if tgt is not None:
                rule["target"] = tgt
            inst_rules.append(rule)
    inst_rules += ba_rules
    # Canonical order: whole-schema rules first (stable), which is how they come back
    # from do-dbs; routing prefers table-level rules, so the meaning is unchanged.
    inst_rules.sort(key=lambda r: r["source"]["table"] != "")
    return inst_rules


def _filter_template(filters: dict[str, dict[str, Any]], template: str) -> dict[str, Any]:
    tpl: dict[str, Any] = {}
    if "events" in filters[template]:
        tpl["ignore_event"] = _str_list(filters[template]["events"],
                                        f"filters.{template}.events")
    if "sql-pattern" in filters[template]:
        tpl["ignore_sql"] = _str_list(filters[template]["sql-pattern"],
                                      f"filters.{template}.sql-pattern")
    return tpl


def _apply_filters(inst: dict[str, Any], where: str, source: str,
                   filters: dict[str, dict[str, Any]], template_of: dict[str, str],
                   templates: dict[str, dict[str, Any]],
                   inst_rules: list[dict[str, Any]]) -> None:
    """The instance's filter-rules as binlog_filter_rule templates (collected in
    `templates`) named on the rules they cover."""
    for name in _str_list(inst.get("filter-rules"), f"{where}.filter-rules"):
        if name not in filters:
            raise _invalid(f"filters `{name}` used by mysql-instance `{source}` is not "
                           f"defined")
        spec = filters[name]
        action = _scalar_str(spec.get("action") or "Ignore", f"filters.{name}.action")
        if action.lower() != "ignore":
            raise _invalid(f"filter `{name}` has action `{action}`: an OpenAPI task can "
                           f"only ignore binlog events (action Ignore)")
        template = template_of[name]
        if template not in templates:
            templates[template] = _filter_template(filters, template)
        fschema = _scalar_str(spec.get("schema-pattern") or "*", "schema-pattern")
        ftable = _scalar_str(spec.get("table-pattern") or "", "table-pattern")
        exact = [r for r in inst_rules
                 if (r["source"]["schema"], r["source"]["table"]) == (fschema, ftable)]
        covered = exact or [r for r in inst_rules
                            if _pattern_covers(fschema, r["source"]["schema"])
                            and _pattern_covers(ftable or "*", r["source"]["table"] or "*")]
        for r in covered or inst_rules:
            names = r.setdefault("binlog_filter_rule", [])
            if template not in names:
                names.append(template)


def yaml_to_task(text: str) -> Task:
    """Parse a DM YAML task file into an OpenAPI Task; DMError (20001/20005) if invalid."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TASK_FILE_INVALID(f"task config file is not valid YAML: {exc}") from None
    if not isinstance(loaded, Mapping):
        raise TASK_FILE_INVALID("task config file must be a YAML mapping of task settings")
    doc = _mapping(loaded, "task")
    data = _task_settings(doc)
    data["target_config"] = _target_from_yaml(_required(doc, "target-database"))

    routes = _mapping(doc.get("routes"), "routes")
    filters = {k: _mapping(v, f"filters.{k}")
               for k, v in _mapping(doc.get("filters"), "filters").items()}
    balists = _mapping(doc.get("block-allow-list") or doc.get("black-white-list"),
                       "block-allow-list")
    template_of = _template_names(filters)

    instances = _seq(_required(doc, "mysql-instances"), "mysql-instances")
    if not instances:
        raise _invalid("`mysql-instances` must list at least one source")
    data["source_config"] = {}
    templates: dict[str, dict[str, Any]] = {}
    source_conf: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    for idx, raw in enumerate(instances):
        where = f"mysql-instances[{idx}]"
        inst = _mapping(raw, where)
        conf = _source_conf(inst, where)
        source = conf["source_name"]
        source_conf.append(conf)
        inst_rules = _instance_rules(inst, where, source, routes, balists)
        _apply_filters(inst, where, source, filters, template_of, templates, inst_rules)
        rules += inst_rules
        if idx == 0:
            on_duplicate, source_config = _unit_settings(doc, inst, source)
            if on_duplicate is not None:
                data["on_duplicate"] = on_duplicate
            data["source_config"].update(source_config)

    data["source_config"]["source_conf"] = source_conf
    data["table_migrate_rule"] = rules
    if templates:
        data["binlog_filter_rule"] = templates
    try:
        return Task.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise _invalid(problems) from None


def _unit_settings(doc: dict[str, Any], inst: dict[str, Any],
                   source: str) -> tuple[str | None, dict[str, Any]]:
    """on_duplicate and source_config (without source_conf) from the first instance's
    mydumper/loader/syncer settings, as DM's converter takes them from the first subtask."""
    on_duplicate: str | None = None
    out: dict[str, Any] = {}
    dumper = _unit_config(doc, inst, source, "mydumpers", "mydumper-config-name", "mydumper",
                          "mydumper-thread", "threads")
    loader = _unit_config(doc, inst, source, "loaders", "loader-config-name", "loader",
                          "loader-thread", "pool-size")
    syncer = _unit_config(doc, inst, source, "syncers", "syncer-config-name", "syncer",
                          "syncer-thread", "worker-count")
    loader = loader or {}
    if loader.get("on-duplicate") is not None:
        on_duplicate = _scalar_str(loader["on-duplicate"], "loaders.on-duplicate")
    if dumper is not None or any(k != "on-duplicate" for k in loader):
        full: dict[str, Any] = {}
        dumper = dumper or {}
        if dumper.get("threads") is not None:
            full["export_threads"] = _int(dumper["threads"], "mydumpers.threads")
        extra = dumper.get("extra-args")
        if extra and (m := _CONSISTENCY_RE.search(_scalar_str(extra, "extra-args"))):
            full["consistency"] = m.group(1)
        if loader.get("pool-size") is not None:
            full["import_threads"] = _int(loader["pool-size"], "loaders.pool-size")
        strings = {"dir": "data_dir", "sorting-dir-physical": "sorting_dir",
                   "disk-quota-physical": "disk_quota", "checksum-physical": "checksum",
                   "analyze": "analyze", "compress-kv-pairs": "compress-kv-pairs",
                   "pd-addr": "pd_addr", "on-duplicate-logical": "on_duplicate_logical",
                   "on-duplicate-physical": "on_duplicate_physical"}
        for key, field in strings.items():
            if loader.get(key) is not None:
                full[field] = _scalar_str(loader[key], f"loaders.{key}")
        if loader.get("import-mode"):
            mode = _scalar_str(loader["import-mode"], "loaders.import-mode")
            full["import_mode"] = _LEGACY_IMPORT_MODES.get(mode, mode)
        if loader.get("range-concurrency") is not None:
            full["range_concurrency"] = _int(loader["range-concurrency"],
                                             "loaders.range-concurrency")
        security = _security_from_yaml(loader.get("security"), "loaders.security")
        if security is not None:
            full["security"] = security
        out["full_migrate_conf"] = full
    if syncer is not None:
        incr: dict[str, Any] = {}
        if syncer.get("worker-count") is not None:
            incr["repl_threads"] = _int(syncer["worker-count"], "syncers.worker-count")
        if syncer.get("batch") is not None:
            incr["repl_batch"] = _int(syncer["batch"], "syncers.batch")
        if syncer.get("safe-mode") is not None:
            incr["safe_mode"] = _bool(syncer["safe-mode"], "syncers.safe-mode")
        out["incr_migrate_conf"] = incr
    return on_duplicate, out
