"""Hub Santé: envelopes checked against the hub's own JSON Schemas, and a real RabbitMQ.

The schemas live in ``shared/interop/hubsante`` beside the repository clone (CI
runs with ``shared/`` next to it). RabbitMQ: ``amqp://guest:guest@127.0.0.1:5672/``
(or ``REGULATOR_TEST_AMQP_URL``); each test declares its own exchange and queues
under unique names and deletes them after. Without the schemas or the broker
these tests are skipped — except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest
import pytest_asyncio
import structlog
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from regulator.core.models import ReferralStatus, Route
from regulator.interconnect.events import (
    EVENT_KINDS,
    HubSanteTarget,
    OutboxEvent,
    call_event,
    referral_event,
)
from regulator.interconnect.hubsante import (
    HubSanteConsumer,
    HubSanteLink,
    ack_envelope,
    build_envelope,
    envelope_for,
    event_id_of,
    hub_time,
)
from regulator.interconnect.outbox import DeliveryReport, OutboxStore, OutboxWorker, Result
from regulator.storage.outbox_sqlite import OutboxSqliteStore
from tests.interconnect.helpers import (
    CALLBACK,
    CALLER,
    T0,
    ManualClock,
    call_record,
    eventually,
)
from tests.interconnect.helpers import hub_target as make_hub_target
from tests.interconnect.helpers import referral as make_referral

HUBSANTE_DIR = (Path(__file__).parents[2] / "../shared/interop/hubsante").resolve()
AMQP_URL = os.environ.get("REGULATOR_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
IN_CI = os.environ.get("CI", "").lower() == "true"
RECIPIENT = "fr.health.samu030"
OFFSET_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    """Draft-07 validator of the full envelope, cross-file refs resolved by file name."""
    schemas = HUBSANTE_DIR / "schemas"
    if not (schemas / "EDXL-DE-full.schema.json").is_file():
        _unavailable(f"Hub Santé schemas not found in {schemas}")
    resources = [
        (
            path.name,
            Resource.from_contents(
                json.loads(path.read_text(encoding="utf-8")), default_specification=DRAFT7
            ),
        )
        for path in schemas.glob("*.schema.json")
    ]
    registry: Registry[Any] = Registry().with_resources(resources)
    full = json.loads((schemas / "EDXL-DE-full.schema.json").read_text(encoding="utf-8"))
    return Draft7Validator(full, registry=registry)


def errors(validator: Draft7Validator, document: Any) -> list[str]:
    """Every error, with the nested ones of ``oneOf`` branches, for readable failures."""
    out: list[str] = []
    for error in validator.iter_errors(document):
        out.append(f"{list(error.absolute_path)}: {error.message[:200]}")
        for sub in error.context or []:
            if sub.validator != "required":
                out.append(f"  {list(sub.absolute_path)}: {sub.message[:200]}")
    return out


@pytest.fixture
def target() -> HubSanteTarget:
    return make_hub_target("fr.health.test.regulator", "hubsante", distribution_status="Actual")


def all_kinds() -> list[OutboxEvent]:
    """One event of every kind."""
    out = [
        call_event(call_record(1)),
        call_event(call_record(2, route=Route.DIRECT_ACCESS)),
        call_event(replace(call_record(3), status="completed", duration_s=95)),
    ]
    for status in ReferralStatus:
        out.append(referral_event(make_referral(1, status, version=2)))
    assert {e.kind for e in out} == set(EVENT_KINDS)
    return out


# ---- the oracle itself ---------------------------------------------------------------------


def test_reference_sample_validates_and_a_bad_kind_does_not(validator: Draft7Validator) -> None:
    sample = json.loads(
        (HUBSANTE_DIR / "samples/RS-EDA_partageDossier_DidierMorel.01a.json").read_text("utf-8")
    )
    envelope = build_envelope(
        sender_id="fr.health.samu770",
        recipient_id=RECIPIENT,
        distribution=f"fr.health.samu770_{uuid.uuid4()}",
        kind="Report",
        status="Actual",
        key="createCaseHealth",
        body=sample["createCaseHealth"],
        now=T0,
    )
    assert errors(validator, envelope) == []
    envelope["distributionKind"] = "Notify"
    assert errors(validator, envelope)


# ---- mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize("include_caller", [True, False])
@pytest.mark.parametrize("full_numbers", [True, False])
def test_every_event_kind_maps_to_a_valid_envelope(
    validator: Draft7Validator, target: HubSanteTarget, full_numbers: bool, include_caller: bool
) -> None:
    update = {"full_numbers": full_numbers, "include_caller": include_caller}
    target = target.model_copy(update=update)
    for event in all_kinds():
        envelope = envelope_for(event, target, T0)
        assert errors(validator, envelope) == [], event.kind
        text = orjson.dumps(envelope).decode()
        # The caller's own number only where the target opted in to it.
        assert (CALLER in text) is (include_caller and event.kind == "call.routed"), event.kind
        assert (CALLBACK in text) is (full_numbers and event.kind == "referral.created")


def test_envelope_follows_the_hub_rules(target: HubSanteTarget) -> None:
    event = referral_event(make_referral(1))
    envelope = envelope_for(event, target, T0)
    assert envelope["senderID"] == "fr.health.test.regulator"
    assert envelope["distributionID"] == f"fr.health.test.regulator_{event.event_id}"
    assert envelope["distributionID"].startswith(envelope["senderID"] + "_")
    assert uuid.UUID(envelope["distributionID"].split("_", 1)[1])
    assert envelope["dateTimeSent"] == "2026-11-23T21:00:00+01:00"
    assert envelope["dateTimeExpires"] == "2026-11-24T21:00:00+01:00"
    assert envelope["distributionStatus"] == "Actual"
    assert envelope["distributionKind"] == "Report"
    assert envelope["descriptor"] == {
        "language": "fr-FR",
        "explicitAddress": {
            "explicitAddressScheme": "hubex",
            "explicitAddressValue": RECIPIENT,
        },
    }
    assert len(envelope["content"]) == 1
    message = envelope["content"][0]["jsonContent"]["embeddedJsonContent"]["message"]
    header = {"messageId", "sender", "sentAt", "kind", "status", "recipient"}
    assert set(message) - header == {"createCaseHealth"}
    assert message["kind"] == "Report"
    assert message["status"] == "Actual"
    assert message["sentAt"] == envelope["dateTimeSent"]
    assert message["recipient"] == [{"name": "samu030", "URI": "hubsante:fr.health.samu030"}]
    assert message["sender"]["URI"] == "hubsante:fr.health.test.regulator"
    for value in _strings(envelope):
        assert not re.fullmatch(r"\d{4}-\d{2}-\d{2}T.*Z", value), value


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def test_referral_is_an_orientation_to_the_mmg(target: HubSanteTarget) -> None:
    event = referral_event(make_referral(1))
    message = envelope_for(event, target, T0)["content"][0]["jsonContent"]["embeddedJsonContent"]
    case = message["message"]["createCaseHealth"]
    assert case["caseId"] == "fr.health.samu030.DRFR150302600000001"
    assert case["senderCaseId"] == "ref-0001"
    assert case["owner"] == RECIPIENT
    assert case["qualification"]["origin"] == "15"
    assert case["qualification"]["details"] == {"priority": "P2"}
    (decision,) = case["decision"]
    assert decision["decisionType"] == "ORIENT"
    assert decision["resourceType"] == "LIBERAL.MMG"
    caller = case["initialAlert"]["caller"]
    assert caller["callerContact"] == {"channel": "PERSONNE", "type": "TEL", "detail": CALLBACK}
    assert caller["callbackContact"]["detail"] == CALLBACK
    assert case["patient"][0]["patientId"] == "fr.health.test.regulator.patient.ref-0001"


def test_updates_reuse_the_case_id_and_are_update_kind(target: HubSanteTarget) -> None:
    created = envelope_for(referral_event(make_referral(1)), target, T0)
    arrived = envelope_for(
        referral_event(make_referral(1, ReferralStatus.ARRIVED, version=2)), target, T0
    )
    assert arrived["distributionKind"] == "Update"
    first = created["content"][0]["jsonContent"]["embeddedJsonContent"]["message"]
    update = arrived["content"][0]["jsonContent"]["embeddedJsonContent"]["message"]
    assert update["createCaseHealthUpdate"]["caseId"] == first["createCaseHealth"]["caseId"]
    assert "arrivé" in update["createCaseHealthUpdate"]["freetext"]


def test_only_direct_access_calls_carry_an_orientation(target: HubSanteTarget) -> None:
    def case(route: Route) -> dict[str, Any]:
        envelope = envelope_for(call_event(call_record(1, route=route)), target, T0)
        message = envelope["content"][0]["jsonContent"]["embeddedJsonContent"]["message"]
        result: dict[str, Any] = message["createCaseHealth"]
        return result

    assert "decision" not in case(Route.REGULATION)
    assert case(Route.DIRECT_ACCESS)["decision"][0]["resourceType"] == "LIBERAL.MMG"
    assert "initialAlert" not in case(Route.REGULATION)  # no caller's number: not opted in
    target = target.model_copy(update={"include_caller": True})
    assert case(Route.REGULATION)["initialAlert"]["caller"]["callerContact"]["detail"] == CALLER


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        (T0, "Europe/Paris", "2026-11-23T21:00:00+01:00"),
        (T0.replace(month=7), "Europe/Paris", "2026-07-23T22:00:00+02:00"),
        (T0, "Indian/Reunion", "2026-11-24T00:00:00+04:00"),
        (T0, "UTC", "2026-11-23T20:00:00+00:00"),
        (T0 + timedelta(microseconds=123456), "Europe/Paris", "2026-11-23T21:00:00+01:00"),
    ],
)
def test_hub_time_has_an_offset_and_whole_seconds(
    instant: datetime, zone: str, expected: str
) -> None:
    assert hub_time(instant, zone) == expected
    assert OFFSET_TIME.match(hub_time(instant, zone))


def test_event_id_is_read_back_only_from_our_distribution_ids() -> None:
    assert event_id_of("fr.health.a", "fr.health.a_123") == "123"
    assert event_id_of("fr.health.a", "fr.health.ab_123") is None
    assert event_id_of("fr.health.a", "fr.health.a_") is None


# ---- consumer logic without a broker ----------------------------------------------------------


async def test_consumer_handles_acks_errors_and_garbage(
    tmp_path: Path, target: HubSanteTarget, clock: ManualClock
) -> None:
    store = OutboxSqliteStore(tmp_path / "o.sqlite3")
    await store.open()
    try:
        batch = [referral_event(make_referral(i)) for i in range(1, 4)]
        await store.enqueue(batch, [target.name], T0)
        consumer = HubSanteConsumer(target, store, clock)
        ours = [f"{target.client_id}_{e.event_id}" for e in batch]

        def ack(acknowledged: str, **reference: Any) -> bytes:
            envelope = ack_envelope(
                sender_id=RECIPIENT,
                recipient_id=target.client_id,
                acknowledged=acknowledged,
                distribution=f"{RECIPIENT}_{uuid.uuid4()}",
                now=T0,
            )
            message = envelope["content"][0]["jsonContent"]["embeddedJsonContent"]["message"]
            message["reference"].update(reference)
            return orjson.dumps(envelope)

        assert await consumer.handle(b"not json") == "malformed"
        assert await consumer.handle(b'{"content": []}') == "malformed"
        assert await consumer.handle(b"[1, 2]") == "malformed"
        assert await consumer.handle(ack("fr.health.other_1")) == "ignored"
        assert await consumer.handle(ack(ours[0])) == "delivered"
        assert await consumer.handle(ack(ours[0])) == "unknown"
        assert await consumer.handle(ack(ours[1], refused=True)) == "dead"
        error = hub_error(target.client_id, ours[2])
        assert await consumer.handle(error) == "dead"
        dead = {d.event.event_id: d for d in await store.dead()}
        assert "refused" in (dead[batch[1].event_id].error or "")
        assert "UNKNOWN_RECIPIENT" in (dead[batch[2].event_id].error or "")
        assert await store.pending_count() == 0
    finally:
        await store.close()


def hub_error(client_id: str, referenced: str, code: int = 402) -> bytes:
    """An RS-ERROR from the hub about one of our messages, as it lands on ``.info``."""
    envelope = build_envelope(
        sender_id="fr.health.hub",
        recipient_id=client_id,
        distribution=f"fr.health.hub_{uuid.uuid4()}",
        kind="Error",
        status="Actual",
        key="error",
        body={
            "errorCode": {"statusCode": code, "statusString": "UNKNOWN_RECIPIENT"},
            "errorCause": "fr.health.samu030 inconnu",
            "referencedDistributionID": referenced,
        },
        now=T0,
    )
    return orjson.dumps(envelope)


# ---- against RabbitMQ --------------------------------------------------------------------------


@dataclass
class Broker:
    connection: AbstractRobustConnection
    channel: AbstractChannel
    client_id: str
    exchange: str
    hub_inbox: AbstractQueue  # what the hub would receive from us

    async def to_queue(self, suffix: str, body: bytes) -> None:
        """Publish like the hub does onto one of our queues ({clientId}.ack / .info)."""
        await self.channel.default_exchange.publish(
            aio_pika.Message(body=body, content_type="application/json"),
            routing_key=f"{self.client_id}.{suffix}",
        )


@pytest_asyncio.fixture
async def broker() -> AsyncIterator[Broker]:
    try:
        connection = await asyncio.wait_for(aio_pika.connect_robust(AMQP_URL), 10)
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
        _unavailable(f"RabbitMQ not reachable at {AMQP_URL}: {exc}")
        raise  # unreachable: _unavailable raises
    token = uuid.uuid4().hex[:10]
    client_id = f"fr.health.test{token}.regulator"
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        f"test-hubsante-{token}", aio_pika.ExchangeType.TOPIC, auto_delete=False
    )
    queues = [await channel.declare_queue(f"{client_id}.{s}") for s in ("ack", "info")]
    hub_inbox = await channel.declare_queue(f"test-hub-inbox-{token}")
    await hub_inbox.bind(exchange, routing_key=client_id)
    try:
        yield Broker(connection, channel, client_id, exchange.name, hub_inbox)
    finally:
        for queue in [*queues, hub_inbox]:
            await queue.delete(if_unused=False, if_empty=False)
        await exchange.delete()
        await connection.close()


async def collect(queue: AbstractQueue, count: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with asyncio.timeout(10):
        while len(got) < count:
            message = await queue.get(fail=False)
            if message is None:
                await asyncio.sleep(0.02)
                continue
            await message.ack()
            got.append(message)
    return got


async def test_publish_validate_ack_error_and_garbage_through_rabbitmq(
    broker: Broker, validator: Draft7Validator, tmp_path: Path, clock: ManualClock
) -> None:
    target = make_hub_target(broker.client_id, broker.exchange, ack_timeout_s=30)
    store: OutboxStore = OutboxSqliteStore(tmp_path / "o.sqlite3")
    await store.open()
    link = HubSanteLink(target, store, clock, url=AMQP_URL)
    await link.start()
    reports: list[DeliveryReport] = []
    worker = OutboxWorker(
        store,
        [target],
        {target.name: link.sender},
        clock,
        on_delivery=lambda _t, r: reports.append(r),
    )
    try:
        batch = [
            referral_event(make_referral(1)),
            call_event(call_record(2, route=Route.DIRECT_ACCESS)),
            referral_event(make_referral(1, ReferralStatus.ARRIVED, version=2)),
            referral_event(make_referral(4)),
        ]
        await worker.enqueue(batch)
        await worker.run_once()
        assert [r.result for r in reports] == [Result.AWAIT_ACK] * 4
        assert await store.pending_count() == 4  # published, not acknowledged yet

        # What the hub receives: one valid envelope per event, with the hub's transport rules.
        received = await collect(broker.hub_inbox, 4)
        by_id: dict[str, dict[str, Any]] = {}
        for message in received:
            assert message.routing_key == broker.client_id
            assert message.content_type == "application/json"
            assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            assert message.priority == 0
            envelope = orjson.loads(message.body)
            assert errors(validator, envelope) == []
            assert envelope["senderID"] == broker.client_id
            assert envelope["distributionStatus"] == "Exercise"
            by_id[envelope["distributionID"]] = envelope
        ids = [f"{broker.client_id}_{e.event_id}" for e in batch]
        assert set(by_id) == set(ids)

        def ack(distribution: str) -> bytes:
            envelope = ack_envelope(
                sender_id=RECIPIENT,
                recipient_id=broker.client_id,
                acknowledged=distribution,
                distribution=f"{RECIPIENT}_{uuid.uuid4()}",
                now=clock.now(),
                status="Exercise",
            )
            assert errors(validator, envelope) == []
            return orjson.dumps(envelope)

        async def pending() -> int:
            return await store.pending_count()

        await broker.to_queue("ack", ack(ids[0]))
        await eventually(lambda: _equals(pending, 3))

        with structlog.testing.capture_logs() as logs:
            await broker.to_queue("ack", b"{this is not json")
            await broker.to_queue("ack", b'{"distributionKind": "Ack"}')
            await broker.to_queue("ack", ack(ids[1]))  # the consumer must still be working
            await eventually(lambda: _equals(pending, 2))
        malformed = [entry for entry in logs if entry["event"] == "hubsante_malformed"]
        assert len(malformed) == 2
        assert all(entry["log_level"] == "warning" for entry in malformed)

        error = hub_error(broker.client_id, ids[2])
        assert errors(validator, orjson.loads(error)) == []
        await broker.to_queue("info", error)
        await eventually(lambda: _equals(pending, 1))
        (dead,) = await store.dead(target.name)
        assert dead.event.event_id == batch[2].event_id
        assert dead.error is not None and "UNKNOWN_RECIPIENT (402)" in dead.error

        # No Ack in time: published again, same distributionID.
        clock.advance(31)
        await worker.run_once()
        (again,) = await collect(broker.hub_inbox, 1)
        assert orjson.loads(again.body)["distributionID"] == ids[3]
        await broker.to_queue("ack", ack(ids[3]))
        await eventually(lambda: _equals(pending, 0))
        assert len(await store.dead()) == 1
    finally:
        await link.close()
        await store.close()


async def _equals(get: Callable[[], Awaitable[int]], expected: int) -> bool:
    return await get() == expected


async def test_publish_failure_is_a_retry(
    broker: Broker, tmp_path: Path, clock: ManualClock
) -> None:
    """An exchange that routes our key nowhere: the message comes back, the outbox retries."""
    target = make_hub_target(broker.client_id, broker.exchange, timeout_s=5)
    store = OutboxSqliteStore(tmp_path / "o.sqlite3")
    await store.open()
    link = HubSanteLink(target, store, clock, url=AMQP_URL)
    await link.start()
    try:
        await broker.hub_inbox.unbind(broker.exchange, routing_key=broker.client_id)
        result = await link.sender.send(referral_event(make_referral(1)))
        assert result.result is Result.RETRY
        assert result.error is not None and "publish failed" in result.error
    finally:
        await link.close()
        await store.close()


async def test_hub_down_at_start_up_does_not_block_and_sends_are_retries(
    tmp_path: Path, target: HubSanteTarget, clock: ManualClock
) -> None:
    store = OutboxSqliteStore(tmp_path / "o.sqlite3")
    await store.open()
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    link = HubSanteLink(target, store, clock, url="amqp://guest:guest@127.0.0.1:1/")
    try:
        with structlog.testing.capture_logs() as logs:
            task = link.start_background(first_delay_s=0.01, max_delay_s=0.02)

            async def failed_twice() -> bool:
                return sum(1 for e in logs if e["event"] == "hubsante_connect_failed") >= 2

            await eventually(failed_twice)
        assert not task.done()
        result = await link.sender.send(referral_event(make_referral(1)))
        assert result.result is Result.RETRY
        assert result.error == "not connected to Hub Santé"
    finally:
        await link.close()
        await store.close()
    assert task.cancelled()
