"""The centre 15 endpoint hangs: calls are still answered at once, and every call
event reaches it once it answers again (the durable outbox retries)."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from regulator.interconnect.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify_signature
from tests.faults.conftest import (
    FaultCounts,
    ServiceFactory,
    check_answers,
    free_port,
    twilio_calls,
    wait_for,
)

SECRET = "outbox-fault-secret-0123456789"


class Receiver:
    """A regulation-software endpoint that hangs while ``hanging`` is set."""

    def __init__(self) -> None:
        self.hanging = True
        self.hung = 0
        self.call_ids: dict[str, set[str]] = {}  # event id -> call ids
        self.bad_signatures = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hanging:
            self.hung += 1
            await asyncio.sleep(3600)  # until the sender gives up and closes
        if not verify_signature(
            SECRET, request.headers.get(SIGNATURE_HEADER, ""), body, time.time()
        ):
            self.bad_signatures += 1
            return web.Response(status=401)
        data = await request.json()
        self.call_ids.setdefault(request.headers[EVENT_ID_HEADER], set()).add(
            data["payload"]["call_id"]
        )
        return web.Response(status=200)


async def test_hanging_centre_15_endpoint_delays_nothing_and_loses_nothing(
    service_factory: ServiceFactory, fault_counts: FaultCounts
) -> None:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/regulator", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        service = service_factory({"FAULT_WEBHOOK_SECRET": SECRET}, is_open=False)
        targets = service.workdir / "targets.yaml"
        targets.write_text(
            f'- {{name: samu30, kind: webhook, url: "http://127.0.0.1:{port}/regulator", '
            "secret_env: FAULT_WEBHOOK_SECRET, mmgs: [nimes], timeout_s: 0.5, concurrency: 64}\n",
            encoding="utf-8",
        )
        service.env["REGULATOR_TARGETS_FILE"] = str(targets)
        service.start()
        call_ids = [f"CAoutbox{n:04d}" for n in range(150)]
        answers = await twilio_calls(service.base_url, call_ids, concurrency=6, pace_s=0.01)
        fault_counts.faults_injected = 1
        check_answers(answers, deadline_s=0.5)  # the hanging endpoint delays no answer
        await wait_for(lambda: receiver.hung >= 10, timeout_s=10, what="deliveries hanging")
        await asyncio.sleep(1.0)
        receiver.hanging = False  # the endpoint recovers

        def delivered() -> set[str]:
            return {c for ids in receiver.call_ids.values() for c in ids}

        await wait_for(
            lambda: delivered() >= set(call_ids), timeout_s=45, what="every call event delivered"
        )
        fault_counts.requests_sent = len(answers)
        fault_counts.records_checked = len(call_ids)
        fault_counts.records_lost = len(set(call_ids) - delivered())
        fault_counts.notes.append(
            f"{receiver.hung} deliveries hung; {len(receiver.call_ids)} distinct events"
        )
        assert receiver.bad_signatures == 0
        # One event per routed call, each stable across retries (receivers de-duplicate).
        assert all(len(ids) == 1 for ids in receiver.call_ids.values())
        assert len(receiver.call_ids) == len(call_ids)
        service.stop()
    finally:
        await runner.cleanup()
