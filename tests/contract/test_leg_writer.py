"""Leg events through the call writer: journaled, spooled when the store fails, replayed,
and counted (``on_legs``) exactly once per change, on both stores."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from regulator.core.legs import LegChange, LegEvent, LegOutcome, LegStatus, settled
from regulator.core.models import CallRecord, CallUpdate, Route
from regulator.ports import Store, StoreError
from regulator.storage.batch import CallWriter, Journal
from regulator.storage.spool import Spool, decode, encode
from tests.support.store import MMG, MONTH, T0, call

RETRY_S = 0.02
SHORT = 15.0


class Switchable:
    """A real store whose writes can be switched off, one operation at a time."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.down: set[str] = set()
        self.leg_batches: list[int] = []

    def _check(self, op: str) -> None:
        if op in self.down:
            raise StoreError(f"{op} down (test)")

    async def record_calls(self, records: Sequence[CallRecord]) -> list[bool]:
        self._check("record_calls")
        return await self.store.record_calls(records)

    async def update_calls(self, updates: Sequence[CallUpdate]) -> None:
        self._check("update_calls")
        await self.store.update_calls(updates)

    async def record_leg_events(self, events: Sequence[LegEvent]) -> list[LegChange]:
        self._check("record_leg_events")
        self.leg_batches.append(len(events))
        return await self.store.record_leg_events(events)


def ev(call_id: str, status: LegStatus, s: float, **kw: object) -> LegEvent:
    return LegEvent(
        call_id=call_id,
        target=Route.REGULATION,
        status=status,
        at=T0 + timedelta(seconds=s),
        mmg=MMG,
        platform="twilio",
        **kw,  # type: ignore[arg-type]
    )


def leg_events(n: int) -> list[LegEvent]:
    out: list[LegEvent] = []
    for i in range(n):
        out += [
            ev(f"CA{i:03d}", LegStatus.RINGING, i),
            ev(f"CA{i:03d}", LegStatus.ANSWERED, i + 20),
            ev(f"CA{i:03d}", LegStatus.COMPLETED, i + 80, duration_s=60),
        ]
    return out


async def until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


def offered(changes: Sequence[LegChange]) -> int:
    return sum(settled(c, SHORT).offered for c in changes)


def test_leg_events_round_trip_through_the_spool_codec() -> None:
    events = [
        ev("CA1", LegStatus.COMPLETED, 90, duration_s=61),
        ev("CA|2", LegStatus.ABANDONED, 8),
        LegEvent(
            call_id="CA3",
            target=Route.PHARMACY,
            status=LegStatus.OFFERED,
            at=T0 + timedelta(microseconds=123),
        ),
    ]
    for event in events:
        line = encode(event)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert decode(line.rstrip(b"\n")) == event


async def test_leg_events_survive_in_the_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    items: list[CallRecord | LegEvent] = [call("CA1"), *leg_events(2)]
    for seq, item in enumerate(items, start=1):
        journal.append(seq, item)
    # The process dies here: the next one moves the journal into its spool.
    spool = Spool(tmp_path / "spool.jsonl")
    assert Journal(tmp_path / "journal").recover(spool) == len(items)
    spool.close()
    reopened = Spool(tmp_path / "spool.jsonl")
    assert reopened.pending == len(items)
    assert [decode(line) for line in reopened.path.read_bytes().splitlines()] == items
    reopened.close()


async def test_failed_leg_writes_are_spooled_and_counted_once_on_replay(
    tmp_path: Path, store: Store
) -> None:
    flaky = Switchable(store)
    counted: list[LegChange] = []
    errors: list[str] = []
    spool = Spool(tmp_path / "spool.jsonl")
    writer = CallWriter(
        flaky,  # type: ignore[arg-type]
        spool,
        retry_initial_s=RETRY_S,
        retry_max_s=4 * RETRY_S,
        on_error=errors.append,
        on_legs=counted.extend,
    )
    await writer.start()
    flaky.down = {"record_leg_events"}
    events = leg_events(10)
    writer.submit_record(call("CA000"))
    for event in events:
        writer.submit_leg(event)
    await until(lambda: spool.pending == len(events))
    assert "record_leg_events" in errors
    assert counted == []
    assert await store.get_call("CA000") is not None  # the record went, the legs waited
    assert await store.legs(MMG, T0, T0 + timedelta(hours=1)) == []

    flaky.down = set()
    await until(lambda: spool.pending == 0 and writer.queued == 0)
    # The same events again, retried by the platform after the outage.
    for event in events[:9]:
        writer.submit_leg(event)
    await writer.flush()
    await writer.stop()

    assert len(counted) == len(events) + 9  # one change per event, replay included
    assert offered(counted) == 10  # every leg once
    assert [
        settled(c, SHORT).answer_delay_s for c in counted if settled(c, SHORT).answer_delay_s
    ] == [20.0] * 10
    legs = await store.legs(MMG, T0, T0 + timedelta(hours=1))
    assert [(leg.call_id, leg.outcome, leg.wait_s) for leg in legs] == [
        (f"CA{i:03d}", LegOutcome.ANSWERED, 20.0) for i in range(10)
    ]


async def test_a_failed_update_spools_the_batch_leg_events_too(
    tmp_path: Path, store: Store
) -> None:
    flaky = Switchable(store)
    counted: list[LegChange] = []
    spool = Spool(tmp_path / "spool.jsonl")
    writer = CallWriter(
        flaky,  # type: ignore[arg-type]
        spool,
        retry_initial_s=RETRY_S,
        retry_max_s=4 * RETRY_S,
        on_legs=counted.extend,
        max_delay_s=0.05,  # one batch: record, update and legs together
    )
    await store.record_calls([call("CA000")])
    flaky.down = {"update_calls"}
    await writer.start()
    writer.submit_update(CallUpdate(call_id="CA000", mmg=MMG, month=MONTH, route=Route.PHARMACY))
    for event in leg_events(2):
        writer.submit_leg(event)
    await until(lambda: spool.pending == 7)
    assert counted == []
    flaky.down = set()
    await until(lambda: spool.pending == 0)
    await writer.stop()
    assert offered(counted) == 2 and len(counted) == 6
    assert len(await store.legs(MMG, T0, T0 + timedelta(hours=1))) == 2


async def test_a_replay_after_a_crash_counts_nothing_twice(tmp_path: Path, store: Store) -> None:
    """The process died after writing a spool batch but before truncating the spool:
    the next one replays the same leg events, which settle nothing new."""
    events = leg_events(5)
    first = Spool(tmp_path / "spool.jsonl")
    counted: list[LegChange] = []
    first.on_legs = counted.extend
    first.append(events)
    assert await first.replay(store) == len(events)
    assert offered(counted) == 5
    first.append(events)  # as if the truncation never happened
    first.close()

    again: list[LegChange] = []
    writer = CallWriter(store, Spool(tmp_path / "spool.jsonl"), on_legs=again.extend)
    await writer.start()
    await until(lambda: writer.spooled == 0)
    await writer.stop()
    assert len(again) == len(events)
    assert all(c.before == c.after for c in again)
    assert offered(again) == 0


async def test_legs_are_written_in_the_writers_batches(tmp_path: Path, store: Store) -> None:
    """One ``record_leg_events`` round trip per batch, not one per event."""
    counting = Switchable(store)
    writer = CallWriter(counting, Spool(tmp_path / "spool.jsonl"), max_batch=100)  # type: ignore[arg-type]
    await writer.start()
    for event in leg_events(100):  # 300 events submitted at once
        writer.submit_leg(event)
    await writer.flush()
    await writer.stop()
    assert sum(counting.leg_batches) == 300
    assert len(counting.leg_batches) <= 4
