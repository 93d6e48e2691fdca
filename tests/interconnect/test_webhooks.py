"""Signed webhooks through the outbox, against a real aiohttp receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from regulator.interconnect.events import OutboxEvent, WebhookTarget
from regulator.interconnect.outbox import (
    DeliveryReport,
    OutboxStore,
    OutboxWorker,
    Result,
)
from regulator.interconnect.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    WebhookSender,
    sign,
    verify_signature,
)
from regulator.ports import SystemClock
from tests.interconnect.helpers import (
    CALLER,
    SECRET,
    ManualClock,
    events,
    eventually,
    webhook_target,
)


@dataclass
class Receiver:
    """A regulation software stand-in: verifies signatures, can fail or be down."""

    fail_first: int = 0
    down: bool = False
    delay_s: float = 0.0
    requests: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    header_mismatch: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.read()
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if self.down or self.requests <= self.fail_first:
                return web.Response(status=503 if self.down else 500)
            header = request.headers.get(SIGNATURE_HEADER, "")
            if not verify_signature(SECRET, header, body, time.time()):
                self.bad_signatures += 1
                return web.Response(status=401)
            document = orjson.loads(body)
            if request.headers.get(EVENT_ID_HEADER) != document["event_id"]:
                self.header_mismatch += 1
            self.accepted.append(document)
            return web.Response(status=204)
        finally:
            self.in_flight -= 1

    def unique(self) -> dict[str, dict[str, Any]]:
        """Accepted documents after de-duplication by event id, as a receiver would keep."""
        return {doc["event_id"]: doc for doc in self.accepted}


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    app = web.Application()
    app.router.add_post("/regulator", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.url = f"http://{host}:{port}/regulator"
    yield state
    await runner.cleanup()


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def make_worker(
    store: OutboxStore,
    target: WebhookTarget,
    session: aiohttp.ClientSession,
    clock: Any,
    reports: list[DeliveryReport] | None = None,
    **options: Any,
) -> OutboxWorker:
    sender = WebhookSender(target, SECRET, session, SystemClock())
    defaults: dict[str, Any] = {"base_backoff_s": 0.01, "max_backoff_s": 0.05}
    defaults.update(options)
    return OutboxWorker(
        store,
        [target],
        {target.name: sender},
        clock,
        on_delivery=(lambda _t, r: reports.append(r)) if reports is not None else None,
        **defaults,
    )


async def drain(worker: OutboxWorker, clock: ManualClock, rounds: int = 30) -> None:
    """Run passes, moving the clock past any backoff, until nothing is pending."""
    for _ in range(rounds):
        await worker.run_once()
        if await worker.store.pending_count() == 0:
            return
        clock.advance(1)
    raise AssertionError("outbox did not drain")


# ---- signatures ----------------------------------------------------------------------


def test_signature_round_trip() -> None:
    body = b'{"a":1}'
    header = sign(SECRET, 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=")
    assert verify_signature(SECRET, header, body, 1_700_000_100)


@pytest.mark.parametrize(
    ("header", "body", "now"),
    [
        (sign(SECRET, 1_700_000_000, b"{}"), b"{ }", 1_700_000_000),  # body changed
        (sign("other", 1_700_000_000, b"{}"), b"{}", 1_700_000_000),  # wrong secret
        (sign(SECRET, 1_700_000_000, b"{}"), b"{}", 1_700_000_301),  # too old
        (sign(SECRET, 1_700_000_000, b"{}"), b"{}", 1_699_999_600),  # from the future
        ("t=abc,v1=00", b"{}", 1_700_000_000),
        ("v1=00", b"{}", 1_700_000_000),
        ("t=1700000000", b"{}", 1_700_000_000),
        ("", b"{}", 1_700_000_000),
    ],
)
def test_bad_signatures_are_refused(header: str, body: bytes, now: float) -> None:
    assert not verify_signature(SECRET, header, body, now)


def test_any_of_several_v1_values_is_accepted_for_secret_rotation() -> None:
    good = sign(SECRET, 1_700_000_000, b"{}")
    rotated = f"t=1700000000,v1={'0' * 64},{good.split(',')[1]}"
    assert verify_signature(SECRET, rotated, b"{}", 1_700_000_000)


def test_module_docstring_snippet_verifies_like_the_library() -> None:
    import regulator.interconnect.webhooks as module

    assert module.__doc__ is not None
    snippet = module.__doc__.split("copy-paste (standard library only)::", 1)[1]
    code = "\n".join(line[4:] for line in snippet.split("# e.g. in aiohttp")[0].splitlines())
    namespace: dict[str, Any] = {}
    exec(compile(code, "<snippet>", "exec"), namespace)  # noqa: S102 - our own docstring
    body = b'{"x":"\xc3\xa9"}'
    header = sign(SECRET, 1_700_000_000, body)
    assert namespace["verify_signature"](SECRET, header, body, 1_700_000_010)
    assert not namespace["verify_signature"](SECRET, header, body + b" ", 1_700_000_010)
    assert not namespace["verify_signature"](SECRET, "garbage", body, 1_700_000_010)


# ---- delivery ----------------------------------------------------------------------------


async def test_receiver_failing_three_times_still_gets_every_event_exactly_once(
    outbox_store: OutboxStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
) -> None:
    receiver.fail_first = 3
    reports: list[DeliveryReport] = []
    worker = make_worker(outbox_store, webhook_target(receiver.url), session, clock, reports)
    batch = events(10)
    assert await worker.enqueue(batch) == 10

    await drain(worker, clock)

    assert receiver.bad_signatures == 0
    assert receiver.header_mismatch == 0
    assert receiver.requests == 13
    assert set(receiver.unique()) == {e.event_id for e in batch}
    assert max(Counter(d["event_id"] for d in receiver.accepted).values()) == 1
    results = Counter(r.result for r in reports)
    assert results == {Result.RETRY: 3, Result.DELIVERED: 10}
    assert all(r.error == "HTTP 500" for r in reports if r.result is Result.RETRY)
    assert await outbox_store.dead() == []


async def test_body_is_the_event_with_numbers_masked_unless_full_numbers(
    outbox_store: OutboxStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
) -> None:
    call = events(1)[0]
    worker = make_worker(outbox_store, webhook_target(receiver.url), session, clock)
    await worker.enqueue([call])
    await drain(worker, clock)
    (document,) = receiver.accepted
    assert document == orjson.loads(
        orjson.dumps(call.as_json(full_numbers=False, include_caller=False))
    )
    assert document["payload"]["caller"] == "+33 6 •• •• •• 42"
    assert "caller_e164" not in document["payload"]
    assert CALLER not in orjson.dumps(document).decode()
    # Not even stored: no target of this event wants full numbers.
    assert "caller_e164" not in OutboxEvent.from_json(document).payload


async def test_include_caller_target_gets_the_callers_e164_number(
    outbox_store: OutboxStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
) -> None:
    target = webhook_target(receiver.url, include_caller=True)
    worker = make_worker(outbox_store, target, session, clock)
    await worker.enqueue(events(1))
    await drain(worker, clock)
    assert receiver.accepted[0]["payload"]["caller_e164"] == CALLER


async def test_full_numbers_alone_does_not_send_the_callers_number(
    outbox_store: OutboxStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
) -> None:
    target = webhook_target(receiver.url, full_numbers=True)
    worker = make_worker(outbox_store, target, session, clock)
    await worker.enqueue(events(1))
    await drain(worker, clock)
    assert "caller_e164" not in receiver.accepted[0]["payload"]


async def test_events_of_other_mmgs_are_not_sent(
    outbox_store: OutboxStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
) -> None:
    worker = make_worker(outbox_store, webhook_target(receiver.url, mmgs=["metz"]), session, clock)
    assert await worker.enqueue(events(3)) == 0
    assert await outbox_store.pending_count() == 0


async def test_receiver_down_longer_than_max_age_then_redrive(
    outbox_store: OutboxStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
) -> None:
    receiver.down = True
    reports: list[DeliveryReport] = []
    target = webhook_target(receiver.url)
    worker = make_worker(
        outbox_store, target, session, clock, reports, max_age_s=60, max_backoff_s=20
    )
    batch = events(4)
    await worker.enqueue(batch)
    for _ in range(10):  # 10 × 10 s: well past max_age
        await worker.run_once()
        clock.advance(10)
    await worker.run_once()

    assert await outbox_store.pending_count() == 0
    dead = await outbox_store.dead(target.name)
    assert {d.event.event_id for d in dead} == {e.event_id for e in batch}
    assert all(d.error is not None and "HTTP 503" in d.error for d in dead)
    assert all(d.attempts >= 2 for d in dead)
    assert Counter(r.result for r in reports)[Result.DEAD] == 4
    assert receiver.accepted == []

    receiver.down = False
    assert await worker.redrive(target.name) == 4
    await drain(worker, clock)
    assert set(receiver.unique()) == {e.event_id for e in batch}
    assert await outbox_store.dead() == []


async def test_per_target_concurrency_is_respected(
    outbox_store: OutboxStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
) -> None:
    receiver.delay_s = 0.05
    worker = make_worker(outbox_store, webhook_target(receiver.url, concurrency=2), session, clock)
    await worker.enqueue(events(8))
    await worker.run_once()
    assert len(receiver.accepted) == 8
    assert receiver.max_in_flight == 2


async def test_timeout_is_a_retry(
    outbox_store: OutboxStore,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
) -> None:
    receiver.delay_s = 0.5
    reports: list[DeliveryReport] = []
    target = webhook_target(receiver.url, timeout_s=0.1)
    worker = make_worker(outbox_store, target, session, clock, reports)
    await worker.enqueue(events(1))
    await worker.run_once()
    assert [r.result for r in reports] == [Result.RETRY]
    assert reports[0].error is not None and "timeout" in reports[0].error
    assert await outbox_store.pending_count() == 1


async def test_unreachable_receiver_is_a_retry(
    outbox_store: OutboxStore, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    reports: list[DeliveryReport] = []
    # Port 9 on loopback: nothing listens there, the connection is refused at once.
    worker = make_worker(
        outbox_store, webhook_target("http://127.0.0.1:9/x"), session, clock, reports
    )
    await worker.enqueue(events(1))
    await worker.run_once()
    assert [r.result for r in reports] == [Result.RETRY]
    assert reports[0].error is not None and "Connect" in reports[0].error


async def test_started_worker_delivers_in_the_background_with_real_time(
    outbox_store: OutboxStore, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.fail_first = 3
    pending: list[int] = []
    worker = make_worker(
        outbox_store,
        webhook_target(receiver.url),
        session,
        SystemClock(),
        poll_interval_s=0.05,
        on_pending=pending.append,
    )
    worker.start()
    try:
        await worker.enqueue(events(5))

        async def drained() -> bool:
            return len(receiver.unique()) == 5 and await outbox_store.pending_count() == 0

        await eventually(drained)
    finally:
        await worker.stop()
    assert not worker.running
    assert pending and pending[-1] == 0
    assert max(pending) >= 1
