"""Dial legs in the store (``record_leg_events``, ``legs``, the purge): both stores fold
the same events into the same legs, once, whatever the order and whoever writes them."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

from regulator.core.legs import Leg, LegChange, LegEvent, LegOutcome, LegStatus, fold, settled
from regulator.core.models import Route
from regulator.ports import Store
from regulator.storage.redis import RedisStore
from regulator.storage.sqlite import SqliteStore
from tests.support.store import MMG, OTHER_MMG, T0

SHORT = 15.0


def ev(
    call_id: str,
    status: LegStatus,
    s: float,
    *,
    target: Route = Route.REGULATION,
    mmg: str = MMG,
    duration_s: int | None = None,
) -> LegEvent:
    return LegEvent(
        call_id=call_id,
        target=target,
        status=status,
        at=T0 + timedelta(seconds=s),
        mmg=mmg,
        platform="twilio",
        duration_s=duration_s,
    )


def answered_leg(call_id: str, offered_s: float, wait_s: float = 25) -> list[LegEvent]:
    return [
        ev(call_id, LegStatus.OFFERED, offered_s),
        ev(call_id, LegStatus.RINGING, offered_s + 1),
        ev(call_id, LegStatus.ANSWERED, offered_s + wait_s),
        ev(call_id, LegStatus.COMPLETED, offered_s + wait_s + 60, duration_s=60),
    ]


async def test_one_change_per_event_in_order(store: Store) -> None:
    events = [*answered_leg("CA1", 0), ev("CA2", LegStatus.BUSY, 3)]
    changes = await store.record_leg_events(events)
    assert len(changes) == len(events)
    # What fold gives, event after event, per leg: the store adds nothing of its own.
    expected: list[LegChange] = []
    legs: dict[tuple[str, Route], Leg] = {}
    for event in events:
        key = (event.call_id, event.target)
        before = legs.get(key)
        legs[key] = fold(before, event)
        expected.append(LegChange(before, legs[key]))
    assert changes == expected
    assert changes[0].before is None
    assert changes[-1].before is None  # CA2's first event
    assert changes[3].after.outcome is LegOutcome.ANSWERED
    assert changes[3].after.wait_s == 25.0
    assert await store.legs(MMG, T0, T0 + timedelta(hours=1)) == [
        legs[("CA1", Route.REGULATION)],
        legs[("CA2", Route.REGULATION)],
    ]


async def test_repeats_change_nothing_and_settle_nothing(store: Store) -> None:
    events = answered_leg("CA1", 0)
    first = await store.record_leg_events(events)
    again = await store.record_leg_events(events)  # every callback retried
    assert all(change.before == change.after for change in again)
    assert again[-1].after == first[-1].after
    assert sum(settled(c, SHORT).offered for c in first + again) == 1
    # Repeats inside one batch too.
    inside = await store.record_leg_events([ev("CA2", LegStatus.NO_ANSWER, 30)] * 3)
    assert [c.before is None for c in inside] == [True, False, False]
    assert inside[1].before == inside[1].after == inside[2].after


async def test_out_of_order_gives_the_same_leg(store: Store) -> None:
    events = answered_leg("CA1", 0)
    await store.record_leg_events(list(reversed(events)))
    for event in events:
        await store.record_leg_events(
            [ev("CA2", event.status, (event.at - T0).total_seconds(), duration_s=event.duration_s)]
        )
    one, two = await store.legs(MMG, T0, T0 + timedelta(hours=1))
    assert (one.call_id, two.call_id) == ("CA1", "CA2")
    assert one.offered_at == two.offered_at == T0
    assert one.answered_at == two.answered_at == T0 + timedelta(seconds=25)
    assert one.ended_at == two.ended_at == T0 + timedelta(seconds=85)


async def test_legs_range_is_half_open_and_oldest_first(store: Store) -> None:
    # Written newest first: the read orders them.
    for i, call_id in enumerate(["CA3", "CA2", "CA1", "CA0"]):
        await store.record_leg_events([ev(call_id, LegStatus.OFFERED, 60 * (3 - i))])
    await store.record_leg_events([ev("CX", LegStatus.OFFERED, 60, mmg=OTHER_MMG)])
    start, end = T0 + timedelta(seconds=60), T0 + timedelta(seconds=180)
    assert [leg.call_id for leg in await store.legs(MMG, start, end)] == ["CA1", "CA2"]
    everything = await store.legs(MMG, T0, T0 + timedelta(days=1))
    assert [leg.call_id for leg in everything] == ["CA0", "CA1", "CA2", "CA3"]
    assert [leg.call_id for leg in await store.legs(OTHER_MMG, T0, end)] == ["CX"]
    assert await store.legs(MMG, end, end) == []
    assert await store.legs("nobody", T0, end) == []


async def test_two_targets_of_one_call_are_two_legs(store: Store) -> None:
    await store.record_leg_events(
        [
            ev("CA1", LegStatus.NO_ANSWER, 30),
            ev("CA1", LegStatus.ANSWERED, 40, target=Route.DIRECT_ACCESS),
            ev("CA1", LegStatus.OFFERED, 31, target=Route.DIRECT_ACCESS),
        ]
    )
    legs = await store.legs(MMG, T0, T0 + timedelta(hours=1))
    assert [(leg.line, leg.outcome) for leg in legs] == [
        ("regulation", LegOutcome.NO_ANSWER),
        ("front_desk", LegOutcome.ANSWERED),
    ]


async def test_an_earlier_offer_moves_the_leg_in_the_index(store: Store) -> None:
    await store.record_leg_events([ev("CA1", LegStatus.ANSWERED, 3600)])
    hour_two = (T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    assert [leg.call_id for leg in await store.legs(MMG, *hour_two)] == ["CA1"]
    # The offer, retried, arrives an hour late (a leg offered before midnight, say).
    await store.record_leg_events([ev("CA1", LegStatus.OFFERED, 3540)])
    assert await store.legs(MMG, *hour_two) == []
    (leg,) = await store.legs(MMG, T0, T0 + timedelta(hours=1))
    assert leg.wait_s == 60.0


async def test_an_empty_mmg_takes_the_stored_legs_and_a_later_one_fills_it(store: Store) -> None:
    window = (T0, T0 + timedelta(hours=1))
    await store.record_leg_events([ev("CA1", LegStatus.OFFERED, 0)])
    (change,) = await store.record_leg_events([ev("CA1", LegStatus.ANSWERED, 20, mmg="")])
    assert change.after.mmg == MMG
    assert [leg.wait_s for leg in await store.legs(MMG, *window)] == [20.0]

    # A leg first known without its MMG is read under "" until an event names it.
    await store.record_leg_events([ev("CA2", LegStatus.RINGING, 1, mmg="")])
    assert [leg.call_id for leg in await store.legs("", *window)] == ["CA2"]
    (change,) = await store.record_leg_events([ev("CA2", LegStatus.NO_ANSWER, 30)])
    assert (change.before and change.before.mmg, change.after.mmg) == ("", MMG)
    assert await store.legs("", *window) == []
    assert [leg.call_id for leg in await store.legs(MMG, *window)] == ["CA1", "CA2"]


async def test_call_ids_with_separators(store: Store) -> None:
    """Call ids are the platform's (a generic PBX's may hold ``|`` or ``:``)."""
    ids = ["a|b", "sip:1@host:5060", "x|y|z"]
    await store.record_leg_events([ev(i, LegStatus.BUSY, n) for n, i in enumerate(ids)])
    legs = await store.legs(MMG, T0, T0 + timedelta(hours=1))
    assert [(leg.call_id, leg.outcome) for leg in legs] == [(i, LegOutcome.BUSY) for i in ids]
    await store.purge_calls(T0 + timedelta(hours=1))
    assert await store.legs(MMG, T0, T0 + timedelta(hours=1)) == []


async def test_purge_drops_legs_offered_before_the_cutoff(store: Store) -> None:
    await store.record_leg_events(
        answered_leg("OLD", -86400)
        + answered_leg("NEW", 0)
        + [ev("ELSE", LegStatus.BUSY, -1, mmg=OTHER_MMG)]
    )
    await store.purge_calls(T0)
    assert [
        leg.call_id for leg in await store.legs(MMG, T0 - timedelta(days=2), T0 + timedelta(days=1))
    ] == ["NEW"]
    assert await store.legs(OTHER_MMG, T0 - timedelta(days=2), T0 + timedelta(days=1)) == []
    # A purged leg's late event starts a new leg (its record is gone too): no error.
    (change,) = await store.record_leg_events([ev("OLD", LegStatus.COMPLETED, -86000)])
    assert change.before is None
    if isinstance(store, RedisStore):
        keys = store.keys
        client = store._db()
        assert await client.zcard(keys.legs_by_at()) == 2  # NEW, and OLD again
        assert await client.zcard(keys.legs(OTHER_MMG)) == 0


async def test_two_writers_folding_interleaved_events_converge_and_count_once(
    store: Store, replica: Store
) -> None:
    """Two replicas (two Redis clients on one prefix, two connections to one SQLite
    file) each receive part of every leg's callbacks, shuffled and retried, and write
    them in small concurrent batches: the legs are those one writer alone would store,
    and the settled changes count every leg once."""
    rng = random.Random(17)
    legs_n = 40
    events: list[LegEvent] = []
    for n in range(legs_n):
        if n % 4 == 3:  # a long abandon
            events += [ev(f"C{n}", LegStatus.RINGING, n), ev(f"C{n}", LegStatus.ABANDONED, n + 40)]
        else:
            events += answered_leg(f"C{n}", n, wait_s=5 + n)
    shares: list[list[LegEvent]] = [[], []]
    for event in events:
        shares[rng.randrange(2)].append(event)
        if rng.random() < 0.3:  # the platform retried it, and another replica got it
            shares[rng.randrange(2)].append(event)
    for share in shares:
        rng.shuffle(share)

    async def write(target: Store, share: list[LegEvent]) -> list[LegChange]:
        out: list[LegChange] = []
        for i in range(0, len(share), 7):
            out += await target.record_leg_events(share[i : i + 7])
            await asyncio.sleep(0)
        return out

    one, two = await asyncio.gather(write(store, shares[0]), write(replica, shares[1]))
    changes = one + two

    alone: dict[tuple[str, Route], Leg] = {}
    for event in events:
        key = (event.call_id, event.target)
        alone[key] = fold(alone.get(key), event)
    window = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    stored = await store.legs(MMG, *window)
    assert stored == sorted(alone.values(), key=lambda leg: leg.offered_at)
    assert await replica.legs(MMG, *window) == stored

    done = [settled(change, SHORT) for change in changes]
    assert sum(d.offered for d in done) == legs_n
    assert sum(d.abandoned for d in done) == legs_n // 4
    assert sum(d.answer_delay_s is not None for d in done) == legs_n - legs_n // 4


async def test_a_500_event_batch(store: Store) -> None:
    """Performance sanity of the write path's read of the stored legs (measured, printed;
    not asserted: the machine is shared)."""
    batch = [e for n in range(125) for e in answered_leg(f"P{n:03d}", n)]
    assert len(batch) == 500
    timings = []
    for _ in range(3):  # new legs, then all of them stored (the read finds 125 rows)
        started = time.perf_counter()
        changes = await store.record_leg_events(batch)
        timings.append(time.perf_counter() - started)
        assert len(changes) == 500
    print(
        f"\n{type(store).__name__}: 500 leg events in "
        + ", ".join(f"{t * 1000:.1f} ms" for t in timings)
    )
    assert len(await store.legs(MMG, T0, T0 + timedelta(hours=1))) == 125
    if isinstance(store, SqliteStore):
        assert store.path.exists()


async def test_a_legs_table_without_seen_is_migrated(tmp_path: Path) -> None:
    """A file written by the first version of the legs table (no ``seen`` column)."""
    path = tmp_path / "regulator.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE legs (call_id TEXT NOT NULL, target TEXT NOT NULL, mmg TEXT NOT NULL,"
            " platform TEXT NOT NULL, offered_us INTEGER NOT NULL, answered_us INTEGER,"
            " ended_us INTEGER, outcome TEXT, PRIMARY KEY (call_id, target)) WITHOUT ROWID"
        )
        conn.execute(
            "INSERT INTO legs VALUES ('OLD', 'regulation', ?, 'twilio', ?, NULL, NULL, NULL)",
            (MMG, int(T0.timestamp() * 1_000_000)),
        )
    store = SqliteStore(path)
    await store.open()
    try:
        (change,) = await store.record_leg_events([ev("OLD", LegStatus.ANSWERED, 30)])
        assert change.before is not None and change.before.seen == frozenset()
        (leg,) = await store.legs(MMG, T0, T0 + timedelta(hours=1))
        assert (leg.wait_s, leg.seen) == (30.0, frozenset({LegStatus.ANSWERED}))
    finally:
        await store.close()
