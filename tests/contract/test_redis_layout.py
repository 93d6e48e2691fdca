"""Redis-only facts the contract can't see: key layout under the prefix, log retention."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest_asyncio

from regulator.core.models import CallUpdate, ReferralStatus
from regulator.storage.redis import RedisStore
from tests.support.store import MMG, MONTH, T0, advance, call, referral, visit


@pytest_asyncio.fixture
async def redis_store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url, prefix=redis_prefix)
    await store.open()
    yield store
    client = store._db()
    keys = [key async for key in client.scan_iter(match=f"{redis_prefix}:*")]
    if keys:
        await client.delete(*keys)
    await store.close()


async def test_every_key_lives_under_the_prefix(redis_store: RedisStore) -> None:
    client = redis_store._db()
    before = {key async for key in client.scan_iter(count=1000)}
    await redis_store.record_calls([call("CA1")])
    ref, _ = await redis_store.create_referral(referral("R1"), "idem")
    await redis_store.save_referral(
        advance(ref, ReferralStatus.ARRIVED, visit_id="V1"), 1, visit("V1", referral_id="R1")
    )
    await redis_store.add_visit(visit("V2"), "idem2")
    created = {key async for key in client.scan_iter(count=1000)} - before
    assert created
    assert all(key.decode().startswith(redis_store.keys.prefix + ":") for key in created)


async def test_purge_trims_the_call_log_and_the_retention_index(redis_store: RedisStore) -> None:
    client = redis_store._db()
    keys = redis_store.keys
    await redis_store.record_calls(
        [call(f"OLD{i}", at=T0 - timedelta(days=400)) for i in range(3)] + [call("NEW")]
    )
    assert await client.xlen(keys.call_log(MMG, MONTH)) == 4
    assert await redis_store.purge_calls(T0 - timedelta(days=1)) == 3
    assert await client.xlen(keys.call_log(MMG, MONTH)) == 1
    assert await client.zcard(keys.calls_by_at()) == 1
    entries = await client.xrange(keys.call_log(MMG, MONTH))
    assert entries is not None
    fields = entries[0][1]
    assert fields is not None
    assert fields[b"call_id"] == b"NEW"


async def test_pending_index_is_emptied_when_the_referral_closes(redis_store: RedisStore) -> None:
    client = redis_store._db()
    ref, _ = await redis_store.create_referral(referral("R1"), None)
    pending_key = redis_store.keys.pending(MMG, ref.callback_number or "")
    assert await client.smembers(pending_key) == {b"R1"}
    assert await redis_store.save_referral(advance(ref, ReferralStatus.CANCELLED), 1)
    assert await client.exists(pending_key) == 0


async def test_early_updates_wait_in_an_expiring_list_until_their_record(
    redis_store: RedisStore,
) -> None:
    client = redis_store._db()
    keys = redis_store.keys
    early = CallUpdate(call_id="CA1", mmg=MMG, month=MONTH, status="completed")
    await redis_store.update_calls([early, replace(early, duration_s=30)])
    assert await client.llen(keys.orphan_updates("CA1")) == 2
    assert 0 < await client.ttl(keys.orphan_updates("CA1")) <= 2 * 24 * 3600
    assert await client.zcard(keys.orphans_by_at()) == 1
    await redis_store.record_calls([call("CA1")])
    assert await client.exists(keys.orphan_updates("CA1")) == 0
    assert await client.zcard(keys.orphans_by_at()) == 0
