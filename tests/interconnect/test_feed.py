"""The event feed: centre 15 events are on local disk before ``put`` returns, survive a
crash and an outbox store outage of any length, in order, and are sent once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from regulator.interconnect.events import OutboxEvent, call_event
from regulator.interconnect.feed import JOURNAL_NAME, SPOOL_NAME, EventFeed
from regulator.interconnect.outbox import OutboxStore
from tests.interconnect.conftest import StoreFactory
from tests.interconnect.helpers import T0, call_record, events, eventually

A = "samu30-lrm"


class Outbox:
    """A sink standing for the outbox store, down while ``down`` is set (every write
    raises, as a dead Redis does), and keeping what it accepted, in order."""

    def __init__(self) -> None:
        self.down = False
        self.failures = 0
        self.accepted: list[OutboxEvent] = []

    async def enqueue(self, batch: Sequence[OutboxEvent]) -> None:
        if self.down:
            self.failures += 1
            raise ConnectionError("Error 111 connecting to outbox store")
        self.accepted.extend(batch)


async def until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async def check() -> bool:
        return predicate()

    await eventually(check, timeout_s=timeout_s)


def journal_lines(directory: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in directory.glob(JOURNAL_NAME + ".*"))


def feed_for(outbox: Outbox, directory: Path, **options: object) -> EventFeed:
    options.setdefault("retry_initial_s", 0.01)
    options.setdefault("retry_max_s", 0.05)
    return EventFeed(outbox.enqueue, directory, **options)  # type: ignore[arg-type]


async def test_an_event_is_on_disk_before_put_returns_and_a_crash_loses_none(
    tmp_path: Path,
) -> None:
    outbox = Outbox()
    crashed = feed_for(outbox, tmp_path)
    batch = events(5)
    for event in batch:
        crashed.put(event)
    # No writer ran (the process died right after answering): the journal has them all.
    assert journal_lines(tmp_path) == 5
    assert crashed.backlog == 5

    restarted = feed_for(outbox, tmp_path)  # same data directory, as after kill -9
    assert restarted.recovered == 5
    restarted.start()
    await until(lambda: outbox.accepted == batch)
    await restarted.stop()
    assert restarted.backlog == 0
    assert journal_lines(tmp_path) == 0
    assert (tmp_path / SPOOL_NAME).stat().st_size == 0


async def test_a_long_outage_delays_events_and_drops_none_in_order(tmp_path: Path) -> None:
    outbox = Outbox()
    feed = feed_for(outbox, tmp_path)
    feed.start()
    outbox.down = True
    first = call_record(1)
    completed = replace(first, status="completed", duration_s=42)
    # One call's life in order, between other events.
    sent = [call_event(first), *events(30), call_event(completed)]
    for event in sent:
        feed.put(event)
        await asyncio.sleep(0.002)
    # Many failed attempts (far more than any fixed retry count), nothing dropped.
    await until(lambda: outbox.failures >= 20)
    assert feed.backlog == len(sent)
    assert feed.spool.pending == len(sent)  # spilled to the fsync'd spool
    assert journal_lines(tmp_path) == 0  # the spool holds them now
    outbox.down = False
    await until(lambda: feed.backlog == 0)
    assert outbox.accepted == sent  # call.routed before call.completed, and all the rest
    await feed.stop()


async def test_memory_is_bounded_while_the_store_is_down(tmp_path: Path) -> None:
    outbox = Outbox()
    outbox.down = True
    feed = feed_for(outbox, tmp_path, memory_limit=10, retry_initial_s=30, retry_max_s=30)
    feed.start()
    batch = events(200)
    for event in batch:
        feed.put(event)
        assert feed.queued <= 11
    await asyncio.sleep(0.05)
    assert feed.backlog == 200
    assert feed.spool.pending >= 190
    await feed.stop()  # store still down: everything goes to the fsync'd spool
    assert feed.spool.pending == 200
    again = feed_for(outbox, tmp_path)
    outbox.down = False
    again.start()
    await until(lambda: again.backlog == 0)
    assert outbox.accepted == batch
    await again.stop()


async def test_stop_with_the_store_down_spools_everything(tmp_path: Path) -> None:
    outbox = Outbox()
    outbox.down = True
    feed = feed_for(outbox, tmp_path, retry_initial_s=30, retry_max_s=30)
    feed.start()
    for event in events(7):
        feed.put(event)
    await feed.stop()
    assert (tmp_path / SPOOL_NAME).read_bytes().count(b"\n") == 7
    assert journal_lines(tmp_path) == 0


async def test_local_disk_refusing_the_spool_keeps_events_in_memory(tmp_path: Path) -> None:
    outbox = Outbox()
    outbox.down = True
    feed = feed_for(outbox, tmp_path)
    feed.start()
    blocker = tmp_path / SPOOL_NAME
    blocker.mkdir()  # the spool can't be opened for writing (EISDIR), even by root
    batch = events(4)
    for event in batch:
        feed.put(event)
    await until(lambda: outbox.failures >= 2)
    assert feed.backlog == 4
    assert journal_lines(tmp_path) == 4  # still journaled meanwhile
    blocker.rmdir()
    outbox.down = False
    await until(lambda: outbox.accepted == batch, timeout_s=20)
    await feed.stop()


async def test_a_replayed_journal_sends_nothing_twice(
    tmp_path: Path, store_factory: StoreFactory
) -> None:
    store: OutboxStore = await store_factory.open()

    async def sink(batch: Sequence[OutboxEvent]) -> None:
        await store.enqueue(batch, [A], T0)

    crashed = EventFeed(sink, tmp_path)
    batch = events(3)
    for event in batch:
        crashed.put(event)
    # The events reached the store and were delivered, then the process died before
    # the journal was released.
    await sink(batch)
    for event in batch:
        assert await store.mark_delivered(A, event.event_id)

    restarted = EventFeed(sink, tmp_path)
    assert restarted.recovered == 3
    restarted.start()
    await until(lambda: restarted.backlog == 0)
    await restarted.stop()
    assert await store.pending_count() == 0
    assert await store.due(A, T0, 10) == []
