"""Two replicas (two apps on one real Redis prefix) and one app on SQLite: the call path
reads pending referrals from its in-memory index (storage/pending.py).

- A referral created through replica A is honoured by replica B, and B asks its store
  only for that caller (the confirmation); the callers without a referral cost B no
  round trip at all.
- Cancelled on A, the referral stops granting direct access on B at once — before B's
  index has heard of it.
- Redis down: B's index goes out of sync and B does what it did before the index — the
  look-up fails, the caller goes to centre 15 (``storage_error``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from regulator.ports import FixedClock
from regulator.storage.pending import PendingIndex
from regulator.storage.redis import RedisStore
from regulator.storage.sqlite import SqliteStore
from regulator.web import keys
from regulator.web.app import create_app
from tests.integration.test_call_path import dialled, twiml
from tests.support.app import (
    FRONT_DESK_NIMES,
    NIMES,
    REGULATION_NIMES,
    AppClient,
    ClientFactory,
    bearer,
    make_settings,
    post_twilio,
)
from tests.support.redis_server import RedisServer

CALLER = "+33611223344"
OTHERS = [f"+3361234{n:04d}" for n in range(20)]


async def until(check: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def index_of(client: AppClient) -> PendingIndex:
    index = client.app[keys.ROUTER].pending_index
    assert index is not None
    return index


def lookups(client: AppClient) -> int:
    store = client.app[keys.STORE]
    assert isinstance(store, RedisStore | SqliteStore)
    return store.pending_lookups


async def create_referral(client: AppClient, number: str = "06 11 22 33 44") -> str:
    resp = await client.post(
        "/api/v1/referrals",
        json={
            "mmg": "nimes",
            "case_id": f"DRFR15030{uuid.uuid4().hex[:6]}",
            "patient": {"display_name": "M. D.", "age_band": "18-64"},
            "callback_number": number,
            "reason": "fièvre",
            "urgency": "P2",
        },
        headers=bearer("regulator"),
    )
    assert resp.status == 201, await resp.text()
    referral_id: str = (await resp.json())["id"]
    return referral_id


async def first_webhook(client: AppClient, caller: str) -> str:
    status, body = await post_twilio(
        client,
        "/hooks/twilio/voice",
        {"CallSid": f"CA{uuid.uuid4().hex[:12]}", "From": caller, "To": NIMES},
    )
    assert status == 200
    return body


def offers_the_menu(body: str) -> bool:
    return twiml(body).find("Gather") is not None


async def two_replicas(
    aiohttp_client: ClientFactory, tmp_path: Path, clock: FixedClock, url: str
) -> tuple[AppClient, AppClient]:
    prefix = f"regtest:{uuid.uuid4().hex[:12]}"
    apps = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        app = create_app(make_settings(tmp_path / name), RedisStore(url, prefix=prefix), clock)
        apps.append(await aiohttp_client(app))
    a, b = apps
    await until(lambda: index_of(a).in_sync and index_of(b).in_sync, "both indexes in sync")
    return a, b


async def test_a_referral_made_on_a_is_honoured_by_b_with_one_confirmation(
    aiohttp_client: ClientFactory, tmp_path: Path, clock: FixedClock, redis_url: str
) -> None:
    a, b = await two_replicas(aiohttp_client, tmp_path, clock, redis_url)
    referral_id = await create_referral(a)
    await until(lambda: index_of(b).lookup("nimes", CALLER) is True, "B's index")
    before = lookups(b)
    for other in OTHERS:  # no referral: the menu, answered from memory
        assert offers_the_menu(await first_webhook(b, other))
    assert lookups(b) == before
    assert dialled(await first_webhook(b, CALLER)) == FRONT_DESK_NIMES
    assert lookups(b) == before + 1  # the one confirmation, for the one referral holder

    # Cancelled on A: B's next call from that number is not let through, whatever
    # B's index says yet (the store confirms every "pending").
    resp = await a.post(f"/api/v1/referrals/{referral_id}/cancel", headers=bearer("regulator"))
    assert resp.status == 200, await resp.text()
    assert offers_the_menu(await first_webhook(b, CALLER))
    await until(lambda: index_of(b).lookup("nimes", CALLER) is False, "B's index, cancelled")


async def test_redis_down_b_falls_back_to_the_look_up_and_centre_15(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    clock: FixedClock,
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory()
    _a, b = await two_replicas(aiohttp_client, tmp_path, clock, server.url)
    assert offers_the_menu(await first_webhook(b, CALLER))
    server.kill()
    await until(lambda: not index_of(b).in_sync, "B's index out of sync")
    before = lookups(b)
    body = await first_webhook(b, CALLER)
    assert dialled(body) == REGULATION_NIMES  # today's fail-safe: centre 15
    assert lookups(b) == before + 1  # it asked the store, as before the index
    client: TestClient[Any, Any] = b
    metrics = await (await client.get("/metrics")).text()
    assert 'regulator_failsafe_total{reason="storage_error"} 1.0' in metrics
    server.start()
    await until(lambda: index_of(b).in_sync, "B's index back in sync", timeout_s=15)
    assert offers_the_menu(await first_webhook(b, CALLER))


async def test_sqlite_the_index_answers_and_follows_in_process_changes(
    aiohttp_client: ClientFactory, tmp_path: Path, clock: FixedClock
) -> None:
    app = create_app(make_settings(tmp_path), SqliteStore(tmp_path / "r.sqlite3"), clock)
    client = await aiohttp_client(app)
    await until(lambda: index_of(client).in_sync, "the index in sync")
    referral_id = await create_referral(client)
    assert index_of(client).lookup("nimes", CALLER) is True  # at commit, no reload
    before = lookups(client)
    for other in OTHERS:
        assert offers_the_menu(await first_webhook(client, other))
    assert lookups(client) == before
    assert dialled(await first_webhook(client, CALLER)) == FRONT_DESK_NIMES
    assert lookups(client) == before + 1
    resp = await client.post(f"/api/v1/referrals/{referral_id}/cancel", headers=bearer("regulator"))
    assert resp.status == 200, await resp.text()
    assert index_of(client).lookup("nimes", CALLER) is False
    assert offers_the_menu(await first_webhook(client, CALLER))
    assert lookups(client) == before + 1
