"""One contract for the event store, run against both backends: SQLite and real MariaDB.

Every test gets a fresh database (a file in tmp_path, or `CREATE DATABASE evs_<random>` on
the session's private target server) and uses its own `EventRegistry`, so nothing here
touches the process-wide registry. The MariaDB half starts the private servers only when
it runs (`-k sqlite` needs no MariaDB).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from events.base import (
    DomainEvent,
    EventRegistry,
    JsonDict,
    NewEvent,
    RecordedEvent,
    UnknownEventType,
)
from storage.eventstore import (
    EventStore,
    Snapshot,
    WrongExpectedVersion,
    events_table,
    log_head_table,
    sqlite_url,
)
from testbed.mariadb import MariaDBServer

# --- test-only events, in registries of their own --------------------------------------------

REG = EventRegistry()


@REG.register
class Noted(DomainEvent):
    event_type = "test.noted"
    n: int
    text: str = ""
    tags: list[str] = []
    extra: dict[str, Any] = {}


# The "same" event type at three schema versions, each in the registry of one program version.
class RenamedV1(DomainEvent):
    event_type = "test.renamed"
    schema_version = 1
    name: str


class RenamedV2(DomainEvent):
    event_type = "test.renamed"
    schema_version = 2
    full_name: str
    origin: str


class RenamedV3(DomainEvent):
    event_type = "test.renamed"
    schema_version = 3
    full_name: str
    origin: str
    upper: str


def _v1_to_v2(d: JsonDict) -> JsonDict:
    return {"full_name": d["name"], "origin": "v1"}


def _v2_to_v3(d: JsonDict) -> JsonDict:
    return {**d, "upper": d["full_name"].upper()}


def registry_v1() -> EventRegistry:
    reg = EventRegistry()
    reg.register(RenamedV1)
    return reg


def registry_v2(calls: list[int] | None = None) -> EventRegistry:
    reg = EventRegistry()
    reg.register(RenamedV2)

    @reg.upcaster("test.renamed", 1)
    def _up(d: JsonDict) -> JsonDict:
        if calls is not None:
            calls.append(1)
        return _v1_to_v2(d)

    return reg


def registry_v3(*, with_1_to_2: bool = True) -> EventRegistry:
    reg = EventRegistry()
    reg.register(RenamedV3)
    if with_1_to_2:
        reg.upcaster("test.renamed", 1)(_v1_to_v2)
    reg.upcaster("test.renamed", 2)(_v2_to_v3)
    return reg


def ev(n: int, text: str = "") -> NewEvent:
    return NewEvent.of(Noted(n=n, text=text))


def noted(rec: RecordedEvent) -> Noted:
    assert isinstance(rec.event, Noted)
    return rec.event


def ns(recs: list[RecordedEvent]) -> list[int]:
    return [noted(r).n for r in recs]


# --- backends ---------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to a fresh, empty database of the requested backend."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    target: MariaDBServer = request.getfixturevalue("target")
    db = f"evs_{uuid.uuid4().hex[:12]}"
    target.execute(f"CREATE DATABASE `{db}`")
    try:
        yield target.url(db)
    finally:
        target.execute(f"DROP DATABASE IF EXISTS `{db}`")


StoreFactory = Callable[..., EventStore]


@pytest.fixture
async def make_store(db_url: str) -> AsyncIterator[StoreFactory]:
    """Opens stores on this test's database (each with its own engine); closes them all."""
    opened: list[EventStore] = []

    def make(event_registry: EventRegistry = REG) -> EventStore:
        s = EventStore(db_url, event_registry=event_registry)
        opened.append(s)
        return s

    yield make
    await asyncio.gather(*(s.close() for s in opened))


@pytest.fixture
async def store(make_store: StoreFactory) -> EventStore:
    return await make_store().init()


def is_mysql(store: EventStore) -> bool:
    return not store.url.startswith("sqlite")


async def row_count(store: EventStore) -> int:
    async with store.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(events_table)) or 0)


# --- append / read_stream -----------------------------------------------------------------------


async def test_append_to_new_stream_returns_version(store: EventStore) -> None:
    assert await store.stream_version("s") == 0
    assert await store.read_stream("s") == []
    assert await store.append("s", [ev(1), ev(2), ev(3)], expected_version=0) == 3
    assert await store.stream_version("s") == 3
    assert await store.append("s", [ev(4)], expected_version=3) == 4
    recs = await store.read_stream("s")
    assert [r.version for r in recs] == [1, 2, 3, 4]
    assert ns(recs) == [1, 2, 3, 4]
    assert all(r.stream_id == "s" and isinstance(r.event, Noted) for r in recs)
    assert await store.stream_version("other") == 0  # streams are independent


async def test_read_stream_after_version(store: EventStore) -> None:
    await store.append("s", [ev(i) for i in range(1, 6)], expected_version=0)
    assert [r.version for r in await store.read_stream("s", after_version=2)] == [3, 4, 5]
    assert ns(await store.read_stream("s", after_version=4)) == [5]
    assert await store.read_stream("s", after_version=5) == []
    assert await store.read_stream("s", after_version=99) == []
    assert await store.read_stream("missing") == []


async def test_stale_expected_version_raises_and_writes_nothing(store: EventStore) -> None:
    await store.append("s", [ev(1), ev(2)], expected_version=0)
    before = await row_count(store)
    for stale in (0, 1):
        with pytest.raises(WrongExpectedVersion) as info:
            await store.append("s", [ev(100), ev(101)], expected_version=stale)
        assert (info.value.stream_id, info.value.expected, info.value.actual) == ("s", stale, 2)
    assert await row_count(store) == before
    assert await store.stream_version("s") == 2
    assert ns(await store.read_stream("s")) == [1, 2]


async def test_too_high_expected_version_raises(store: EventStore) -> None:
    with pytest.raises(WrongExpectedVersion) as info:
        await store.append("new", [ev(1)], expected_version=1)
    assert (info.value.expected, info.value.actual) == (1, 0)
    await store.append("s", [ev(1)], expected_version=0)
    with pytest.raises(WrongExpectedVersion) as info:
        await store.append("s", [ev(2)], expected_version=5)
    assert (info.value.expected, info.value.actual) == (5, 1)
    assert await row_count(store) == 1  # no gap was written, nothing at all
    assert await store.stream_version("new") == 0


async def test_empty_append_is_a_noop(store: EventStore) -> None:
    assert await store.append("s", [], expected_version=0) == 0
    await store.append("s", [ev(1)], expected_version=0)
    assert await store.append("s", [], expected_version=1) == 1
    assert await store.stream_version("s") == 1
    assert await row_count(store) == 1


async def test_wrong_expected_version_is_not_sticky(store: EventStore) -> None:
    """A failed append leaves the connection usable and the next correct append works."""
    await store.append("s", [ev(1)], expected_version=0)
    with pytest.raises(WrongExpectedVersion):
        await store.append("s", [ev(2)], expected_version=0)
    assert await store.append("s", [ev(2)], expected_version=1) == 2
    assert ns(await store.read_stream("s")) == [1, 2]


# --- concurrency --------------------------------------------------------------------------------


async def _race(appends: Sequence[Awaitable[int]]) -> tuple[list[int], list[BaseException]]:
    results = await asyncio.gather(*appends, return_exceptions=True)
    wins = [r for r in results if isinstance(r, int)]
    errors = [r for r in results if isinstance(r, BaseException)]
    return wins, errors


@pytest.mark.parametrize("batch", [1, 3])
async def test_concurrent_writers_separate_engines_exactly_one_wins(
    make_store: StoreFactory, batch: int
) -> None:
    writers = 8
    stores = [make_store() for _ in range(writers)]
    await asyncio.gather(*(s.init() for s in stores))
    version = 0
    for round_ in range(4):
        appends = [
            s.append("race", [ev(w * 100 + round_, f"w{w}") for _ in range(batch)], version)
            for w, s in enumerate(stores)
        ]
        wins, errors = await _race(appends)
        assert wins == [version + batch], (round_, wins, errors)
        assert len(errors) == writers - 1
        assert all(isinstance(e, WrongExpectedVersion) for e in errors), errors
        version += batch
        # The stream holds one writer's whole batch, never a mix of several writers.
        recs = await stores[0].read_stream("race", after_version=version - batch)
        assert [r.version for r in recs] == list(range(version - batch + 1, version + 1))
        assert len({noted(r).text for r in recs}) == 1
    assert await stores[-1].stream_version("race") == version
    positions = [r.position for r in await stores[0].read_all()]
    assert positions == sorted(set(positions)) and len(positions) == version


async def test_concurrent_writers_one_store_exactly_one_wins(store: EventStore) -> None:
    for version in range(3):
        wins, errors = await _race(
            [store.append("race", [ev(w)], version) for w in range(10)]
        )
        assert wins == [version + 1]
        assert len(errors) == 9 and all(isinstance(e, WrongExpectedVersion) for e in errors)
    assert [r.version for r in await store.read_stream("race")] == [1, 2, 3]


async def test_concurrent_first_use_of_a_fresh_database(make_store: StoreFactory) -> None:
    """Several processes starting together all create the schema, and all succeed."""
    stores = [make_store() for _ in range(6)]
    await asyncio.gather(*(s.init() for s in stores))
    results = await asyncio.gather(
        *(s.append(f"s{i}", [ev(i)], 0) for i, s in enumerate(stores))
    )
    assert results == [1] * 6
    assert len(await stores[0].read_all()) == 6


async def test_concurrent_writers_on_different_streams_all_succeed(
    make_store: StoreFactory,
) -> None:
    stores = [make_store() for _ in range(5)]
    await asyncio.gather(*(s.init() for s in stores))
    for round_ in range(3):
        results = await asyncio.gather(
            *(s.append(f"stream-{i}", [ev(round_)], round_) for i, s in enumerate(stores))
        )
        assert results == [round_ + 1] * 5
    recs = await stores[0].read_all()
    assert len(recs) == 15
    assert [r.position for r in recs] == sorted({r.position for r in recs})


# --- global positions / read_all --------------------------------------------------------------


async def test_read_all_pages_through_every_stream_in_order(store: EventStore) -> None:
    written: list[tuple[str, int]] = []  # (stream, n) in append order
    versions: dict[str, int] = {}
    n = 0
    for round_ in range(5):
        for stream in ("a", "b", "c"):
            size = 1 + (round_ + len(stream)) % 3
            batch = [ev(n + i) for i in range(size)]
            versions[stream] = await store.append(
                stream, batch, versions.get(stream, 0)
            )
            written += [(stream, n + i) for i in range(size)]
            n += size

    everything = await store.read_all()
    assert [(r.stream_id, noted(r).n) for r in everything] == written
    positions = [r.position for r in everything]
    assert all(a < b for a, b in itertools.pairwise(positions))
    assert positions[0] >= 1

    for limit in (1, 4, 7, len(written), len(written) + 10):
        paged = []
        after = 0
        while page := await store.read_all(after_position=after, limit=limit):
            assert len(page) <= limit
            paged += page
            after = page[-1].position
        assert [r.position for r in paged] == positions, limit

    # after_position is exclusive and need not be an existing position
    mid = positions[5]
    assert [r.position for r in await store.read_all(after_position=mid)] == positions[6:]
    assert await store.read_all(after_position=positions[-1]) == []
    # read_all and read_stream agree on every event's envelope
    for stream in ("a", "b", "c"):
        assert await store.read_stream(stream) == [r for r in everything if r.stream_id == stream]


async def test_positions_keep_growing_after_failed_appends(store: EventStore) -> None:
    await store.append("s", [ev(1)], 0)
    for _ in range(3):
        with pytest.raises(WrongExpectedVersion):
            await store.append("s", [ev(9)], 0)
    await store.append("t", [ev(2)], 0)
    await store.append("s", [ev(3)], 1)
    recs = await store.read_all()
    assert ns(recs) == [1, 2, 3]
    assert recs[0].position < recs[1].position < recs[2].position


# --- stream ids -----------------------------------------------------------------------------

ODD_IDS = [
    "source:ünïcødé-名前",
    "emoji:🚀🐬",
    "it's",
    'say "hi"',
    "back`tick`",
    "semi;colon -- DROP TABLE dmray_events;",
    "back\\slash",
    "percent%_under",
    "Case",
    "case",
    "x" * 200,
]


async def test_stream_ids_are_taken_verbatim(store: EventStore) -> None:
    for i, sid in enumerate(ODD_IDS):
        assert await store.append(sid, [ev(i), ev(i)], 0) == 2
    for i, sid in enumerate(ODD_IDS):
        recs = await store.read_stream(sid)
        assert [r.stream_id for r in recs] == [sid, sid]
        assert ns(recs) == [i, i], sid
        assert await store.stream_version(sid) == 2
        with pytest.raises(WrongExpectedVersion):
            await store.append(sid, [ev(i)], 0)
    assert [r.stream_id for r in await store.read_all()] == [s for s in ODD_IDS for _ in "xx"]
    # LIKE wildcards are not wildcards
    assert await store.read_stream("percent%") == []
    assert await store.stream_version("percent__under") == 0


async def test_stream_ids_differing_only_in_trailing_space_are_distinct(
    store: EventStore, request: pytest.FixtureRequest
) -> None:
    await store.append("src", [ev(1)], 0)
    assert await store.stream_version("src ") == 0
    assert await store.read_stream("src ") == []
    assert await store.append("src ", [ev(2)], 0) == 1
    assert ns(await store.read_stream("src")) == [1]
    assert ns(await store.read_stream("src ")) == [2]


# --- payloads, envelopes ----------------------------------------------------------------------


async def test_data_round_trips_byte_for_byte(store: EventStore) -> None:
    big = "é" * 150_000  # > 64 KiB: must not hit a BLOB/TEXT size limit
    original = Noted(n=-(2**40), text="nul\x00 tab\t quote' \" `🚀`", tags=["a", "ü"],
                     extra={"nested": {"list": [1, 2.5, None, True]}, "big": big})
    new = NewEvent.of(original)
    assert new.data == orjson.dumps(original.model_dump(mode="json"))
    await store.append("s", [new], 0)
    [rec] = await store.read_stream("s")
    assert rec.event == original
    async with store.engine.connect() as conn:
        raw = await conn.scalar(select(events_table.c.data))
        stype, sver = (await conn.execute(
            select(events_table.c.event_type, events_table.c.schema_version))).one()
    assert raw is not None and bytes(raw) == new.data
    assert (stype, sver) == ("test.noted", 1)


async def test_recorded_at_is_set(store: EventStore) -> None:
    before = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=2)
    await store.append("s", [ev(1), ev(2)], 0)
    await store.append("t", [ev(3)], 0)
    after = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=2)
    recs = await store.read_all()
    for r in recs:
        assert isinstance(r.recorded_at, datetime)
        assert before <= r.recorded_at <= after  # naive UTC
    assert recs[0].recorded_at <= recs[-1].recorded_at


async def test_unknown_event_type_on_read(make_store: StoreFactory) -> None:
    writer = await make_store().init()
    await writer.append("s", [ev(1)], 0)
    reader = make_store(EventRegistry())  # knows no types at all
    with pytest.raises(UnknownEventType, match=r"test\.noted"):
        await reader.read_stream("s")
    with pytest.raises(UnknownEventType):
        await reader.read_all()
    assert await reader.stream_version("s") == 1  # envelope-only reads still work


# --- upcasting --------------------------------------------------------------------------------


async def test_upcast_v1_event_when_read_by_v2(make_store: StoreFactory) -> None:
    old = await make_store(registry_v1()).init()
    await old.append("s", [NewEvent.of(RenamedV1(name="alice"))], 0)
    calls: list[int] = []
    new = make_store(registry_v2(calls))
    [rec] = await new.read_stream("s")
    assert type(rec.event) is RenamedV2
    assert rec.event == RenamedV2(full_name="alice", origin="v1")
    assert calls == [1]
    # the stored envelope still says v1: upcasting happens on read, the log is immutable
    async with new.engine.connect() as conn:
        assert await conn.scalar(select(events_table.c.schema_version)) == 1

    # a v2 event written by the new program is read as is, without upcasting
    await new.append("s", [NewEvent.of(RenamedV2(full_name="bob", origin="v2"))], 1)
    calls.clear()
    recs = await new.read_stream("s", after_version=1)
    assert [r.event for r in recs] == [RenamedV2(full_name="bob", origin="v2")]
    assert calls == []


async def test_upcasters_chain_across_versions(make_store: StoreFactory) -> None:
    old = await make_store(registry_v1()).init()
    await old.append("s", [NewEvent.of(RenamedV1(name="alice"))], 0)
    mid = make_store(registry_v2())
    await mid.append("s", [NewEvent.of(RenamedV2(full_name="bob", origin="v2"))], 1)
    recs = await make_store(registry_v3()).read_all()
    assert [r.event for r in recs] == [
        RenamedV3(full_name="alice", origin="v1", upper="ALICE"),
        RenamedV3(full_name="bob", origin="v2", upper="BOB"),
    ]


async def test_missing_upcaster_is_a_clear_error(make_store: StoreFactory) -> None:
    old = await make_store(registry_v1()).init()
    await old.append("s", [NewEvent.of(RenamedV1(name="alice"))], 0)
    reader = make_store(registry_v3(with_1_to_2=False))
    with pytest.raises(UnknownEventType, match=r"no upcaster for test\.renamed from schema "
                                               r"version 1"):
        await reader.read_stream("s")


# --- snapshots ----------------------------------------------------------------------------


def snap(stream: str, version: int, data: bytes, state_type: str = "t",
         schema_version: int = 1) -> Snapshot:
    return Snapshot(stream_id=stream, version=version, state_type=state_type,
                    schema_version=schema_version, data=data)


async def test_snapshot_save_load_overwrite(store: EventStore) -> None:
    assert await store.load_snapshot("s") is None
    first = snap("s", 5, b'{"v":5}')
    await store.save_snapshot(first)
    assert await store.load_snapshot("s") == first
    newer = snap("s", 9, b"\x00\xff binary \x80", state_type="t2", schema_version=3)
    await store.save_snapshot(newer)
    assert await store.load_snapshot("s") == newer
    big = snap("s", 10, b"x" * 200_000)  # > 64 KiB
    await store.save_snapshot(big)
    assert await store.load_snapshot("s") == big
    assert await store.load_snapshot("other") is None


async def test_older_snapshot_never_replaces_newer(store: EventStore) -> None:
    newer = snap("s", 10, b"ten")
    await store.save_snapshot(newer)
    await store.save_snapshot(snap("s", 9, b"nine"))
    await store.save_snapshot(snap("s", 1, b"one"))
    assert await store.load_snapshot("s") == newer


async def test_snapshots_are_per_stream(store: EventStore) -> None:
    for sid in ODD_IDS[:5]:
        await store.save_snapshot(snap(sid, len(sid), sid.encode()))
    for sid in ODD_IDS[:5]:
        assert await store.load_snapshot(sid) == snap(sid, len(sid), sid.encode())


async def test_concurrent_snapshot_saves_keep_the_newest(make_store: StoreFactory) -> None:
    stores = [make_store() for _ in range(6)]
    await asyncio.gather(*(s.init() for s in stores))
    for round_ in range(3):
        base = round_ * 10
        await asyncio.gather(*(
            s.save_snapshot(snap("s", base + v, str(base + v).encode()))
            for v, s in enumerate(stores, 1)
        ))
        assert await stores[0].load_snapshot("s") == snap("s", base + 6, str(base + 6).encode())
    await stores[0].save_snapshot(snap("s", 100, b"100"))
    await asyncio.gather(
        *(s.save_snapshot(snap("s", v, str(v).encode())) for v, s in enumerate(stores, 1))
    )
    assert await stores[0].load_snapshot("s") == snap("s", 100, b"100")


async def test_concurrent_first_snapshots_of_different_streams(
    make_store: StoreFactory,
) -> None:
    """Source actors snapshot their own streams at the same time: none may fail."""
    stores = [make_store() for _ in range(6)]
    await asyncio.gather(*(s.init() for s in stores))
    for round_ in range(3):
        await asyncio.gather(*(
            s.save_snapshot(snap(f"source:{round_}-{i}", 1, b"x")) for i, s in enumerate(stores)
        ))
    for round_ in range(3):
        for i in range(6):
            assert await stores[0].load_snapshot(f"source:{round_}-{i}") == snap(
                f"source:{round_}-{i}", 1, b"x")


# --- following the log ------------------------------------------------------------------------


async def test_follower_polling_read_all_never_misses_a_committed_event(
    make_store: StoreFactory
) -> None:
    """A reader that remembers the last position it saw must see every later commit.

    One append is held between its INSERT and its COMMIT (done by hand on its own engine)
    while another append commits and a follower polls.
    """
    writer = await make_store().init()
    follower = await make_store().init()
    slow = await make_store().init()
    conn = await slow.engine.connect()
    try:
        await conn.begin()
        if is_mysql(slow):  # the first step of every append() on MySQL: the head lock
            await conn.execute(log_head_table.update().where(log_head_table.c.id == 1)
                               .values(appends=log_head_table.c.appends + 1))
        await conn.execute(events_table.insert().values(
            stream_id="slow", version=1, event_type="test.noted", schema_version=1,
            data=ev(1).data, recorded_at=datetime.now(UTC).replace(tzinfo=None)))
        # SQLite: both wait for the slow writer's lock. MySQL: the fast append commits
        # and the follower polls after it.
        fast = asyncio.create_task(writer.append("fast", [ev(2)], 0))
        await asyncio.wait({fast}, timeout=1.0)
        poll = asyncio.create_task(follower.read_all())
        await asyncio.wait({poll}, timeout=1.0)
        await conn.commit()
    finally:
        await conn.close()
    assert await fast == 1
    seen = list(await poll)
    seen += await follower.read_all(after_position=seen[-1].position if seen else 0)
    assert sorted(ns(seen)) == [1, 2]


async def test_close_is_safe_after_use(make_store: StoreFactory) -> None:
    s = await make_store().init()
    await s.append("s", [ev(1)], 0)
    await s.close()
    # a fresh store on the same database sees what the closed one wrote
    again = make_store()
    assert ns(await again.read_stream("s")) == [1]
