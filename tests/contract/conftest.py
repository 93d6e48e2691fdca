"""The ``store`` fixture: every contract test runs against real SQLite and real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from regulator.ports import Store


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
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        from regulator.storage.sqlite import SqliteStore

        sqlite_store = SqliteStore(tmp_path / "regulator.sqlite3")
        await sqlite_store.open()
        yield sqlite_store
        await sqlite_store.close()
        return

    from regulator.storage.redis import RedisStore

    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    redis_store = RedisStore(url, prefix=prefix)
    await redis_store.open()
    yield redis_store
    await redis_store.close()
    await _drop_prefix(url, prefix)
