"""Stores that can't reach their storage say so with StoreError, quickly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from regulator.core.models import CallUpdate, ReferralStatus
from regulator.ports import Store, StoreError
from regulator.settings import Settings
from regulator.storage import SQLITE_FILENAME, open_store
from regulator.storage.redis import RedisStore, parse_sentinel_url
from regulator.storage.sqlite import SqliteStore
from tests.support.store import CALLER, MMG, MONTH, T0, call, referral, visit

Operation = Callable[[Store], Awaitable[object]]

OPERATIONS: dict[str, Operation] = {
    "ping": lambda s: s.ping(),
    "record_calls": lambda s: s.record_calls([call("CA1")]),
    "update_calls": lambda s: s.update_calls([CallUpdate(call_id="CA1", mmg=MMG, month=MONTH)]),
    "get_call": lambda s: s.get_call("CA1"),
    "call_counters": lambda s: s.call_counters(MMG, MONTH),
    "purge_calls": lambda s: s.purge_calls(T0 - timedelta(days=400)),
    "create_referral": lambda s: s.create_referral(referral("R1"), "k"),
    "get_referral": lambda s: s.get_referral("R1"),
    "list_referrals": lambda s: s.list_referrals(
        mmg=MMG, statuses=frozenset({ReferralStatus.PENDING})
    ),
    "save_referral": lambda s: s.save_referral(referral("R1"), 1, visit("V1")),
    "has_pending_referral": lambda s: s.has_pending_referral(MMG, CALLER),
    "add_visit": lambda s: s.add_visit(visit("V1"), "k"),
    "visits": lambda s: s.visits(MMG, MONTH),
}


@pytest.mark.parametrize("url_kind", ["unix", "tcp"])
async def test_redis_store_on_a_dead_server_raises_store_error_fast(
    tmp_path: Path, url_kind: str
) -> None:
    url = f"unix://{tmp_path}/nobody.sock" if url_kind == "unix" else "redis://127.0.0.1:1/0"
    store = RedisStore(url, prefix="dead")
    started = time.monotonic()
    with pytest.raises(StoreError):
        await store.open()
    for operation in OPERATIONS.values():
        with pytest.raises(StoreError):
            await operation(store)
    assert time.monotonic() - started < 5
    await store.close()


async def test_redis_store_used_before_open_raises_store_error() -> None:
    store = RedisStore("redis://127.0.0.1:1/0")
    with pytest.raises(StoreError):
        await store.ping()


async def test_sqlite_store_in_an_unwritable_location_raises_store_error(tmp_path: Path) -> None:
    # A regular file where the data directory should be: unwritable even for root.
    blocker = tmp_path / "var"
    blocker.write_text("not a directory")
    store = SqliteStore(blocker / SQLITE_FILENAME)
    with pytest.raises(StoreError):
        await store.open()
    for operation in OPERATIONS.values():
        with pytest.raises(StoreError):
            await operation(store)


async def test_sqlite_store_on_a_corrupt_file_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / SQLITE_FILENAME
    path.write_bytes(b"this is not an SQLite database, just some bytes" * 100)
    store = SqliteStore(path)
    with pytest.raises(StoreError):
        await store.open()


async def test_sqlite_store_reopens_its_data(tmp_path: Path) -> None:
    path = tmp_path / "sub" / SQLITE_FILENAME
    first = SqliteStore(path)
    await first.open()
    await first.record_calls([call("CA1")])
    await first.close()
    second = SqliteStore(path)
    await second.open()
    assert await second.get_call("CA1") == call("CA1")
    assert (await second.call_counters(MMG, MONTH))["calls"] == 1
    await second.close()


def test_open_store_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    store = open_store(Settings(data_dir=tmp_path))
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / SQLITE_FILENAME


def test_open_store_uses_redis_when_a_url_is_set(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, redis_url=SecretStr("redis://localhost:6379/0"), redis_prefix="mmg"
    )
    store = open_store(settings)
    assert isinstance(store, RedisStore)
    assert store.keys.prefix == "mmg"


def test_sentinel_url_lists_sentinels_service_and_credentials() -> None:
    conf = parse_sentinel_url(
        "sentinel://:s3cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/2?sentinel_password=x"
    )
    assert conf.sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380)]
    assert conf.service == "mymaster"
    assert conf.db == 2
    assert conf.password == "s3cret"
    assert conf.sentinel_password == "x"
    assert conf.ssl is False


@pytest.mark.parametrize(
    "url", ["sentinel://", "sentinel://host:26379", "redis://host/0", "sentinel:///mymaster"]
)
def test_bad_sentinel_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="entinel"):
        parse_sentinel_url(url)


async def test_redis_store_on_a_server_that_never_answers_times_out() -> None:
    """A black hole (accepts, never replies) must not hang the hot path."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2, connect_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(StoreError):
        await store.open()
    with pytest.raises(StoreError):
        await store.has_pending_referral(MMG, CALLER)
    assert time.monotonic() - started < 2.0
    await store.close()
    server.close()
    await server.wait_closed()
