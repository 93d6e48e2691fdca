"""Centre 15 events are as durable as call records (issue 14).

For every webhook answered to the platform, the call record reaches the store and the
call's ``call.routed`` event reaches centre 15 (a real signed-webhook receiver) or at
least the durable outbox store — through a long store outage and through a ``kill -9``
right after the last answer. Each test prints ``calls answered = call records stored =
events delivered``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest_asyncio
import redis.asyncio as aioredis

from regulator.storage.outbox_redis import OutboxKeys
from regulator.storage.redis import RedisStore
from regulator.storage.sqlite import SqliteStore
from tests.faults.conftest import (
    FaultCounts,
    Service,
    ServiceFactory,
    WebhookReceiver,
    check_answers,
    durability_line,
    twilio_calls,
    wait_for,
)
from tests.support.redis_server import RedisServer

OUTAGE_S = 15.0


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    state = WebhookReceiver()
    await state.start()
    yield state
    await state.stop()


def outbox_call_ids_sqlite(db: Path) -> set[str]:
    """Call ids of the events waiting in the SQLite outbox (read-only look)."""
    if not db.exists():
        return set()
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = connection.execute("SELECT body FROM outbox_events").fetchall()
    except sqlite3.OperationalError:  # no outbox table yet
        return set()
    finally:
        connection.close()
    return {str(orjson.loads(row[0])["payload"]["call_id"]) for row in rows}


async def outbox_call_ids_redis(url: str, prefix: str) -> set[str]:
    client = aioredis.Redis.from_url(url)
    try:
        bodies = await client.hvals(OutboxKeys(prefix).events)
    finally:
        await client.aclose()
    return {str(orjson.loads(body)["payload"]["call_id"]) for body in bodies}


async def records_sqlite(db: Path, call_ids: list[str]) -> set[str]:
    store = SqliteStore(db)
    await store.open()
    try:
        return {c for c in call_ids if await store.get_call(c) is not None}
    finally:
        await store.close()


async def records_redis(url: str, prefix: str, call_ids: list[str]) -> set[str]:
    store = RedisStore(url, prefix)
    await store.open()
    try:
        return {c for c in call_ids if await store.get_call(c) is not None}
    finally:
        await store.close()


async def test_outbox_store_down_15_s_under_load_loses_no_event(
    redis_server_factory: Callable[..., RedisServer],
    service_factory: ServiceFactory,
    receiver: WebhookReceiver,
    fault_counts: FaultCounts,
) -> None:
    # Redis holds the call records AND the outbox: its outage is the outbox store's.
    server = redis_server_factory(persistent=True)
    prefix = f"regfault:{uuid.uuid4().hex[:10]}"
    service: Service = service_factory(
        {"REGULATOR_REDIS_URL": server.url, "REGULATOR_REDIS_PREFIX": prefix}, is_open=False
    )
    receiver.targets_file(service)
    service.start()
    call_ids = [f"CAevdown{n:05d}" for n in range(700)]
    # About 35 calls a second for about 20 s; Redis is down for 15 s in the middle.
    load = asyncio.create_task(twilio_calls(service.base_url, call_ids, concurrency=4, pace_s=0.1))
    await asyncio.sleep(2.0)
    server.kill()
    fault_counts.faults_injected += 1
    down_at = time.monotonic()
    await asyncio.sleep(OUTAGE_S / 2)
    backlog = await asyncio.to_thread(service.metric, "regulator_outbox_local_pending")
    await asyncio.sleep(OUTAGE_S / 2)
    server.start()
    answers = await load
    fault_counts.notes.append(f"Redis down {time.monotonic() - down_at:.1f} s")
    check_answers(answers)
    answered = [a.call_id for a in answers if a.acknowledged]

    async def delivered() -> set[str]:
        return receiver.call_ids() | await outbox_call_ids_redis(server.url, prefix)

    for _ in range(120):  # up to a minute for the spool to be replayed
        if set(answered) <= await delivered():
            break
        await asyncio.sleep(0.5)
    # And centre 15 itself receives them (the outbox delivers what the store holds).
    with contextlib.suppress(AssertionError):
        await wait_for(lambda: set(answered) <= receiver.call_ids(), timeout_s=30)
    # Counted once the outbox has had its time: an event being delivered (leased) is
    # in neither place for a moment, and under load the spool's replay is slower.
    events = await delivered() & set(answered)
    fault_counts.notes.append(
        f"{len(set(answered) - receiver.call_ids())} events still in the outbox store"
    )
    stored = await records_redis(server.url, prefix, answered)
    line = durability_line(len(answered), len(stored), len(events))
    print(f"\n[faults] {line}")
    fault_counts.notes.append(line)
    fault_counts.requests_sent = len(answers)
    fault_counts.records_checked = len(answered)
    fault_counts.records_lost = len(answered) - len(stored) + len(answered) - len(events)
    fault_counts.notes.append(
        f"{receiver.deliveries} webhook deliveries for {len(receiver.received)} distinct events"
    )
    assert receiver.bad_signatures == 0
    assert len(answered) == len(call_ids)
    assert len(stored) == len(answered) == len(events), line
    # The backlog was visible on /metrics while the store was down, and is gone.
    fault_counts.notes.append(f"regulator_outbox_local_pending={backlog:.0f} mid-outage")
    assert backlog > 0
    assert service.metric("regulator_outbox_local_pending") == 0
    service.stop()


async def test_kill_9_right_after_the_last_answer_loses_no_event(
    service_factory: ServiceFactory,
    receiver: WebhookReceiver,
    fault_counts: FaultCounts,
) -> None:
    service: Service = service_factory(is_open=False)
    receiver.targets_file(service)
    service.start()
    call_ids = [f"CAevkill{n:05d}" for n in range(800)]
    answers = await twilio_calls(service.base_url, call_ids, concurrency=16)
    service.kill()  # right after the last answered webhook: no flush, no goodbye
    fault_counts.faults_injected += 1
    check_answers(answers)
    answered = [a.call_id for a in answers if a.acknowledged]
    db = service.data_dir / "regulator.sqlite3"
    before = receiver.call_ids() | await asyncio.to_thread(outbox_call_ids_sqlite, db)
    fault_counts.notes.append(
        f"{len(set(answered) - before)} events only on local disk at the kill"
    )

    service.start()  # same data dir: journals and spools are replayed

    def delivered() -> set[str]:
        return receiver.call_ids() | outbox_call_ids_sqlite(db)

    with contextlib.suppress(AssertionError):  # counted and reported below
        await wait_for(lambda: set(answered) <= delivered(), timeout_s=30, what="events")
    # The journal's records are replayed from the spool a batch at a time: wait for
    # the store to hold them all (or the deadline) before counting.
    deadline = time.monotonic() + 30
    stored = await records_sqlite(db, answered)
    while len(stored) < len(answered) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        stored = await records_sqlite(db, answered)
    service.stop()
    events = await asyncio.to_thread(delivered) & set(answered)
    stored = await records_sqlite(db, answered)
    line = durability_line(len(answered), len(stored), len(events))
    print(f"\n[faults] {line}")
    fault_counts.notes.append(line)
    fault_counts.requests_sent = len(answers)
    fault_counts.records_checked = len(answered)
    fault_counts.records_lost = len(answered) - len(stored) + len(answered) - len(events)
    assert receiver.bad_signatures == 0
    assert len(answered) == len(call_ids)
    assert len(stored) == len(answered) == len(events), line


async def test_a_replica_started_while_the_outbox_store_is_down_keeps_its_events(
    redis_server_factory: Callable[..., RedisServer],
    service_factory: ServiceFactory,
    receiver: WebhookReceiver,
    fault_counts: FaultCounts,
) -> None:
    server = redis_server_factory(persistent=True)
    server.kill()  # down before the replica starts (a restart during an outage)
    fault_counts.faults_injected += 1
    prefix = f"regfault:{uuid.uuid4().hex[:10]}"
    service: Service = service_factory(
        {"REGULATOR_REDIS_URL": server.url, "REGULATOR_REDIS_PREFIX": prefix}, is_open=False
    )
    receiver.targets_file(service)
    service.start(ready=False)  # serves (fail-safe, spooled) without its store
    call_ids = [f"CAevboot{n:05d}" for n in range(120)]
    answers = await twilio_calls(service.base_url, call_ids, concurrency=4)
    check_answers(answers)
    answered = [a.call_id for a in answers if a.acknowledged]
    # A call reaches the outbox once its record is settled (here: spooled, a few ms
    # after the answer): wait for the last ones rather than read the gauge at once.
    with contextlib.suppress(AssertionError):  # the value is asserted below
        await wait_for(
            lambda: service.metric("regulator_outbox_local_pending") >= len(call_ids),
            timeout_s=10,
            what="outbox backlog",
        )
    backlog = await asyncio.to_thread(service.metric, "regulator_outbox_local_pending")
    server.start()
    with contextlib.suppress(AssertionError):  # counted and reported below
        await wait_for(lambda: set(answered) <= receiver.call_ids(), timeout_s=40)
    events = receiver.call_ids() & set(answered)
    # The call writer replays its spool on its own backoff (a few seconds once the store
    # has been failing): wait for the records as for the events before counting.
    deadline = time.monotonic() + 40
    stored = await records_redis(server.url, prefix, answered)
    while len(stored) < len(answered) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        stored = await records_redis(server.url, prefix, answered)
    line = durability_line(len(answered), len(stored), len(events))
    print(f"\n[faults] {line}")
    fault_counts.notes.append(line)
    fault_counts.notes.append(f"regulator_outbox_local_pending={backlog:.0f} before Redis")
    fault_counts.requests_sent = len(answers)
    fault_counts.records_checked = len(answered)
    fault_counts.records_lost = len(answered) - len(stored) + len(answered) - len(events)
    assert len(answered) == len(call_ids)
    assert len(stored) == len(answered) == len(events), line
    assert backlog == len(call_ids)
    service.stop()
