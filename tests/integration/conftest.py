"""The whole application through aiohttp's test client, on a real SQLite store.

The helpers (settings, tokens, signed requests) are in :mod:`tests.support.app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from regulator.ports import FixedClock, Store
from regulator.settings import Settings
from regulator.storage.sqlite import SqliteStore
from regulator.web.app import create_app
from tests.support.app import AppClient, ClientFactory, make_settings, paris


@pytest.fixture
def clock() -> FixedClock:
    # Tuesday 24 November 2026, 21:00 in Nîmes: open (weekday slot 20:00-24:00).
    return FixedClock(paris("2026-11-24T21:00"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    sqlite = SqliteStore(tmp_path / "regulator.sqlite3")
    yield sqlite


@pytest_asyncio.fixture
async def client(
    aiohttp_client: ClientFactory, settings: Settings, store: Store, clock: FixedClock
) -> AppClient:
    app = create_app(settings, store, clock)
    return await aiohttp_client(app)
