"""Pure tests of the event contracts and the DM error family (no database, no Ray)."""

from __future__ import annotations

import inspect
import pickle
import re
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

import errors
import events
import events.cluster as ec
import events.source as es
import events.task as et
from errors import DMError, ErrLevel, ErrorCode, ErrScope, class_of, scrub
from events.base import (
    DomainEvent,
    DuplicateEventType,
    EventRegistry,
    JsonDict,
    NewEvent,
    UnknownEventType,
    registry,
)

# --- registry --------------------------------------------------------------------------------


class _Alpha(DomainEvent):
    event_type = "unit.alpha"
    x: int


class _AlphaImpostor(DomainEvent):
    event_type = "unit.alpha"
    y: str


class _Nameless(DomainEvent):
    x: int


def test_registry_refuses_a_second_class_under_one_name() -> None:
    reg = EventRegistry()
    assert reg.register(_Alpha) is _Alpha
    with pytest.raises(DuplicateEventType, match=r"unit\.alpha"):
        reg.register(_AlphaImpostor)
    assert reg.cls_for("unit.alpha") is _Alpha  # the first one is kept


def test_registry_accepts_the_same_class_again() -> None:
    reg = EventRegistry()
    reg.register(_Alpha)
    assert reg.register(_Alpha) is _Alpha
    assert reg.cls_for("unit.alpha") is _Alpha


def test_registry_refuses_a_class_without_event_type() -> None:
    with pytest.raises(TypeError, match="_Nameless"):
        EventRegistry().register(_Nameless)


def test_registries_are_independent() -> None:
    reg = EventRegistry()
    reg.register(_Alpha)
    with pytest.raises(UnknownEventType):
        registry.cls_for("unit.alpha")  # the process-wide registry is untouched
    with pytest.raises(UnknownEventType):
        EventRegistry().cls_for("unit.alpha")


def test_decode_unknown_type() -> None:
    with pytest.raises(UnknownEventType, match=r"nope\.never"):
        EventRegistry().decode("nope.never", 1, b"{}")


class _V3(DomainEvent):
    event_type = "unit.versioned"
    schema_version = 3
    a: int
    b: int
    c: int


def test_decode_runs_upcasters_in_order() -> None:
    reg = EventRegistry()
    reg.register(_V3)
    seen: list[int] = []

    @reg.upcaster("unit.versioned", 1)
    def one(d: JsonDict) -> JsonDict:
        seen.append(1)
        return {"a": d["a"], "b": d["a"] * 10}

    @reg.upcaster("unit.versioned", 2)
    def two(d: JsonDict) -> JsonDict:
        seen.append(2)
        return {**d, "c": d["b"] + 1}

    assert reg.decode("unit.versioned", 1, b'{"a":4}') == _V3(a=4, b=40, c=41)
    assert seen == [1, 2]
    seen.clear()
    assert reg.decode("unit.versioned", 2, b'{"a":4,"b":5}') == _V3(a=4, b=5, c=6)
    assert seen == [2]
    seen.clear()
    assert reg.decode("unit.versioned", 3, b'{"a":1,"b":2,"c":3}') == _V3(a=1, b=2, c=3)
    assert seen == []


def test_decode_without_an_upcaster_says_which() -> None:
    reg = EventRegistry()
    reg.register(_V3)
    reg.upcaster("unit.versioned", 2)(lambda d: {**d, "c": 0})
    with pytest.raises(UnknownEventType,
                       match=r"no upcaster for unit\.versioned from schema version 1"):
        reg.decode("unit.versioned", 1, b'{"a":1}')


# --- event models ---------------------------------------------------------------------------

SPEC = es.SourceSpec(
    source_name="mysql-01", host="db.example", port=3306, user="root",
    password_enc="gAAAAB-token", enable_gtid=True, flavor="mariadb",
    security=es.StoredSecurity(ssl_ca_content="CA", ssl_cert_content="CERT",
                               ssl_key_content_enc="KEYENC", cert_allowed_cn=["a", "b"]),
    purge=es.StoredPurge(interval=60, expires=7, remain_space=3),
    relay_config=es.StoredRelayConfig(enable_relay=True, relay_binlog_name="mysql-bin.000001",
                                      relay_binlog_gtid="0-1-2", relay_dir="/r"),
)

TSPEC = et.TaskSpec(
    document={"name": "t", "task_mode": "full", "target_config": {
        "host": "db", "port": 3306, "user": "root",
        "security": {"ssl_ca_content": "CA", "ssl_cert_content": "CERT"}},
        "source_config": {"source_conf": [{"source_name": "a"}, {"source_name": "b"}]}},
    sealed={"target_config.password": "gAAAA-pw",
            "target_config.security.ssl_key_content": "gAAAA-key"})


def test_task_events_of_schema_version_1_are_read_with_their_secrets_taken_out() -> None:
    """Version 1 stored DM's document itself, the password sealed in it and a TLS key in
    the clear: read, they give a spec whose document holds neither."""
    v1 = {"name": "t", "task_mode": "all", "target_config": {
        "host": "db", "port": 3306, "user": "u", "password_enc": "gAAAA-pw",
        "security": {"ssl_ca_content": "CA", "ssl_cert_content": "C", "ssl_key_content": "K"}},
        "source_config": {"source_conf": [{"source_name": "a"}]}}
    for event_type in ("task.created", "task.updated", "cluster.template_set"):
        payload = {"task": v1, "request_id": "r", "name": "t"}
        if event_type == "task.updated":
            del payload["request_id"], payload["name"]
        elif event_type == "task.created":
            del payload["name"]
        else:
            del payload["request_id"]
        ev = registry.decode(event_type, 1, orjson.dumps(payload))
        spec = ev.task  # type: ignore[attr-defined]
        assert isinstance(spec, et.TaskSpec)
        assert spec.sealed == {"target_config.password": "gAAAA-pw"}
        assert spec.unsealed == {"target_config.security.ssl_key_content": "K"}
        assert "password_enc" not in spec.document["target_config"]
        assert spec.document["target_config"]["security"] == {"ssl_ca_content": "CA",
                                                              "ssl_cert_content": "C"}
        assert spec.sources == ["a"] and spec.task_mode == "all" and spec.name == "t"


# One sample per event type; a new event type must be added here (the test below says so).
SAMPLES: dict[type[DomainEvent], DomainEvent] = {
    ec.ClusterInitialized: ec.ClusterInitialized(cluster_id=7_000_000_000_123),
    ec.TopologySet: ec.TopologySet(topology={"master_topology_list": [
        {"name": "master1", "host": "10.0.0.1", "port": 8261}], "ünï": None}),
    ec.MasterRegistered: ec.MasterRegistered(name="master1", node_key="10.0.0.1",
                                             addr="10.0.0.1:8261"),
    ec.MasterRemoved: ec.MasterRemoved(name="master1"),
    ec.WorkerRegistered: ec.WorkerRegistered(name="worker1", node_key="10.0.0.2", slot=0,
                                             addr="10.0.0.2:8262"),
    ec.WorkerRemoved: ec.WorkerRemoved(name="worker1"),
    ec.SourceAdded: ec.SourceAdded(source_name="mysql-01", request_id="req-1"),
    ec.SourceRemoved: ec.SourceRemoved(source_name="mysql-01"),
    ec.SourceBound: ec.SourceBound(source_name="mysql-01", worker_name="worker1"),
    ec.SourceUnbound: ec.SourceUnbound(source_name="mysql-01", worker_name="worker1"),
    es.SourceCreated: es.SourceCreated(request_id="req-1", spec=SPEC, enabled=False),
    es.SourceUpdated: es.SourceUpdated(spec=SPEC.model_copy(update={"port": 3307})),
    es.SourceEnabled: es.SourceEnabled(),
    es.SourceDisabled: es.SourceDisabled(),
    es.SourceWorkerChanged: es.SourceWorkerChanged(worker_name="worker2"),
    es.SourceDeleted: es.SourceDeleted(),
    ec.TaskAdded: ec.TaskAdded(task_name="t-Ë!s`t", request_id="r1", source_names=["a", "b"]),
    ec.TaskSourcesChanged: ec.TaskSourcesChanged(task_name="t", source_names=["a"]),
    ec.TaskRemoved: ec.TaskRemoved(task_name="t"),
    ec.TemplateSet: ec.TemplateSet(name="t", task=TSPEC),
    ec.TemplateRemoved: ec.TemplateRemoved(name="t"),
    et.TaskCreated: et.TaskCreated(request_id="r", task=TSPEC),
    et.TaskUpdated: et.TaskUpdated(task=TSPEC.model_copy(update={"sealed": {}})),
    et.TaskDeleted: et.TaskDeleted(),
    et.SubtaskStageChanged: et.SubtaskStageChanged(source_name="a", stage="Paused",
                                                   unit="Load", error_msg="[code=1]"),
    et.DumpSnapshotTaken: et.DumpSnapshotTaken(source_name="a", binlog_name="mysql-bin.000002",
                                               binlog_pos=4, binlog_gtid="0-1-5"),
    ec.RelayStarted: ec.RelayStarted(source_name="a", worker_name="worker1",
                                     relay_dir="/r/a", relay_binlog_name="mysql-bin.000001"),
    ec.RelayStopped: ec.RelayStopped(source_name="a", worker_name="worker1"),
    ec.TokenCreated: ec.TokenCreated(token_id="0123456789ab", name="ci", digest="f" * 64,
                                     created_at="2026-12-03T12:00:00+00:00"),
    ec.TokenRevoked: ec.TokenRevoked(token_id="0123456789ab"),
    et.DumpPlanned: et.DumpPlanned(source_name="a", chunks=[{"schema": "s", "index": 0}],
                                   binlog_name="mysql-bin.000001", binlog_pos=4),
    et.SubtaskProgress: et.SubtaskProgress(source_name="a", unit="Load", finished_chunks=1,
                                           total_chunks=2, finished_rows=10,
                                           finished_bytes=100),
    et.SubtaskMetaRemoved: et.SubtaskMetaRemoved(source_name="a"),
}


def _event_classes() -> list[type[DomainEvent]]:
    """Every DomainEvent subclass defined in the `events` package."""
    found: list[type[DomainEvent]] = []
    for module in (ec, es, et):
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (issubclass(obj, DomainEvent) and obj is not DomainEvent
                    and obj.__module__ == module.__name__):
                found.append(obj)
    return found


def test_every_event_class_is_registered_under_an_explicit_unique_name() -> None:
    classes = _event_classes()
    assert len(classes) >= 16
    names = [cls.__dict__.get("event_type") for cls in classes]
    for cls, name in zip(classes, names, strict=True):
        assert isinstance(name, str) and name, f"{cls.__name__} has no own event_type"
        # a stable dotted name, not derived from the Python class name
        assert re.fullmatch(r"[a-z]+\.[a-z_]+", name), name
        assert name != cls.__name__
        assert registry.cls_for(name) is cls
    assert len(set(names)) == len(names)
    assert set(SAMPLES) == set(classes), "add a sample for every event type"


@pytest.mark.parametrize("sample", list(SAMPLES.values()), ids=lambda e: e.event_type)
def test_event_round_trips_through_the_registry(sample: DomainEvent) -> None:
    data = sample.to_bytes()
    assert orjson.loads(data) == sample.model_dump(mode="json")
    new = NewEvent.of(sample)
    assert (new.event_type, new.schema_version, new.data) == (
        sample.event_type, sample.schema_version, data)
    decoded = events.registry.decode(new.event_type, new.schema_version, new.data)
    assert type(decoded) is type(sample)
    assert decoded == sample
    assert decoded.to_bytes() == data


def test_events_are_frozen() -> None:
    w = ec.WorkerRegistered(name="worker1", node_key="n", slot=0, addr="a")
    with pytest.raises(ValidationError):
        w.name = "worker2"  # type: ignore[misc]
    created = SAMPLES[es.SourceCreated]
    assert isinstance(created, es.SourceCreated)
    with pytest.raises(ValidationError):
        created.spec.port = 1  # type: ignore[misc]  # nested specs too
    assert w.name == "worker1" and created.spec.port == 3306


def test_events_refuse_extra_fields() -> None:
    with pytest.raises(ValidationError, match="extra"):
        ec.WorkerRemoved(name="worker1", reason="gone")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ec.WorkerRemoved.model_validate({"name": "worker1", "reason": "gone"})
    with pytest.raises(ValidationError):
        registry.decode("cluster.worker_removed", 1, b'{"name":"w","reason":"gone"}')


def test_events_require_their_fields() -> None:
    with pytest.raises(ValidationError):
        ec.SourceBound(source_name="s")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        registry.decode("cluster.source_bound", 1, b'{"source_name":"s"}')


# --- DMError ------------------------------------------------------------------------------


def test_dm_error_format_is_dms() -> None:
    err = errors.SOURCE_NOT_EXISTS("mysql-03")
    assert str(err) == ("[code=46008:class=scheduler:scope=internal:level=medium], "
                        "Message: source config with ID mysql-03 not exists")
    assert err.code == 46008
    assert err.message == "source config with ID mysql-03 not exists"
    assert isinstance(err, Exception)


def test_dm_error_raw_cause_and_workaround_suffixes() -> None:
    err = errors.SOURCE_NOT_EXISTS("m", cause="etcd: key missing")
    assert str(err).endswith(", Message: source config with ID m not exists, "
                             "RawCause: etcd: key missing")
    task = errors.TASK_NOT_EXISTS("t1")
    assert str(task) == ("[code=46018:class=scheduler:scope=internal:level=medium], "
                         "Message: task with name t1 not exist, "
                         "Workaround: Please use `query-status` command to see tasks.")
    db = errors.DB_DRIVER(cause="dial tcp: refused")
    assert str(db) == (
        "[code=10001:class=database:scope=not-set:level=high], Message: database driver error"
        ", RawCause: dial tcp: refused, Workaround: Please check the database connection and "
        "the database config in configuration file.")
    assert str(errors.DB_DRIVER(workaround="")).endswith("Message: database driver error")
    assert str(errors.SOURCE_EXISTS("x", workaround="Use another name.")).endswith(
        "already exists, Workaround: Use another name.")


def test_dm_error_message_without_args_is_verbatim() -> None:
    # no format() when no args: braces in a message without arguments stay
    assert errors.NO_SOURCE_IN_WORKER().message == "no mysql source is being handled in the worker"
    assert errors.CONFIG_INVALID("bad {x}").message == "bad {x}"


def test_dm_error_cause_is_scrubbed() -> None:
    err = errors.DB_DRIVER(cause="connect failed: password=hunter2 mysql://u:pw1@h/db")
    assert "hunter2" not in str(err) and "pw1" not in str(err)
    assert "password=******" in err.cause


def test_dm_error_pickles() -> None:
    err = errors.SOURCE_HAS_TASKS("mysql-01", "t1,t2", cause="c")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, DMError)
    assert (back.code, back.message, back.cause, back.workaround) == (
        err.code, err.message, err.cause, err.workaround)
    assert back.error_code == err.error_code
    assert str(back) == str(err)
    assert err.workaround  # the catalogue's workaround travelled along


def test_error_code_fields() -> None:
    code = ErrorCode(46999, "x {} y", ErrScope.UPSTREAM, ErrLevel.LOW, "wa")
    err = code("1")
    assert (err.message, err.workaround, code.cls) == ("x 1 y", "wa", "scheduler")
    assert str(err).startswith("[code=46999:class=scheduler:scope=upstream:level=low], ")


# DM's classes by code range (terror); independent of dmray's table.
DM_RANGES = [
    (10001, "database"), (11001, "functional"), (20001, "config"), (22001, "binlog-op"),
    (24001, "checkpoint"), (26001, "task-check"), (28001, "relay-event-lib"),
    (30001, "relay-unit"), (32001, "dump-unit"), (34001, "load-unit"), (36001, "sync-unit"),
    (38001, "dm-master"), (40001, "dm-worker"), (42001, "dm-tracer"),
    (44001, "schema-tracker"), (46001, "scheduler"), (49001, "openapi"),
]


@pytest.mark.parametrize(("start", "name"), DM_RANGES)
def test_class_of_ranges(start: int, name: str) -> None:
    assert class_of(start) == name
    assert class_of(start + 5) == name
    end = next((s for s, _ in DM_RANGES if s > start), start + 500) - 1
    assert class_of(end) == name
    assert class_of(start - 1) != name


def test_class_of_examples_from_dm_docs() -> None:
    assert class_of(10003) == "database"
    assert class_of(11005) == "functional"
    assert class_of(20005) == "config"
    assert class_of(42004) == "dm-tracer"
    assert class_of(44006) == "schema-tracker"
    assert class_of(10000) == "not-set"
    assert class_of(0) == "not-set"


def test_every_catalogue_entry_has_its_class() -> None:
    catalogue = {n: v for n, v in vars(errors).items() if isinstance(v, ErrorCode)}
    assert len(catalogue) >= 20
    expected = {10: "database", 20: "config", 22: "binlog-op", 24: "checkpoint",
                26: "task-check", 30: "relay-unit", 32: "dump-unit", 34: "load-unit",
                36: "sync-unit", 38: "dm-master", 40: "dm-worker", 44: "schema-tracker",
                46: "scheduler", 49: "openapi"}
    for name, code in catalogue.items():
        assert code.cls == expected[code.code // 1000], name
        assert str(code()).startswith(f"[code={code.code}:class={code.cls}:"), name


# --- scrub --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "secret"), [
    ("dsn: host=h password=hunter2 user=u", "hunter2"),
    ("PASSWORD=hunter2;", "hunter2"),
    ("passwd = 'two words'", "two words"),
    ('pwd="q;uo,ted"', "q;uo,ted"),
    ("a&password=hunter2&b=1", "hunter2"),
    ("mysql://root:hunter2@127.0.0.1:3306/db", "hunter2"),
    ("mysql+asyncmy://dmray:p%40ss@127.0.0.1/x failed", "p%40ss"),
])
def test_scrub_removes_passwords(text: str, secret: str) -> None:
    out = scrub(text)
    assert secret not in out
    assert "******" in out


def test_scrub_keeps_the_rest() -> None:
    assert scrub("mysql://root:pw@127.0.0.1:3306/db") == "mysql://root:******@127.0.0.1:3306/db"
    assert scrub("host=h password=pw user=u") == "host=h password=****** user=u"
    assert scrub("https://example.com/path") == "https://example.com/path"


def test_scrub_keeps_mysqls_using_password() -> None:
    msg = "Error 1045: Access denied for user 'root'@'10.0.0.1' (using password: YES)"
    assert scrub(msg) == msg
    assert scrub(msg.replace("YES", "NO")) == msg.replace("YES", "NO")


def test_scrub_removes_explicit_secrets() -> None:
    out = scrub("auth failed with s3cr.t* for s3cr.t*!", secrets=("s3cr.t*", ""))
    assert out == "auth failed with ****** for ******!"
    # an empty secret must not smear the text
    assert scrub("plain text", secrets=("",)) == "plain text"


def test_scrub_leaves_non_secret_text_alone() -> None:
    texts: list[Any] = ["", "no secrets here", "password", "password reset link sent"]
    for t in texts:
        assert scrub(t) == t
