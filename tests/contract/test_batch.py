"""The group-committing call writer: no call lost, none counted twice, the caller never waits."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
import pytest_asyncio

from regulator.core.indicators import CALLS
from regulator.core.models import CallRecord, CallUpdate, Route
from regulator.ports import Store, StoreError
from regulator.storage.batch import CallWriter, Journal
from regulator.storage.keys import Keys
from regulator.storage.redis import RedisStore
from regulator.storage.spool import Spool
from regulator.storage.sqlite import SqliteStore
from tests.support.disk import HalfWriteThenFull
from tests.support.redis_server import RedisServer
from tests.support.store import MMG, MONTH, call, expected_counters

RETRY_S = 0.05  # first replay retry (the default 0.5 s would slow the tests down)


class Counting:
    """A real store that counts the write round trips it receives."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.record_batches: list[int] = []
        self.update_batches: list[int] = []

    async def record_calls(self, records: Sequence[CallRecord]) -> list[bool]:
        self.record_batches.append(len(records))
        return await self.store.record_calls(records)

    async def update_calls(self, updates: Sequence[CallUpdate]) -> None:
        self.update_batches.append(len(updates))
        await self.store.update_calls(updates)


@pytest_asyncio.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "regulator.sqlite3")
    await store.open()
    yield store
    await store.close()


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_writer_groups_calls_into_few_transactions(
    tmp_path: Path, sqlite_store: SqliteStore
) -> None:
    counting = Counting(sqlite_store)
    writer = CallWriter(counting, Spool(tmp_path / "spool.jsonl"))  # type: ignore[arg-type]
    await writer.start()
    records = [call(f"CA{i}") for i in range(1000)]
    for record in records:
        writer.submit_record(record)  # returns at once: nothing awaited
    assert writer.queued == 1000
    await writer.flush()
    assert writer.queued == 0
    assert sum(counting.record_batches) == 1000
    assert len(counting.record_batches) <= 4
    await writer.stop()
    assert await sqlite_store.call_counters(MMG, MONTH) == expected_counters(records)


async def test_writer_keeps_updates_after_their_records(
    tmp_path: Path, sqlite_store: SqliteStore
) -> None:
    writer = CallWriter(sqlite_store, Spool(tmp_path / "spool.jsonl"), max_batch=7)
    await writer.start()
    finals = []
    for i in range(50):
        writer.submit_record(call(f"CA{i}", route=Route.MENU))
        writer.submit_update(
            CallUpdate(call_id=f"CA{i}", mmg=MMG, month=MONTH, route=Route.REGULATION)
        )
        writer.submit_update(
            CallUpdate(call_id=f"CA{i}", mmg=MMG, month=MONTH, route=Route.PHARMACY)
        )
        finals.append(call(f"CA{i}", route=Route.PHARMACY))
    await writer.stop()
    assert await sqlite_store.call_counters(MMG, MONTH) == expected_counters(finals)


async def test_full_queue_spills_to_the_spool_without_blocking(
    tmp_path: Path, sqlite_store: SqliteStore
) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    pending: list[int] = []
    writer = CallWriter(
        sqlite_store,
        spool,
        queue_size=10,
        on_spool_change=pending.append,
        retry_initial_s=RETRY_S,
        retry_max_s=4 * RETRY_S,
    )
    # Not started yet: nothing drains the queue, so it fills up.
    for i in range(25):
        writer.submit_record(call(f"CA{i}", route=Route.MENU))
    writer.submit_update(CallUpdate(call_id="CA3", mmg=MMG, month=MONTH, route=Route.PHARMACY))
    assert writer.queued + spool.pending == 26
    assert spool.pending == 22
    assert pending[-1] == 22

    await writer.start()
    await wait_until(lambda: spool.pending == 0 and writer.queued == 0)
    await writer.stop()
    assert pending[-1] == 0
    expected = [call(f"CA{i}", route=Route.MENU) for i in range(25) if i != 3]
    expected.append(call("CA3", route=Route.PHARMACY))
    assert await sqlite_store.call_counters(MMG, MONTH) == expected_counters(expected)


async def test_writer_replays_what_a_previous_run_left(
    tmp_path: Path, sqlite_store: SqliteStore
) -> None:
    path = tmp_path / "spool.jsonl"
    previous = Spool(path)
    previous.append([call("CA1"), call("CA2")])
    previous.close()

    writer = CallWriter(sqlite_store, Spool(path), retry_initial_s=RETRY_S, retry_max_s=4 * RETRY_S)
    await writer.start()
    writer.submit_record(call("CA3"))
    await wait_until(lambda: writer.spooled == 0 and writer.queued == 0)
    await writer.flush()
    await writer.stop()
    assert (await sqlite_store.call_counters(MMG, MONTH))[CALLS] == 3


async def test_writer_spools_while_the_store_is_down_and_reports_it(
    tmp_path: Path,
) -> None:
    dead = RedisStore(f"unix://{tmp_path}/nobody.sock", prefix="x")
    errors: list[str] = []
    spool = Spool(tmp_path / "spool.jsonl")
    writer = CallWriter(
        dead, spool, on_error=errors.append, retry_initial_s=RETRY_S, retry_max_s=4 * RETRY_S
    )
    await writer.start()
    started = time.monotonic()
    for i in range(100):
        writer.submit_record(call(f"CA{i}"))
    assert time.monotonic() - started < 0.05
    await writer.flush()  # everything is in the (fsync'd) spool
    assert spool.pending == 100
    assert "record_calls" in errors
    await writer.stop()
    assert Spool(spool.path).pending == 100


async def test_writer_survives_redis_killed_mid_stream(
    tmp_path: Path, redis_server_factory: Callable[..., RedisServer]
) -> None:
    """2,000 calls through the writer; Redis is kill -9'd after ~500 and restarted on the
    same socket: exactly 2,000 calls in the counters, none twice, none lost."""
    server = redis_server_factory(persistent=True)
    prefix = "killtest"
    store = RedisStore(server.url, prefix=prefix, socket_timeout=0.5, connect_timeout=0.2)
    await store.open()
    spool = Spool(tmp_path / "spool.jsonl")
    errors: list[str] = []
    spooled: list[int] = []
    writer = CallWriter(
        store,
        spool,
        on_error=errors.append,
        on_spool_change=spooled.append,
        retry_initial_s=RETRY_S,
        retry_max_s=4 * RETRY_S,
    )
    await writer.start()

    records = [call(f"CA{i:04d}", route=Route.MENU) for i in range(2000)]
    finals: list[CallRecord] = []
    restart_task: asyncio.Task[None] | None = None
    for i, record in enumerate(records):
        writer.submit_record(record)
        if i % 4 == 0:
            writer.submit_update(
                CallUpdate(call_id=record.call_id, mmg=MMG, month=MONTH, route=Route.REGULATION)
            )
            finals.append(call(record.call_id, route=Route.REGULATION))
        else:
            finals.append(record)
        if i == 500:
            server.kill()
            restart_task = asyncio.create_task(_restart_later(server, 0.3))
        if i % 20 == 0:
            await asyncio.sleep(0.002)  # calls arrive over time, not all at once
    assert restart_task is not None
    await restart_task
    await wait_until(lambda: writer.queued == 0 and spool.pending == 0)
    await writer.stop()

    assert errors, "the outage went unnoticed"
    assert max(spooled) > 500, "the outage should have sent most calls through the spool"
    assert await store.call_counters(MMG, MONTH) == expected_counters(finals)
    keys = Keys(prefix)
    client = store._db()
    assert await client.xlen(keys.call_log(MMG, MONTH)) == 2000
    assert await client.zcard(keys.calls_by_at()) == 2000
    await store.close()


async def _restart_later(server: RedisServer, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    await asyncio.to_thread(server.start)


async def test_two_replicas_writing_the_same_calls_count_them_once(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    stores = [RedisStore(redis_url, prefix=redis_prefix) for _ in range(2)]
    writers = [
        CallWriter(store, Spool(tmp_path / f"spool-{n}.jsonl"), max_batch=100)
        for n, store in enumerate(stores)
    ]
    for store, writer in zip(stores, writers, strict=True):
        await store.open()
        await writer.start()
    records = [call(f"CA{i}") for i in range(1000)]
    for i, record in enumerate(records):
        writers[0].submit_record(record)
        writers[1].submit_record(record)
        if i % 50 == 0:
            await asyncio.sleep(0)
    await asyncio.gather(*(writer.stop() for writer in writers))
    assert await stores[0].call_counters(MMG, MONTH) == expected_counters(records)
    for store in stores:
        await store.close()


class Stalling:
    """A real store whose first write hangs until released, then fails (a timeout)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.stalls = 1

    async def _maybe_stall(self) -> None:
        if self.stalls:
            self.stalls -= 1
            self.entered.set()
            await self.release.wait()
            raise StoreError("timed out")

    async def record_calls(self, records: Sequence[CallRecord]) -> list[bool]:
        await self._maybe_stall()
        return await self.store.record_calls(records)

    async def update_calls(self, updates: Sequence[CallUpdate]) -> None:
        await self._maybe_stall()
        await self.store.update_calls(updates)


async def test_failed_batch_goes_back_before_newer_spooled_items(
    tmp_path: Path, sqlite_store: SqliteStore
) -> None:
    stalling = Stalling(sqlite_store)
    spool = Spool(tmp_path / "spool.jsonl")
    writer = CallWriter(
        stalling,  # type: ignore[arg-type]
        spool,
        queue_size=3,
        max_batch=1,  # one item per replay batch: order is all that protects the update
        retry_initial_s=RETRY_S,
        retry_max_s=4 * RETRY_S,
    )
    await writer.start()
    writer.submit_record(call("CA0", route=Route.MENU))
    await stalling.entered.wait()  # CA0 is in flight, the store hangs
    # Its update and more calls arrive; the queue overflows to the spool.
    writer.submit_update(CallUpdate(call_id="CA0", mmg=MMG, month=MONTH, route=Route.PHARMACY))
    for i in range(1, 6):
        writer.submit_record(call(f"CA{i}"))
    assert spool.pending > 0
    stalling.release.set()  # the in-flight write fails: CA0 must go BEFORE its update
    await wait_until(lambda: writer.queued == 0 and spool.pending == 0)
    await writer.stop()
    expected = [call("CA0", route=Route.PHARMACY), *(call(f"CA{i}") for i in range(1, 6))]
    assert await sqlite_store.call_counters(MMG, MONTH) == expected_counters(expected)


async def test_a_half_written_journal_line_does_not_swallow_the_next_call(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "journal")
    full = HalfWriteThenFull(tmp_path / "journal.000001")
    monkeypatch.setattr(os, "write", full)
    journal.append(1, call("CA1"))
    full.armed = True
    journal.append(2, call("CA2"))  # logged, not raised: CA2 is still in the writer's memory
    journal.append(3, call("CA3"))
    monkeypatch.undo()
    # The process dies here; the next one recovers the journal.
    spool = Spool(tmp_path / "spool.jsonl")
    assert Journal(tmp_path / "journal").recover(spool) == 2
    await spool.replay(store)
    spool.close()
    assert [c for c in ("CA1", "CA3") if await store.get_call(c) is None] == []
