"""Aggregate (snapshot + replay, optimistic record) and the cluster/source folds, on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from domain.cluster import ClusterState
from domain.source import SourceState
from events.base import DomainEvent, RecordedEvent
from events.cluster import (
    CLUSTER_STREAM,
    ClusterInitialized,
    MasterRegistered,
    MasterRemoved,
    SourceAdded,
    SourceBound,
    SourceRemoved,
    SourceUnbound,
    TopologySet,
    WorkerRegistered,
    WorkerRemoved,
)
from events.source import (
    SourceCreated,
    SourceDeleted,
    SourceDisabled,
    SourceEnabled,
    SourceSpec,
    SourceUpdated,
    SourceWorkerChanged,
    StoredPurge,
    StoredSecurity,
    source_stream,
)
from storage.aggregate import Aggregate
from storage.eventstore import EventStore, Snapshot, WrongExpectedVersion, sqlite_url


class SpyStore(EventStore):
    """An EventStore that remembers what each read_stream asked for and got."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.reads: list[tuple[str, int, int]] = []  # (stream, after_version, events read)

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        recs = await super().read_stream(stream_id, after_version)
        self.reads.append((stream_id, after_version, len(recs)))
        return recs


StoreFactory = Callable[[], SpyStore]


@pytest.fixture
async def make_store(tmp_path: Path) -> AsyncIterator[StoreFactory]:
    opened: list[SpyStore] = []

    def make() -> SpyStore:
        s = SpyStore(sqlite_url(tmp_path))
        opened.append(s)
        return s

    yield make
    for s in opened:
        await s.close()


@pytest.fixture
def store(make_store: StoreFactory) -> SpyStore:
    return make_store()


def worker(n: int, node: str = "", slot: int | None = None) -> WorkerRegistered:
    return WorkerRegistered(name=f"worker{n}", node_key=node or f"10.0.0.{n}",
                            slot=n if slot is None else slot, addr=f"10.0.0.{n}:8262")


def spec(name: str = "mysql-01", port: int = 3306) -> SourceSpec:
    return SourceSpec(source_name=name, host="db", port=port, user="root",
                      password_enc="gAAAA-enc", enable_gtid=True,
                      security=StoredSecurity(ssl_ca_content="CA", cert_allowed_cn=["x"]),
                      purge=StoredPurge(interval=10))


def fold(events: list[DomainEvent]) -> ClusterState:
    state = ClusterState()
    for e in events:
        state.apply(e)
    return state


async def full_replay(store: EventStore, stream: str, state: ClusterState) -> ClusterState:
    for rec in await store.read_stream(stream):
        state.apply(rec.event)
    return state


HISTORY: list[DomainEvent] = [
    ClusterInitialized(cluster_id=42),
    TopologySet(topology={"master_topology_list": [{"name": "master1", "port": 8261}]}),
    MasterRegistered(name="master1", node_key="10.0.0.1", addr="10.0.0.1:8261"),
    worker(1), worker(2), worker(3, node="10.0.0.1", slot=1),
    SourceAdded(source_name="mysql-01", request_id="r1"),
    SourceAdded(source_name="mysql-02", request_id="r2"),
    SourceBound(source_name="mysql-01", worker_name="worker1"),
    SourceBound(source_name="mysql-02", worker_name="worker2"),
    WorkerRemoved(name="worker3"),
    SourceUnbound(source_name="mysql-02", worker_name="worker2"),
    SourceRemoved(source_name="mysql-02"),
]


# --- Aggregate ---------------------------------------------------------------------------------


async def test_record_then_reload_gives_identical_state(make_store: StoreFactory) -> None:
    agg = Aggregate(make_store(), CLUSTER_STREAM, ClusterState)
    assert await agg.load() == ClusterState() and agg.version == 0
    for e in HISTORY[:5]:
        await agg.record(e)
    await agg.record(*HISTORY[5:])
    assert agg.version == len(HISTORY)
    assert agg.state == fold(HISTORY)

    again = Aggregate(make_store(), CLUSTER_STREAM, ClusterState)
    state = await again.load()
    assert state is again.state and state is not agg.state
    assert state == agg.state
    assert state.model_dump() == agg.state.model_dump()
    assert again.version == agg.version
    assert await agg.store.load_snapshot(CLUSTER_STREAM) is None  # < snapshot_every events


async def test_concurrent_writers_of_one_aggregate_never_race(store: SpyStore) -> None:
    """Many writers in the owning process (a task's runners and its commands) recording at
    once: every append expects the version the previous one left, none conflicts."""
    import asyncio

    agg = Aggregate(store, CLUSTER_STREAM, ClusterState)
    await agg.load()
    events = [worker(n) for n in range(1, 41)]
    await asyncio.gather(*(agg.record(e) for e in events))
    assert agg.version == len(events)
    replayed = await full_replay(store, CLUSTER_STREAM, ClusterState())
    assert replayed == agg.state and len(replayed.workers) == len(events)


async def test_record_nothing_is_a_noop(store: SpyStore) -> None:
    agg = Aggregate(store, CLUSTER_STREAM, ClusterState)
    await agg.load()
    await agg.record()
    assert agg.version == 0 and await store.stream_version(CLUSTER_STREAM) == 0


async def test_streams_are_separate(store: SpyStore) -> None:
    cluster = Aggregate(store, CLUSTER_STREAM, ClusterState)
    src = Aggregate(store, source_stream("mysql-01"), SourceState)
    await cluster.load()
    await src.load()
    await cluster.record(worker(1))
    await src.record(SourceCreated(request_id="r", spec=spec()))
    assert (cluster.version, src.version) == (1, 1)
    assert (await Aggregate(store, "source:other", SourceState).load()) == SourceState()


async def test_snapshot_every_n_events(store: SpyStore) -> None:
    agg = Aggregate(store, CLUSTER_STREAM, ClusterState, snapshot_every=3)
    await agg.load()
    states: dict[int, ClusterState] = {}

    async def snapped() -> int | None:
        snap = await store.load_snapshot(CLUSTER_STREAM)
        if snap is None:
            return None
        assert (snap.state_type, snap.schema_version) == ("cluster", ClusterState.state_version)
        # the snapshot holds exactly the state at its version
        assert ClusterState.model_validate_json(snap.data) == states[snap.version]
        return snap.version

    expected = [None, None, 3, 3, 3, 6]
    for i, want in enumerate(expected, start=1):
        await agg.record(worker(i))
        states[agg.version] = agg.state.model_copy(deep=True)
        assert await snapped() == want, i
    # a batch that crosses a multiple snapshots at its end
    await agg.record(*(worker(i) for i in range(7, 11)))
    states[agg.version] = agg.state.model_copy(deep=True)
    assert agg.version == 10 and await snapped() == 10
    # a batch inside one bucket does not
    await agg.record(worker(11))
    assert await snapped() == 10


async def test_load_starts_from_the_snapshot(make_store: StoreFactory) -> None:
    writer = Aggregate(make_store(), CLUSTER_STREAM, ClusterState, snapshot_every=5)
    await writer.load()
    for e in HISTORY:  # 13 events: snapshots at 5 and 10
        await writer.record(e)
    assert (await writer.store.load_snapshot(CLUSTER_STREAM) or pytest.fail()).version == 10

    spy = make_store()
    reader = Aggregate(spy, CLUSTER_STREAM, ClusterState, snapshot_every=5)
    state = await reader.load()
    assert spy.reads == [(CLUSTER_STREAM, 10, 3)]  # only the events after the snapshot
    assert reader.version == 13
    assert state == writer.state == await full_replay(spy, CLUSTER_STREAM, ClusterState())

    # The snapshot really is the starting point: events up to it are not replayed.
    snap = await spy.load_snapshot(CLUSTER_STREAM)
    assert snap is not None
    marked = ClusterState.model_validate_json(snap.data)
    marked.cluster_id = 999
    await spy.save_snapshot(Snapshot(CLUSTER_STREAM, snap.version, snap.state_type,
                                     snap.schema_version, marked.model_dump_json().encode()))
    assert (await Aggregate(spy, CLUSTER_STREAM, ClusterState).load()).cluster_id == 999


class ClusterStateNext(ClusterState):
    state_version = ClusterState.state_version + 1


class NotCluster(ClusterState):
    state_type = "not-cluster"


@pytest.mark.parametrize("state_cls", [ClusterStateNext, NotCluster])
async def test_snapshot_of_another_shape_is_ignored(
    make_store: StoreFactory, state_cls: type[ClusterState]
) -> None:
    writer = Aggregate(make_store(), CLUSTER_STREAM, ClusterState, snapshot_every=4)
    await writer.load()
    for e in HISTORY:
        await writer.record(e)
    snap = await writer.store.load_snapshot(CLUSTER_STREAM)
    assert snap is not None and snap.version == 12
    # make the unusable snapshot visibly wrong: using it would show
    bogus = ClusterState.model_validate_json(snap.data)
    bogus.cluster_id = 999
    await writer.store.save_snapshot(Snapshot(CLUSTER_STREAM, 12, snap.state_type,
                                              snap.schema_version,
                                              bogus.model_dump_json().encode()))

    spy = make_store()
    other = Aggregate(spy, CLUSTER_STREAM, state_cls)
    state = await other.load()
    assert spy.reads == [(CLUSTER_STREAM, 0, len(HISTORY))]  # full replay
    assert type(state) is state_cls
    assert state.model_dump() == fold(HISTORY).model_dump()
    assert state.cluster_id == 42
    assert other.version == len(HISTORY)


async def test_conflicting_writers(make_store: StoreFactory) -> None:
    a = Aggregate(make_store(), CLUSTER_STREAM, ClusterState)
    b = Aggregate(make_store(), CLUSTER_STREAM, ClusterState)
    await a.load()
    await b.load()
    await a.record(worker(1), worker(2))

    with pytest.raises(WrongExpectedVersion):
        await b.record(SourceAdded(source_name="s", request_id="rb"))
    # b was reloaded: it has a's events and not its own refused one
    assert b.version == a.version == 2
    assert b.state == a.state
    assert "s" not in b.state.sources
    assert sorted(b.state.workers) == ["worker1", "worker2"]
    assert b.state.next_worker_name() == "worker3"

    # deciding again on fresh state succeeds; now a is the stale one
    await b.record(SourceAdded(source_name="s", request_id="rb"))
    with pytest.raises(WrongExpectedVersion):
        await a.record(worker(3))
    assert a.version == 3 and a.state.sources == {"s": "rb"}
    assert "worker3" not in a.state.workers
    stored = await a.store.read_stream(CLUSTER_STREAM)
    assert [type(r.event) for r in stored] == [WorkerRegistered, WorkerRegistered, SourceAdded]


async def test_applied_does_not_touch_state(store: SpyStore) -> None:
    agg = Aggregate(store, CLUSTER_STREAM, ClusterState)
    await agg.load()
    await agg.record(worker(1))
    before = agg.state.model_copy(deep=True)
    probe = agg.applied([worker(2), SourceAdded(source_name="s", request_id="r"),
                         WorkerRemoved(name="worker1")])
    assert sorted(probe.workers) == ["worker2"] and probe.sources == {"s": "r"}
    assert agg.state == before and agg.version == 1
    assert await store.stream_version(CLUSTER_STREAM) == 1


async def test_worker_names_survive_reload_with_and_without_snapshot(
    make_store: StoreFactory,
) -> None:
    for every in (1, 1000):
        stream = f"cluster-{every}"
        agg = Aggregate(make_store(), stream, ClusterState, snapshot_every=every)
        await agg.load()
        await agg.record(worker(1), worker(2))
        await agg.record(WorkerRemoved(name="worker2"))
        again = Aggregate(make_store(), stream, ClusterState, snapshot_every=every)
        await again.load()
        assert list(again.state.workers) == ["worker1"]
        assert again.state.next_worker_name() == "worker3", every


async def test_source_state_through_snapshot(make_store: StoreFactory) -> None:
    stream = source_stream("mysql-01")
    agg = Aggregate(make_store(), stream, SourceState, snapshot_every=2)
    await agg.load()
    await agg.record(SourceCreated(request_id="r1", spec=spec()))
    await agg.record(SourceWorkerChanged(worker_name="worker1"))  # snapshot at 2
    await agg.record(SourceUpdated(spec=spec(port=3307)))
    spy = make_store()
    again = Aggregate(spy, stream, SourceState)
    state = await again.load()
    assert spy.reads == [(stream, 2, 1)]
    assert state == agg.state
    assert isinstance(state.spec, SourceSpec) and state.spec == spec(port=3307)
    assert state.spec.security is not None and state.spec.security.cert_allowed_cn == ["x"]
    assert state.worker_name == "worker1"


# --- ClusterState fold -------------------------------------------------------------------------


def test_fresh_states_share_nothing() -> None:
    a = ClusterState()
    a.apply(worker(1))
    a.apply(SourceAdded(source_name="s", request_id="r"))
    assert ClusterState().workers == {} and ClusterState().sources == {}
    s = SourceState()
    s.apply(SourceCreated(request_id="r", spec=spec()))
    assert SourceState() == SourceState(exists=False)


def test_cluster_initialized_and_topology() -> None:
    state = fold([ClusterInitialized(cluster_id=7), TopologySet(topology={"a": 1}),
                  TopologySet(topology={"b": 2})])
    assert state.cluster_id == 7 and state.topology == {"b": 2}


def test_worker_registration_and_names() -> None:
    state = ClusterState()
    assert state.next_worker_name() == "worker1"
    state.apply(worker(1))
    state.apply(worker(2, node="n2", slot=5))
    assert state.workers["worker2"].model_dump() == {
        "name": "worker2", "node_key": "n2", "slot": 5, "addr": "10.0.0.2:8262"}
    assert state.next_worker_name() == "worker3"
    assert state.worker_for_slot("n2", 5) == state.workers["worker2"]
    assert state.worker_for_slot("n2", 4) is None
    assert state.worker_for_slot("10.0.0.1", 1) == state.workers["worker1"]


def test_next_worker_name_never_reuses_a_removed_name() -> None:
    state = fold([worker(1), worker(2), WorkerRemoved(name="worker2")])
    assert state.next_worker_name() == "worker3"
    state.apply(WorkerRemoved(name="worker1"))
    assert state.workers == {}
    assert state.next_worker_name() == "worker3"
    state.apply(WorkerRemoved(name="worker9"))  # unknown: harmless
    assert state.next_worker_name() == "worker3"


def test_worker_sequence_follows_the_highest_number() -> None:
    state = fold([worker(10), worker(2)])
    assert state.next_worker_name() == "worker11"
    state.apply(WorkerRegistered(name="edge-a", node_key="e", slot=0, addr="e:1"))
    state.apply(WorkerRegistered(name="workerX", node_key="e", slot=1, addr="e:2"))
    assert state.next_worker_name() == "worker11"
    assert {"edge-a", "workerX"} <= set(state.workers)


def test_master_registration() -> None:
    state = ClusterState()
    assert state.next_master_name() == "master1"
    state.apply(MasterRegistered(name="master1", node_key="n1", addr="n1:8261"))
    assert state.next_master_name() == "master2"
    assert state.master_for_node("n1") == state.masters["master1"]
    assert state.master_for_node("n2") is None
    state.apply(MasterRemoved(name="master1"))
    assert state.masters == {} and state.master_for_node("n1") is None
    assert state.next_master_name() == "master2"
    # workers and masters are counted separately
    state.apply(worker(1))
    assert (state.next_master_name(), state.next_worker_name()) == ("master2", "worker2")


def test_source_bound_and_unbound() -> None:
    state = fold([worker(1), worker(2), SourceAdded(source_name="s1", request_id="r1"),
                  SourceBound(source_name="s1", worker_name="worker1")])
    assert state.sources == {"s1": "r1"}
    assert state.bindings == {"s1": "worker1"}
    assert state.source_of_worker("worker1") == "s1"
    assert state.source_of_worker("worker2") is None
    # an unbind naming another worker is stale and changes nothing
    state.apply(SourceUnbound(source_name="s1", worker_name="worker2"))
    assert state.bindings == {"s1": "worker1"}
    state.apply(SourceUnbound(source_name="s1", worker_name="worker1"))
    assert state.bindings == {} and state.source_of_worker("worker1") is None
    assert state.sources == {"s1": "r1"}  # unbinding does not remove the source
    # rebinding moves the source
    state.apply(SourceBound(source_name="s1", worker_name="worker1"))
    state.apply(SourceBound(source_name="s1", worker_name="worker2"))
    assert state.bindings == {"s1": "worker2"}
    assert state.source_of_worker("worker1") is None


def test_source_removed_drops_its_binding() -> None:
    state = fold([SourceAdded(source_name="s1", request_id="r1"),
                  SourceAdded(source_name="s2", request_id="r2"),
                  SourceBound(source_name="s1", worker_name="worker1"),
                  SourceBound(source_name="s2", worker_name="worker2"),
                  SourceRemoved(source_name="s1")])
    assert state.sources == {"s2": "r2"}
    assert state.bindings == {"s2": "worker2"}
    state.apply(SourceRemoved(source_name="missing"))
    assert state.sources == {"s2": "r2"}
    state.apply(SourceAdded(source_name="s1", request_id="r3"))  # re-added, unbound
    assert state.sources == {"s2": "r2", "s1": "r3"} and "s1" not in state.bindings


# --- SourceState fold --------------------------------------------------------------------------


def test_source_state_lifecycle() -> None:
    s = SourceState()
    assert (s.exists, s.spec, s.enabled, s.worker_name) == (False, None, False, "")

    s.apply(SourceCreated(request_id="r1", spec=spec()))
    assert (s.exists, s.request_id, s.spec, s.enabled, s.worker_name) == (
        True, "r1", spec(), True, "")

    s.apply(SourceWorkerChanged(worker_name="worker1"))
    s.apply(SourceUpdated(spec=spec(port=3307)))
    assert s.spec == spec(port=3307)
    assert (s.worker_name, s.enabled, s.request_id) == ("worker1", True, "r1")

    s.apply(SourceDisabled())
    assert s.enabled is False and s.exists
    s.apply(SourceEnabled())
    assert s.enabled is True
    s.apply(SourceWorkerChanged(worker_name=""))
    assert s.worker_name == ""
    s.apply(SourceWorkerChanged(worker_name="worker2"))

    s.apply(SourceDeleted())
    assert (s.exists, s.spec, s.worker_name, s.enabled) == (False, None, "", False)

    # the same name created again: a fresh source, the stream goes on
    s.apply(SourceCreated(request_id="r2", spec=spec(port=4000), enabled=False))
    assert (s.exists, s.request_id, s.spec, s.enabled, s.worker_name) == (
        True, "r2", spec(port=4000), False, "")


def test_source_created_resets_the_worker() -> None:
    s = SourceState()
    for e in (SourceCreated(request_id="r1", spec=spec()),
              SourceWorkerChanged(worker_name="worker1"),
              SourceDeleted(),
              SourceWorkerChanged(worker_name="worker9"),  # late, after the delete
              SourceCreated(request_id="r2", spec=spec())):
        s.apply(e)
    assert s.worker_name == "" and s.exists and s.request_id == "r2"
