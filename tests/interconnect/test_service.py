"""The wiring object the web app uses: settings → targets → worker, metrics, shared SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest_asyncio
from aiohttp import web
from prometheus_client import CollectorRegistry

from regulator.core.models import CallRecord
from regulator.interconnect.events import call_event
from regulator.interconnect.service import Interconnect, outbox_store_for
from regulator.metrics import Metrics
from regulator.ports import SystemClock
from regulator.settings import Settings
from regulator.storage.outbox_sqlite import OutboxSqliteStore
from regulator.storage.sqlite import SqliteStore
from tests.interconnect.helpers import SECRET, T0, call_record, events, eventually


@pytest_asyncio.fixture
async def endpoint() -> AsyncIterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/hook", received
    await runner.cleanup()


async def test_from_settings_delivers_and_counts_in_metrics(
    tmp_path: Path, endpoint: tuple[str, list[bytes]]
) -> None:
    url, received = endpoint
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        f"- {{name: samu30-lrm, kind: webhook, url: '{url}', secret_env: HOOK_SECRET,"
        " mmgs: [nimes]}\n",
        encoding="utf-8",
    )
    settings = Settings(data_dir=tmp_path / "var", targets_file=targets)
    store = outbox_store_for(settings)
    assert isinstance(store, OutboxSqliteStore)
    assert store.path == tmp_path / "var" / "regulator.sqlite3"
    await store.open()
    metrics = Metrics(CollectorRegistry())
    async with aiohttp.ClientSession() as session:
        link = Interconnect.from_settings(
            settings,
            store,
            SystemClock(),
            session,
            environ={"HOOK_SECRET": SECRET},
            metrics=metrics,
            poll_interval_s=0.05,
        )
        await link.start()
        try:
            assert await link.enqueue(events(3)) == 3

            async def delivered() -> bool:
                return len(received) == 3 and await store.pending_count() == 0

            await eventually(delivered)
        finally:
            await link.stop()
    await store.close()
    registry = metrics.registry
    value = registry.get_sample_value(
        "regulator_outbox_deliveries_total", {"target": "samu30-lrm", "result": "delivered"}
    )
    assert value == 3
    assert registry.get_sample_value("regulator_outbox_pending") == 0


async def test_without_targets_file_nothing_is_stored(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    store = outbox_store_for(settings)
    await store.open()
    async with aiohttp.ClientSession() as session:
        link = Interconnect.from_settings(settings, store, SystemClock(), session)
        await link.start()
        assert await link.enqueue(events(2)) == 0
        await link.stop()
    assert await store.pending_count() == 0
    await store.close()


async def test_outbox_shares_the_main_sqlite_file(tmp_path: Path) -> None:
    """The outbox's own tables live in the main store's file; both write at once."""
    path = tmp_path / "regulator.sqlite3"
    main = SqliteStore(path)
    outbox = OutboxSqliteStore(path)
    await main.open()
    await outbox.open()
    try:
        records: list[CallRecord] = [call_record(i) for i in range(20)]

        async def write_calls() -> None:
            for record in records:
                await main.record_calls([record])

        async def write_events() -> None:
            for record in records:
                await outbox.enqueue([call_event(record)], ["samu30-lrm"], T0)

        await asyncio.gather(write_calls(), write_events())
        assert await outbox.pending_count() == 20
        assert await main.get_call(records[-1].call_id) is not None
    finally:
        await outbox.close()
        await main.close()
