"""The in-memory pending-callers index (storage/pending.py) on real SQLite and real Redis.

Two store instances on the same data (``store`` and ``replica``: two replicas on one
Redis prefix, two connections to one SQLite file): a referral changed through one must
reach the index the other keeps, and the index must never be what says "pending".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from regulator.core.models import ReferralStatus
from regulator.ports import Store
from regulator.storage.keys import pending_member
from regulator.storage.pending import PendingIndex
from regulator.storage.redis import RedisStore
from regulator.storage.sqlite import SqliteStore
from tests.support.redis_server import RedisServer
from tests.support.store import CALLER, MMG, advance, referral

OTHER_CALLER = "+33622334455"


async def until(check: Callable[[], bool], *, timeout_s: float = 3.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def following(store: Store, **options: float) -> AsyncIterator[PendingIndex]:
    """An index kept current by ``store.follow_pending``, in sync on entry."""
    index = PendingIndex()
    assert isinstance(store, RedisStore | SqliteStore)
    task = asyncio.create_task(store.follow_pending(index, **options))
    try:
        await until(lambda: index.in_sync, what="the first load")
        yield index
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest_asyncio.fixture
async def index_b(replica: Store) -> AsyncIterator[PendingIndex]:
    """Replica B's index (SQLite: the other connection reloads every 50 ms)."""
    options = {"resync_s": 0.05} if isinstance(replica, SqliteStore) else {}
    async with following(replica, **options) as index:
        yield index


async def test_a_referral_created_on_a_reaches_the_index_of_b(
    store: Store, index_b: PendingIndex
) -> None:
    assert index_b.lookup(MMG, CALLER) is False
    await store.create_referral(referral("R1"), None)
    await until(lambda: index_b.lookup(MMG, CALLER) is True, what="the creation on B")
    assert index_b.lookup(MMG, OTHER_CALLER) is False
    assert index_b.lookup("ales", CALLER) is False  # per MMG


@pytest.mark.parametrize(
    "status", [ReferralStatus.CANCELLED, ReferralStatus.NO_SHOW, ReferralStatus.ARRIVED]
)
async def test_a_closed_referral_leaves_the_index_of_b(
    store: Store, index_b: PendingIndex, status: ReferralStatus
) -> None:
    ref = referral("R1")
    await store.create_referral(ref, None)
    await until(lambda: index_b.lookup(MMG, CALLER) is True, what="the creation on B")
    assert await store.save_referral(advance(ref, status), ref.version)
    await until(lambda: index_b.lookup(MMG, CALLER) is False, what="the closure on B")


async def test_a_caller_with_two_referrals_stays_pending_until_both_close(
    store: Store, index_b: PendingIndex
) -> None:
    first, second = referral("R1"), referral("R2")
    await store.create_referral(first, None)
    await store.create_referral(second, None)
    acked = advance(first, ReferralStatus.ACKNOWLEDGED)
    assert await store.save_referral(acked, first.version)  # still expected: still pending
    assert await store.save_referral(advance(acked, ReferralStatus.CANCELLED), acked.version)
    await asyncio.sleep(0.15)  # every notification delivered, SQLite reloaded
    assert index_b.lookup(MMG, CALLER) is True
    assert await store.save_referral(advance(second, ReferralStatus.NO_SHOW), second.version)
    await until(lambda: index_b.lookup(MMG, CALLER) is False, what="the last closure on B")


async def test_a_new_callback_number_moves_the_caller(store: Store, index_b: PendingIndex) -> None:
    ref = referral("R1")
    await store.create_referral(ref, None)
    moved = replace(advance(ref, ReferralStatus.ACKNOWLEDGED), callback_number=OTHER_CALLER)
    assert await store.save_referral(moved, ref.version)
    await until(
        lambda: index_b.lookup(MMG, OTHER_CALLER) is True and index_b.lookup(MMG, CALLER) is False,
        what="the move on B",
    )


async def test_the_first_load_holds_what_was_there_before(store: Store, replica: Store) -> None:
    await store.create_referral(referral("R1"), None)
    await store.create_referral(referral("R2", status=ReferralStatus.CANCELLED), None)
    async with following(replica, resync_s=0.05) as index:
        assert index.lookup(MMG, CALLER) is True
        assert len(index) == 1


async def test_own_changes_reach_the_index_at_once(store: Store) -> None:
    """The replica that makes the change: no wait for a notification or a reload
    (SQLite: in process, at commit; Redis: its own subscription)."""
    async with following(store, resync_s=3600) as index:
        ref = referral("R1")
        await store.create_referral(ref, None)
        await until(lambda: index.lookup(MMG, CALLER) is True, timeout_s=1, what="own change")
        assert await store.save_referral(advance(ref, ReferralStatus.CANCELLED), ref.version)
        await until(lambda: index.lookup(MMG, CALLER) is False, timeout_s=1, what="own change")


async def test_pending_answer_is_always_the_store_s(store: Store, replica: Store) -> None:
    """An index that still lists a cancelled referral's caller (its notification not
    applied yet) only sends the look-up to the store, which says "not pending"."""
    index = PendingIndex()
    index.load([pending_member(MMG, CALLER)])  # stale: the store holds no referral
    assert index.lookup(MMG, CALLER) is True
    before = replica.pending_lookups  # type: ignore[attr-defined]
    assert await index.answer(MMG, CALLER, replica.has_pending_referral) is False
    assert replica.pending_lookups == before + 1  # type: ignore[attr-defined]
    # Absent from an index in sync: answered without the store.
    assert await index.answer(MMG, OTHER_CALLER, replica.has_pending_referral) is False
    assert replica.pending_lookups == before + 1  # type: ignore[attr-defined]
    index.lose("test")
    await store.create_referral(referral("R1", callback_number=OTHER_CALLER), None)
    assert await index.answer(MMG, OTHER_CALLER, replica.has_pending_referral) is True


# ------------------------------------------------------------------- Redis only


@pytest_asyncio.fixture
async def redis_store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url, prefix=redis_prefix)
    await store.open()
    yield store
    await store.close()


async def test_redis_pending_sets_written_before_the_index_are_found(
    redis_store: RedisStore, redis_url: str, redis_prefix: str
) -> None:
    await redis_store.create_referral(referral("R1"), None)
    client = Redis.from_url(redis_url)
    k = redis_store.keys
    try:
        # As a version without the index left it: the pending set alone.
        await client.delete(k.pending_index(), k.pending_index_built(), k.pending_seq())
        async with following(redis_store) as index:
            assert index.lookup(MMG, CALLER) is True
        assert await client.exists(k.pending_index_built()) == 1
        assert await client.smembers(k.pending_index()) == {pending_member(MMG, CALLER).encode()}
    finally:
        await client.aclose()


async def test_redis_a_lost_notification_puts_the_index_out_of_sync_until_reloaded(
    redis_store: RedisStore, redis_url: str
) -> None:
    async with following(redis_store, resync_s=3600) as index:
        client = Redis.from_url(redis_url)
        try:
            # A change whose notification never arrived: the sequence moved on without it.
            await client.incr(redis_store.keys.pending_seq())
        finally:
            await client.aclose()
        loads = index.loads
        await redis_store.create_referral(referral("R1"), None)  # seq + 2: a gap
        await until(lambda: index.loads > loads, what="the reload after the gap")
        assert index.in_sync
        assert index.lookup(MMG, CALLER) is True


async def test_redis_a_killed_subscription_reloads(redis_store: RedisStore, redis_url: str) -> None:
    async with following(redis_store, resync_s=3600) as index:
        loads = index.loads
        client = Redis.from_url(redis_url)
        try:
            await client.client_kill_filter(_type="pubsub", skipme=True)
            await redis_store.create_referral(referral("R1"), None)  # maybe lost
        finally:
            await client.aclose()
        await until(lambda: index.loads > loads, what="the reload after the reconnect")
        await until(lambda: index.lookup(MMG, CALLER) is True, what="the referral")


async def test_redis_down_the_index_is_out_of_sync_and_the_store_path_fails(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory()
    store = RedisStore(server.url, prefix="regtest:down")
    await store.open()
    try:
        index = PendingIndex(stale_after_s=0.5)
        task = asyncio.create_task(store.follow_pending(index, ping_s=0.1))
        try:
            await until(lambda: index.in_sync, what="the first load")
            server.kill()
            await until(lambda: not index.in_sync, what="out of sync")
            assert index.lookup(MMG, CALLER) is None
            with pytest.raises(Exception):  # noqa: B017,PT011 - StoreError or timeout
                await index.answer(MMG, CALLER, store.has_pending_referral)
            server.start()
            await until(lambda: index.in_sync, timeout_s=10, what="back in sync")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await store.close()
