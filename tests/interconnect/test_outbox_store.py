"""The outbox store contract, on a real SQLite file and a real Redis server."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from regulator.interconnect.outbox import OutboxStore, backoff_s
from regulator.storage.outbox_redis import OutboxKeys, OutboxRedisStore
from tests.interconnect.conftest import StoreFactory
from tests.interconnect.helpers import T0, events

A, B = "samu30-lrm", "hub"


async def test_enqueue_is_one_delivery_per_target_and_idempotent(
    outbox_store: OutboxStore,
) -> None:
    batch = events(3)
    assert await outbox_store.enqueue(batch, [A, B], T0) == 6
    assert await outbox_store.enqueue(batch, [A, B], T0) == 0
    assert await outbox_store.pending_count() == 6
    assert await outbox_store.pending_count(A) == 3
    due = await outbox_store.due(A, T0, 10)
    assert [d.event for d in due] == batch
    assert all(d.attempts == 0 and d.since == T0 for d in due)


async def test_due_leases_what_it_returns(outbox_store: OutboxStore) -> None:
    await outbox_store.enqueue(events(2), [A], T0)
    assert len(await outbox_store.due(A, T0, 10, lease_s=30)) == 2
    assert await outbox_store.due(A, T0 + timedelta(seconds=29), 10) == []
    assert len(await outbox_store.due(A, T0 + timedelta(seconds=30), 10)) == 2


async def test_due_respects_limit_and_next_attempt(outbox_store: OutboxStore) -> None:
    batch = events(3)
    await outbox_store.enqueue(batch, [A], T0)
    later = T0 + timedelta(seconds=10)
    assert await outbox_store.mark_retry(A, batch[0].event_id, later, 1, "HTTP 500")
    due = await outbox_store.due(A, T0, 1)
    assert [d.event.event_id for d in due] == [batch[1].event_id]
    again = await outbox_store.due(A, later, 10)
    retried = next(d for d in again if d.event.event_id == batch[0].event_id)
    assert retried.attempts == 1
    assert retried.last_error == "HTTP 500"


async def test_delivered_is_removed_and_later_marks_are_no_ops(outbox_store: OutboxStore) -> None:
    batch = events(1)
    event_id = batch[0].event_id
    await outbox_store.enqueue(batch, [A, B], T0)
    assert await outbox_store.mark_delivered(A, event_id)
    assert not await outbox_store.mark_delivered(A, event_id)
    # An Ack raced a retry: the retry must not bring the delivery back.
    assert not await outbox_store.mark_retry(A, event_id, T0, 2, "late")
    assert not await outbox_store.mark_dead(A, event_id, "late", T0)
    assert await outbox_store.pending_count(A) == 0
    # The other target still has it, with its body.
    assert [d.event for d in await outbox_store.due(B, T0, 10)] == batch
    assert await outbox_store.mark_delivered(B, event_id)
    assert await outbox_store.pending_count() == 0


async def test_dead_letters_and_redrive(outbox_store: OutboxStore) -> None:
    batch = events(3)
    await outbox_store.enqueue(batch, [A], T0)
    died = T0 + timedelta(hours=25)
    for i, event in enumerate(batch):
        assert await outbox_store.mark_dead(A, event.event_id, f"HTTP 50{i}", died, attempts=7)
    assert await outbox_store.pending_count() == 0
    assert await outbox_store.due(A, died, 10) == []
    dead = {d.event.event_id: d for d in await outbox_store.dead(A)}
    assert {e.event_id: e for e in batch} == {k: d.event for k, d in dead.items()}
    first = dead[batch[0].event_id]
    assert first.error == "HTTP 500"
    assert first.attempts == 7
    assert first.died_at == died
    assert first.target == A
    assert len(await outbox_store.dead()) == 3
    assert await outbox_store.dead(B) == []

    later = died + timedelta(minutes=5)
    assert await outbox_store.redrive(A, [batch[0].event_id], later) == 1
    assert await outbox_store.redrive(A, [batch[0].event_id], later) == 0
    assert await outbox_store.pending_count() == 1
    (back,) = await outbox_store.due(A, later, 10)
    assert back.event == batch[0]
    assert back.attempts == 0
    assert back.since == later
    assert await outbox_store.redrive(A, None, later) == 2
    assert await outbox_store.dead() == []
    assert await outbox_store.pending_count() == 3


async def test_mark_dead_keeps_attempts_when_not_given(outbox_store: OutboxStore) -> None:
    batch = events(1)
    await outbox_store.enqueue(batch, [A], T0)
    await outbox_store.mark_retry(A, batch[0].event_id, T0, 4, "HTTP 502")
    await outbox_store.mark_dead(A, batch[0].event_id, None, T0)
    (dead,) = await outbox_store.dead(A)
    assert dead.attempts == 4
    assert dead.error == "HTTP 502"


async def test_undelivered_events_survive_a_restart(store_factory: StoreFactory) -> None:
    first = await store_factory.open()
    batch = events(4)
    await first.enqueue(batch, [A, B], T0)
    await first.mark_delivered(A, batch[0].event_id)
    await first.mark_dead(B, batch[1].event_id, "HTTP 410", T0)
    await store_factory.close(first)

    second = await store_factory.open()
    assert await second.pending_count() == 6
    assert [d.event for d in await second.due(A, T0, 10)] == batch[1:]
    assert [d.event.event_id for d in await second.due(B, T0, 10)] == [
        e.event_id for e in batch if e is not batch[1]
    ]
    assert [d.event for d in await second.dead(B)] == [batch[1]]


async def test_redis_outbox_survives_a_killed_server(
    redis_server_factory: Callable[..., Any], redis_prefix: str
) -> None:
    """With AOF on, undelivered events outlive ``kill -9`` of Redis itself."""
    server = redis_server_factory(persistent=True)
    client = Redis.from_url(server.url)
    store = OutboxRedisStore(client, redis_prefix)
    batch = events(3)
    try:
        await store.enqueue(batch, [A], T0)
    finally:
        await client.aclose()
    server.kill()
    server.start()
    client = Redis.from_url(server.url)
    try:
        store = OutboxRedisStore(client, redis_prefix)
        assert [d.event for d in await store.due(A, T0, 10)] == batch
    finally:
        await client.aclose()


def test_redis_keys_share_one_cluster_slot_and_start_with_the_prefix() -> None:
    keys = OutboxKeys("regulator")
    names = [keys.events, keys.refs, keys.targets, *keys.per_target("samu30-lrm")]
    assert all(n.startswith("regulator:{outbox}:") for n in names)
    assert keys.due("x") == "regulator:{outbox}:due:x"


@pytest.mark.parametrize("attempts", [1, 2, 5, 10, 40, 200])
def test_backoff_is_full_jitter_under_a_cap(attempts: int) -> None:
    rng = random.Random(attempts)
    values = [backoff_s(attempts, 1.0, 300.0, rng) for _ in range(200)]
    ceiling = min(300.0, 2.0 ** (attempts - 1))
    assert all(0.0 <= v <= ceiling for v in values)
    assert max(values) > ceiling / 2  # spread over the whole range, not a fixed delay


async def test_enqueue_after_delivery_does_not_send_again(outbox_store: OutboxStore) -> None:
    # A journal replayed after a crash writes events the store may already have sent.
    batch = events(2)
    await outbox_store.enqueue(batch, [A, B], T0)
    assert await outbox_store.mark_delivered(A, batch[0].event_id)
    assert await outbox_store.enqueue(batch, [A, B], T0 + timedelta(seconds=5)) == 0
    later = T0 + timedelta(hours=1)
    due_a = await outbox_store.due(A, later, 10)
    assert [d.event.event_id for d in due_a] == [batch[1].event_id]
    assert len(await outbox_store.due(B, later, 10)) == 2


async def test_a_delivery_is_remembered_for_the_retention_only(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory.open()
    batch = events(1)
    await store.enqueue(batch, [A], T0)
    assert await store.mark_delivered(A, batch[0].event_id)
    # A restarted process with a shorter memory: past it, the same event is new again.
    store.sent_retention_s = 60.0  # type: ignore[attr-defined]
    assert await store.enqueue(batch, [A], T0 + timedelta(seconds=59)) == 0
    assert await store.enqueue(batch, [A], T0 + timedelta(seconds=61)) == 1
