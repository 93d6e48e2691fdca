"""The app feeds the outbox: routed calls and referral events reach a regulation webhook."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from regulator.interconnect.webhooks import verify_signature
from regulator.ports import FixedClock
from regulator.storage.sqlite import SqliteStore
from regulator.web.app import create_app
from tests.support.app import (
    NIMES,
    AppClient,
    ClientFactory,
    bearer,
    make_settings,
    post_twilio,
)

SECRET = "samu30-webhook-secret"


class Receiver:
    """A regulation software endpoint that checks signatures and keeps what it got."""

    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock  # the service signs with its (pinned) clock
        self.events: list[dict[str, Any]] = []
        self.bad_signatures = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify_signature(
            SECRET, request.headers["X-Regulator-Signature"], body, self.clock.now().timestamp()
        ):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.events.append(orjson.loads(body))
        return web.Response(status=204)


async def wait_for(predicate: Any, limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.fixture
async def receiver(clock: FixedClock) -> Any:
    rec = Receiver(clock)
    app = web.Application()
    app.router.add_post("/regulator", rec.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield rec, str(server.make_url("/regulator"))
    await server.close()


async def _app_with_webhook_target(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    clock: FixedClock,
    url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AppClient:
    """The app on SQLite with one signed-webhook target (the receiver) for Nîmes."""
    monkeypatch.setenv("SAMU30_WEBHOOK_SECRET", SECRET)
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        f'- {{name: samu30-lrm, kind: webhook, url: "{url}", '
        "secret_env: SAMU30_WEBHOOK_SECRET, mmgs: [nimes]}\n",
        encoding="utf-8",
    )
    settings = make_settings(tmp_path, targets_file=targets)
    client: AppClient = await aiohttp_client(
        create_app(settings, SqliteStore(settings.data_dir / "regulator.sqlite3"), clock)
    )
    return client


async def test_routed_calls_and_referral_events_reach_the_regulation_webhook(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    clock: FixedClock,
    receiver: tuple[Receiver, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec, url = receiver
    client = await _app_with_webhook_target(aiohttp_client, tmp_path, clock, url, monkeypatch)
    params = {"CallSid": "CAic1", "From": "+33611000001", "To": NIMES}
    await post_twilio(client, "/hooks/twilio/voice", params)  # menu: not sent
    await post_twilio(client, "/hooks/twilio/gather", params | {"Digits": "1"})
    resp = await client.post(
        "/api/v1/referrals",
        json={"mmg": "nimes", "case_id": "DRFR1", "patient": {"display_name": "M. D."}},
        headers=bearer("regulator"),
    )
    assert resp.status == 201
    await wait_for(lambda: len(rec.events) >= 2)
    kinds = sorted(e["kind"] for e in rec.events)
    assert kinds == ["call.routed", "referral.created"]
    call = next(e for e in rec.events if e["kind"] == "call.routed")
    assert call["payload"]["route"] == "regulation"
    assert "+33611000001" not in orjson.dumps(call).decode()  # masked unless full_numbers
    assert rec.bad_signatures == 0

    # Dead letters are an admin view.
    resp = await client.get("/api/v1/outbox/dead", headers=bearer("regulator"))
    assert resp.status == 403
    resp = await client.get("/api/v1/outbox/dead", headers=bearer("admin"))
    assert resp.status == 200
    assert (await resp.json())["count"] == 0


async def test_outbox_views_answer_503_without_targets(client: AppClient) -> None:
    resp = await client.get("/api/v1/outbox/dead", headers=bearer("admin"))
    assert resp.status == 503
    assert "REGULATOR_TARGETS_FILE" in (await resp.json())["message"]


async def test_a_call_that_ends_reaches_the_regulation_webhook_as_completed_after_routed(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    clock: FixedClock,
    receiver: tuple[Receiver, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec, url = receiver
    client = await _app_with_webhook_target(aiohttp_client, tmp_path, clock, url, monkeypatch)
    params = {"CallSid": "CAend1", "From": "+33611000002", "To": NIMES}
    await post_twilio(client, "/hooks/twilio/voice", params)
    await post_twilio(client, "/hooks/twilio/gather", params | {"Digits": "1"})
    status = params | {"CallStatus": "completed", "CallDuration": "95"}
    await post_twilio(client, "/hooks/twilio/status", status)
    await post_twilio(client, "/hooks/twilio/status", status)  # a retried callback
    await wait_for(lambda: len(rec.events) >= 2)
    await asyncio.sleep(0.3)  # a duplicate would have arrived by now
    kinds = [e["kind"] for e in rec.events]
    assert kinds == ["call.routed", "call.completed"], f"events received: {kinds}"
    done = rec.events[-1]["payload"]
    assert (done["route"], done["status"], done["duration_s"]) == ("regulation", "completed", 95)
