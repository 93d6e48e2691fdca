"""Fixtures: the outbox on both stores (real SQLite file, real test-owned Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from regulator.interconnect.outbox import OutboxStore
from regulator.storage.outbox_redis import OutboxRedisStore
from regulator.storage.outbox_sqlite import OutboxSqliteStore
from tests.interconnect.helpers import T0, ManualClock


class StoreFactory:
    """Opens fresh store instances on the same database (same file / same Redis prefix),
    as a restarted process would; closes them all at the end."""

    def __init__(self, kind: str, make: Callable[[], Any]) -> None:
        self.kind = kind
        self._make = make
        self._open: list[OutboxStore] = []

    async def open(self) -> OutboxStore:
        store: OutboxStore = self._make()
        await store.open()
        self._open.append(store)
        return store

    async def close(self, store: OutboxStore) -> None:
        await store.close()
        if isinstance(store, OutboxRedisStore):
            await store.client.aclose()
        self._open.remove(store)

    async def close_all(self) -> None:
        for store in list(self._open):
            await self.close(store)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest_asyncio.fixture(params=["sqlite", "redis"])
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    if request.param == "sqlite":
        path = tmp_path / "regulator.sqlite3"
        factory = StoreFactory("sqlite", lambda: OutboxSqliteStore(path))
        yield factory
        await factory.close_all()
        return
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    factory = StoreFactory("redis", lambda: OutboxRedisStore(Redis.from_url(url), prefix))
    yield factory
    await factory.close_all()
    client = Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def outbox_store(store_factory: StoreFactory) -> OutboxStore:
    return await store_factory.open()
