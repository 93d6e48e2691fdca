"""The ``store`` fixture: every contract test runs against real SQLite and real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from regulator.ports import FixedClock, Store
from tests.support.store import T0


@pytest.fixture
def clock() -> FixedClock:
    """The stores' clock (when an early update was received), pinned at T0."""
    return FixedClock(T0)


async def _drop_prefix(url: str, prefix: str) -> None:
    """Remove a test's keys (matters only when REGULATOR_TEST_REDIS_URL is shared)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}:*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                await client.delete(*batch)
                batch.clear()
        if batch:
            await client.delete(*batch)
    finally:
        await client.aclose()


@pytest_asyncio.fixture(params=["sqlite", "redis"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FixedClock
) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        from regulator.storage.sqlite import SqliteStore

        sqlite_store = SqliteStore(tmp_path / "regulator.sqlite3", clock=clock)
        await sqlite_store.open()
        yield sqlite_store
        await sqlite_store.close()
        return

    from regulator.storage.redis import RedisStore

    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    redis_store = RedisStore(url, prefix=prefix, clock=clock)
    await redis_store.open()
    yield redis_store
    await redis_store.close()
    await _drop_prefix(url, prefix)


@pytest_asyncio.fixture
async def replica(
    store: Store, request: pytest.FixtureRequest, clock: FixedClock
) -> AsyncIterator[Store]:
    """A second store on the same data as ``store``: another replica (Redis) or another
    connection to the same file (SQLite), for races between two writers."""
    from regulator.storage.redis import RedisStore
    from regulator.storage.sqlite import SqliteStore

    other: Store
    if isinstance(store, SqliteStore):
        other = SqliteStore(store.path, clock=clock)
    else:
        assert isinstance(store, RedisStore)
        other = RedisStore(
            request.getfixturevalue("redis_url"),
            prefix=request.getfixturevalue("redis_prefix"),
            clock=clock,
        )
    await other.open()
    yield other
    await other.close()
