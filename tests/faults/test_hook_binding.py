"""Signatures bound to the request (issue 18, point 4): the generic PBX signature
covers method, path (with query) and body; the body-only scheme is refused; a Vonage
token is good for one request; our own callback URLs carry an HMAC over their query.

Each test prints what it tried and what was accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

import orjson
import pytest_asyncio

from regulator.ports import FixedClock
from regulator.storage.redis import RedisStore
from regulator.web.app import create_app
from tests.support.app import GENERIC_SECRET, NIMES, AppClient, ClientFactory, make_settings
from tests.support.clock import paris

CALLER = "+33611223344"


def v2(body: bytes, t: int, method: str, path: str, secret: str = GENERIC_SECRET) -> str:
    """The documented string-to-sign, written out independently of the adapter."""
    signed = f"{t}\n{method}\n{path}\n".encode() + body
    return f"t={t},v2={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def v1(body: bytes, t: int, secret: str = GENERIC_SECRET) -> str:
    """The old scheme: the body only."""
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


async def replica(
    aiohttp_client: ClientFactory, directory: Path, redis_url: str, redis_prefix: str
) -> AppClient:
    """One app instance on the shared (real) Redis store."""
    directory.mkdir(exist_ok=True)  # noqa: ASYNC240 - a test's tmp dir
    store = RedisStore(redis_url, prefix=redis_prefix)
    clock = FixedClock(paris("2026-11-24T21:00"))
    return await aiohttp_client(create_app(make_settings(directory), store, clock))


@pytest_asyncio.fixture
async def client(
    aiohttp_client: ClientFactory, tmp_path: Path, redis_url: str, redis_prefix: str
) -> AppClient:
    return await replica(aiohttp_client, tmp_path / "a", redis_url, redis_prefix)


async def _post(client: AppClient, path: str, body: bytes, header: str) -> int:
    resp = await client.post(
        path,
        data=body,
        headers={"X-Regulator-Signature": header, "Content-Type": "application/json"},
    )
    return resp.status


async def test_generic_signature_covers_method_path_and_body(client: AppClient) -> None:
    t = int(time.time())
    call = orjson.dumps({"call_id": "CAbind1", "from": CALLER, "to": NIMES})
    event = orjson.dumps({"call_id": "CAbind1", "status": "busy", "target": "pharmacy"})
    signed_for_call = v2(event, t, "POST", "/hooks/generic/call")
    tried = {
        "right method, path and body": await _post(
            client, "/hooks/generic/call", call, v2(call, t, "POST", "/hooks/generic/call")
        ),
        "signed for /call, sent to /event": await _post(
            client, "/hooks/generic/event", event, signed_for_call
        ),
        "signed for another query": await _post(
            client,
            "/hooks/generic/call?target=pharmacy",
            call,
            v2(call, t, "POST", "/hooks/generic/call"),
        ),
        "signed as GET, sent as POST": await _post(
            client, "/hooks/generic/call", call, v2(call, t, "GET", "/hooks/generic/call")
        ),
        "old scheme (body only)": await _post(client, "/hooks/generic/call", call, v1(call, t)),
        "old scheme, any path": await _post(client, "/hooks/generic/event", event, v1(event, t)),
    }
    print(f"generic signatures tried: {tried}")
    accepted = [name for name, status in tried.items() if status == 200]
    assert accepted == ["right method, path and body"], tried
    assert all(status == 403 for name, status in tried.items() if name not in accepted)
