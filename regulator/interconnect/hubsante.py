"""Hub Santé adapter: outbox events as EDXL-DE envelopes over AMQP, Acks back in.

Model choice. The closest Hub Santé model for "a patient or a call oriented to an
MMG" is RS-EDA ``createCaseHealth`` with a ``decision`` of type ``ORIENT`` and
resource type ``LIBERAL.MMG``; later facts (acknowledged, arrived, completed,
cancelled, no-show, call ended) are RS-EDA-MAJ ``createCaseHealthUpdate``. The
messages are plain dicts checked in the tests against the hub's JSON Schemas
(``shared/interop/hubsante``, tag 3.4.1, schema version 26.07.29): the PyPI
package ``hubsante_model`` (0.1.1) was generated from an older version (its
``caseId`` and ``patientId`` patterns and the ``TSU`` code differ), and is untyped.

Mapping of a referral (``referral.created``):

- ``caseId`` = the SAMU's case: ``case_id`` as is if it is already a shared id
  (``fr.…``), else ``<recipient>.<case_id>``; ``senderCaseId`` = our referral id;
  ``owner`` = the recipient SAMU; ``perimeter`` = ``SNP`` (soins non programmés);
- ``qualification.origin`` = ``15`` and ``details.priority`` from ``urgency`` (P0–P3);
- ``initialAlert.caller.callerContact``/``callbackContact`` = the callback number
  (``{channel: PERSONNE, type: TEL, detail: +33…}``), only with ``full_numbers``;
- ``patient[0]`` with ``<clientId>.patient.<referral id>`` and the display name;
- ``decision[0]`` = ``ORIENT`` / ``LIBERAL.MMG`` / orientation ``CABINET``, operator
  ``MEDECIN`` (the regulating doctor), destination = the MMG;
- ``medicalNote`` = reason and note; ``additionalInformation.customMap`` = our
  event kind, status, expected time, tiers payant, age band.

A routed call (``call.routed``) is a case of its own (``<clientId>.<call id>``,
origin ``AUTRE``) whose alert note says where the call went and which rule fired;
only a direct access to the MMG carries an ``ORIENT``/``LIBERAL.MMG`` decision. The
caller's own number is its ``initialAlert.caller.callerContact`` only with
``include_caller: true``.

Transport (README of the reference data): publish to the topic exchange
``hubsante`` with routing key = our own clientId (= ``senderID``), JSON,
persistent, priority 0; the recipient's functional Ack (``distributionKind:
Ack``, RC-REF ``reference.distributionID``) arrives on ``{clientId}.ack`` and
marks the outbox delivery done; an RS-ERROR on ``{clientId}.info`` sends it to the
dead list with the hub's error. ``distributionID`` = ``<clientId>_<event_id>``, so
a re-publication (no Ack in time) keeps its id and the recipient can de-duplicate.
The AMQP URL (``amqp_url_env``) holds the vhost and, for the real hub, TLS with a
client certificate: ``amqps://host:5671/15-15_v2.0?auth=external&cafile=…&certfile=…&keyfile=…``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import aio_pika
import orjson
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from regulator.core.labels import CALL_STATUS_LABELS, OUTCOME_PHRASES, ROUTE_PHRASES
from regulator.interconnect.events import HubSanteTarget, OutboxEvent
from regulator.interconnect.outbox import OutboxStore, Result, SendResult
from regulator.logs import get_logger
from regulator.ports import Clock

log = get_logger("regulator.hubsante")

LANGUAGE: Final = "fr-FR"
ADDRESS_SCHEME: Final = "hubex"
URI_SCHEME: Final = "hubsante"

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")

#: French wording of routes and outcomes in the free texts (core/labels.py), looked up
#: by the payload's plain string values.
_ROUTES_FR: Final[dict[str, str]] = {str(k): v for k, v in ROUTE_PHRASES.items()}
_OUTCOMES_FR: Final[dict[str, str]] = {str(k): v for k, v in OUTCOME_PHRASES.items()}


# ---- mapping ----------------------------------------------------------------------------


def hub_time(value: datetime, zone: str) -> str:
    """``2026-11-23T21:10:00+01:00``: whole seconds and a ``±HH:MM`` offset, never ``Z``."""
    local = value.astimezone(ZoneInfo(zone))
    offset = local.strftime("%z") or "+0000"
    return local.strftime("%Y-%m-%dT%H:%M:%S") + offset[:3] + ":" + offset[3:]


def _parse(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _safe(value: str) -> str:
    return _UNSAFE.sub("-", value).strip("-") or "x"


def distribution_id(client_id: str, event_id: str) -> str:
    return f"{client_id}_{event_id}"


def event_id_of(client_id: str, distribution: str) -> str | None:
    """Our event id inside one of our distributionIDs, or None if it isn't ours."""
    prefix = f"{client_id}_"
    if distribution.startswith(prefix) and len(distribution) > len(prefix):
        return distribution[len(prefix) :]
    return None


def _system(client_id: str, name: str | None = None) -> dict[str, str]:
    return {"name": name or client_id.rsplit(".", 1)[-1], "URI": f"{URI_SCHEME}:{client_id}"}


def _case_id(event: OutboxEvent, target: HubSanteTarget) -> str:
    p = event.payload
    if event.kind.startswith("referral."):
        shared = str(p.get("case_id") or "")
        if re.fullmatch(r"fr(\.[A-Za-z0-9_-]+){3,9}", shared):
            return shared
        if shared:
            return f"{target.recipient}.{_safe(shared)}"
        return f"{target.client_id}.{_safe(str(p['id']))}"
    return f"{target.client_id}.{_safe(str(p['call_id']))}"


def _custom(event: OutboxEvent, details: Mapping[str, Any]) -> dict[str, Any]:
    """``additionalInformation`` (the schema allows at most three ``customMap`` entries):
    our event kind with the other facts in its ``freetext``, the event id, the MMG."""
    facts = []
    for key, value in details.items():
        if value is None or value == "":
            continue
        text = ("oui" if value else "non") if isinstance(value, bool) else str(value)
        facts.append(f"{key}={text}")
    kind: dict[str, str] = {"key": "regulator.event", "value": event.kind}
    if facts:
        kind["freetext"] = "; ".join(facts)
    return {
        "customMap": [
            kind,
            {"key": "regulator.event_id", "value": event.event_id},
            {"key": "regulator.mmg", "value": event.mmg},
        ]
    }


def _contact(number: str) -> dict[str, str]:
    return {"channel": "PERSONNE", "type": "TEL", "detail": number}


def _referral_case(event: OutboxEvent, target: HubSanteTarget) -> dict[str, Any]:
    p = target.payload(event)
    zone = target.timezone
    created = _parse(p.get("created_at")) or event.occurred_at
    ref = _safe(str(p["id"]))
    patient_id = f"{target.client_id}.patient.{ref}"
    doctor = {"role": "MEDECIN", "label": str(p.get("created_by") or "régulateur")}
    mmg = event.mmg
    case: dict[str, Any] = {
        "caseId": _case_id(event, target),
        "senderCaseId": str(p["id"]),
        "creation": hub_time(created, zone),
        "perimeter": "SNP",
        "qualification": {"origin": "15"},
        "location": {"freetext": f"Patient orienté vers la maison médicale de garde « {mmg} »"},
        "owner": target.recipient,
    }
    urgency = str(p.get("urgency") or "").upper()
    if urgency in ("P0", "P1", "P2", "P3"):
        case["qualification"]["details"] = {"priority": urgency}
    number = p.get("callback_number_e164")
    if number:
        case["initialAlert"] = {
            "reception": hub_time(created, zone),
            "caller": {
                "callerContact": _contact(number),
                "callbackContact": _contact(number),
                "language": "fr",
            },
        }
    patient: dict[str, Any] = {"patientId": patient_id}
    name = (p.get("patient") or {}).get("display_name")
    if name:
        patient["identity"] = {"nonStrictFeatures": {"complete": str(name)}}
    case["patient"] = [patient]
    note = " — ".join(str(x) for x in (p.get("reason"), p.get("note")) if x)
    if note:
        case["medicalNote"] = [
            {
                "patientId": patient_id,
                "operator": doctor,
                "medicalNoteId": f"{target.client_id}.medicalNote.{ref}",
                "creation": hub_time(created, zone),
                "freetext": note,
            }
        ]
    case["decision"] = [
        {
            "patientId": patient_id,
            "creation": hub_time(created, zone),
            "operator": doctor,
            "decisionType": "ORIENT",
            "resourceType": "LIBERAL.MMG",
            "orientationType": "CABINET",
            "destination": {"freetext": f"Maison médicale de garde « {mmg} »"},
        }
    ]
    expected = _parse(p.get("expected_at"))
    case["additionalInformation"] = _custom(
        event,
        {
            "status": p.get("status"),
            "expected_at": hub_time(expected, zone) if expected else None,
            "tiers_payant": p.get("tiers_payant"),
            "age_band": (p.get("patient") or {}).get("age_band"),
            "urgency": p.get("urgency"),
        },
    )
    return case


def _referral_update(event: OutboxEvent, target: HubSanteTarget) -> dict[str, Any]:
    p = event.payload
    mmg = event.mmg
    outcome = _OUTCOMES_FR.get(str(p.get("outcome")), "issue non précisée")
    texts = {
        "referral.acknowledged": f"Orientation prise en compte par la MMG « {mmg} »",
        "referral.arrived": f"Patient arrivé à la MMG « {mmg} »",
        "referral.completed": (
            f"Consultation terminée à la MMG « {mmg} » : {outcome}, {p.get('acts') or 0} acte(s)"
        ),
        "referral.cancelled": f"Orientation vers la MMG « {mmg} » annulée",
        "referral.no_show": f"Patient non présenté à la MMG « {mmg} »",
    }
    return {
        "caseId": _case_id(event, target),
        "senderCaseId": str(p["id"]),
        "perimeter": "SNP",
        "owner": target.recipient,
        "freetext": texts.get(event.kind, event.kind),
        "additionalInformation": _custom(
            event,
            {
                "status": p.get("status"),
                "outcome": p.get("outcome"),
                "acts": p.get("acts"),
                "by": p.get("by"),
            },
        ),
    }


def _call_case(event: OutboxEvent, target: HubSanteTarget) -> dict[str, Any]:
    p = target.payload(event)
    zone = target.timezone
    at = _parse(p.get("at")) or event.occurred_at
    mmg = event.mmg
    route = str(p.get("route"))
    text = f"Appel au numéro de la MMG « {mmg} » : {_ROUTES_FR.get(route, route)}"
    if p.get("rule"):
        text += f" (règle : {p['rule']})"
    case: dict[str, Any] = {
        "caseId": _case_id(event, target),
        "senderCaseId": str(p["call_id"]),
        "creation": hub_time(at, zone),
        "perimeter": "SNP",
        "qualification": {"origin": "AUTRE"},
        "location": {"freetext": text},
        "owner": target.recipient,
    }
    number = p.get("caller_e164")
    if number:
        case["initialAlert"] = {
            "reception": hub_time(at, zone),
            "caller": {"callerContact": _contact(number), "language": "fr"},
            "notes": [{"creation": hub_time(at, zone), "freetext": text}],
        }
    if route == "direct_access":
        case["decision"] = [
            {
                "creation": hub_time(event.occurred_at, zone),
                "operator": {"role": "AUTRE", "label": "regulator (protocole d'usage)"},
                "decisionType": "ORIENT",
                "resourceType": "LIBERAL.MMG",
                "orientationType": "CABINET",
                "destination": {"freetext": f"Maison médicale de garde « {mmg} »"},
            }
        ]
    case["additionalInformation"] = _custom(
        event,
        {
            "route": route,
            "ground": p.get("ground"),
            "rule": p.get("rule"),
            "caller_masked": p.get("caller"),
            "failsafe": p.get("failsafe"),
            "platform": p.get("platform"),
        },
    )
    return case


def _call_update(event: OutboxEvent, target: HubSanteTarget) -> dict[str, Any]:
    p = event.payload
    status = str(p.get("status") or "")
    said = CALL_STATUS_LABELS.get(status, f"statut « {status} »") if status else "terminé"
    duration = p.get("duration_s")
    text = f"Appel terminé ({said}" + (f", {duration} s)" if duration is not None else ")")
    return {
        "caseId": _case_id(event, target),
        "senderCaseId": str(p["call_id"]),
        "perimeter": "SNP",
        "owner": target.recipient,
        "freetext": text,
        "additionalInformation": _custom(
            event,
            {
                "route": p.get("route"),
                "status": p.get("status"),
                "duration_s": duration,
            },
        ),
    }


def use_case(event: OutboxEvent, target: HubSanteTarget) -> tuple[str, dict[str, Any], str]:
    """(use-case key, its body, distributionKind) for ``event``."""
    if event.kind == "referral.created":
        return "createCaseHealth", _referral_case(event, target), "Report"
    if event.kind.startswith("referral."):
        return "createCaseHealthUpdate", _referral_update(event, target), "Update"
    if event.kind == "call.routed":
        return "createCaseHealth", _call_case(event, target), "Report"
    return "createCaseHealthUpdate", _call_update(event, target), "Update"


def build_envelope(
    *,
    sender_id: str,
    recipient_id: str,
    distribution: str,
    kind: str,
    status: str,
    key: str,
    body: Mapping[str, Any],
    now: datetime,
    zone: str = "Europe/Paris",
    expires_s: int = 86400,
    sender_name: str | None = None,
) -> dict[str, Any]:
    """An EDXL-DE envelope whose message is the RC-DE header plus the one use-case ``key``."""
    sent = hub_time(now, zone)
    message_id = distribution.split("_", 1)[-1]
    return {
        "distributionID": distribution,
        "senderID": sender_id,
        "dateTimeSent": sent,
        "dateTimeExpires": hub_time(now + timedelta(seconds=expires_s), zone),
        "distributionStatus": status,
        "distributionKind": kind,
        "descriptor": {
            "language": LANGUAGE,
            "explicitAddress": {
                "explicitAddressScheme": ADDRESS_SCHEME,
                "explicitAddressValue": recipient_id,
            },
        },
        "content": [
            {
                "jsonContent": {
                    "embeddedJsonContent": {
                        "message": {
                            "messageId": message_id,
                            "sender": _system(sender_id, sender_name),
                            "sentAt": sent,
                            "kind": kind,
                            "status": status,
                            "recipient": [_system(recipient_id)],
                            key: dict(body),
                        }
                    }
                }
            }
        ],
    }


def envelope_for(event: OutboxEvent, target: HubSanteTarget, now: datetime) -> dict[str, Any]:
    """The envelope published for ``event`` to ``target``."""
    key, body, kind = use_case(event, target)
    return build_envelope(
        sender_id=target.client_id,
        recipient_id=target.recipient,
        distribution=distribution_id(target.client_id, event.event_id),
        kind=kind,
        status=target.distribution_status,
        key=key,
        body=body,
        now=now,
        zone=target.timezone,
        expires_s=target.expires_s,
        sender_name=target.sender_name,
    )


def ack_envelope(
    *,
    sender_id: str,
    recipient_id: str,
    acknowledged: str,
    distribution: str,
    now: datetime,
    status: str = "Actual",
    zone: str = "Europe/Paris",
) -> dict[str, Any]:
    """A functional Ack (RC-REF) of ``acknowledged`` from ``sender_id`` to ``recipient_id``."""
    return build_envelope(
        sender_id=sender_id,
        recipient_id=recipient_id,
        distribution=distribution,
        kind="Ack",
        status=status,
        key="reference",
        body={"distributionID": acknowledged},
        now=now,
        zone=zone,
    )


# ---- AMQP ---------------------------------------------------------------------------------


class HubSanteSender:
    """Publishes events of one Hub Santé target; the delivery completes on the Ack."""

    def __init__(self, target: HubSanteTarget, link: HubSanteLink, clock: Clock) -> None:
        self.target = target
        self.link = link
        self.clock = clock

    async def send(self, event: OutboxEvent) -> SendResult:
        exchange = self.link.exchange
        if exchange is None:
            return SendResult(Result.RETRY, "not connected to Hub Santé")
        envelope = envelope_for(event, self.target, self.clock.now())
        message = aio_pika.Message(
            body=orjson.dumps(envelope),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            priority=0,
        )
        try:
            # The hub rejects a routing key other than our own clientId (= senderID).
            await exchange.publish(
                message,
                routing_key=self.target.client_id,
                mandatory=True,
                timeout=self.target.timeout_s,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # broker down, channel closed, unroutable, timeout…
            return SendResult(Result.RETRY, f"publish failed: {type(exc).__name__}: {exc}")
        log.info(
            "hubsante_published",
            target=self.target.name,
            distribution_id=envelope["distributionID"],
            kind=event.kind,
        )
        return SendResult(Result.AWAIT_ACK, "awaiting Ack", self.target.ack_timeout_s)


class HubSanteConsumer:
    """Reads ``{clientId}.ack`` and ``{clientId}.info`` and marks outbox deliveries.

    A message it can't understand is logged and acknowledged (dropped): one bad
    message must not block the queue or stop the consumer.
    """

    def __init__(
        self,
        target: HubSanteTarget,
        store: OutboxStore,
        clock: Clock,
        *,
        on_result: Callable[[str, Result], None] | None = None,
    ) -> None:
        self.target = target
        self.store = store
        self.clock = clock
        self.on_result = on_result

    @property
    def queues(self) -> tuple[str, str]:
        cid = self.target.client_id
        return f"{cid}.ack", f"{cid}.info"

    async def handle(self, body: bytes, queue: str = "") -> str:
        """Process one message; returns what was done: ``delivered``, ``dead``,
        ``unknown`` (not in the outbox any more), ``ignored`` or ``malformed``.
        Store errors propagate (the message is then requeued)."""
        name = self.target.name
        try:
            envelope = orjson.loads(body)
            message = envelope["content"][0]["jsonContent"]["embeddedJsonContent"]["message"]
            if not isinstance(envelope, dict) or not isinstance(message, dict):
                raise TypeError("envelope and message must be objects")
            kind = envelope.get("distributionKind")
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
            log.warning(
                "hubsante_malformed",
                target=name,
                queue=queue,
                error=f"{type(exc).__name__}: {exc}",
                size=len(body),
            )
            return "malformed"

        if isinstance(message.get("reference"), dict):
            reference = message["reference"]
            acknowledged = reference.get("distributionID")
            if kind != "Ack" or not isinstance(acknowledged, str):
                log.warning("hubsante_malformed", target=name, queue=queue, error="bad Ack")
                return "malformed"
            event_id = event_id_of(self.target.client_id, acknowledged)
            if event_id is None:
                log.info("hubsante_foreign_ack", target=name, distribution_id=acknowledged)
                return "ignored"
            if reference.get("refused") or reference.get("step") == "ERREUR":
                error = "refused by recipient" + (
                    f" (error {reference['errorDistributionID']})"
                    if reference.get("errorDistributionID")
                    else ""
                )
                return await self._dead(event_id, error)
            done = await self.store.mark_delivered(name, event_id)
            log.info("hubsante_ack", target=name, event_id=event_id, known=done)
            if done:
                self._report(Result.DELIVERED)
                return "delivered"
            return "unknown"

        error_body = message.get("error")
        if not isinstance(error_body, dict) and "errorCode" in message:
            error_body = message  # older layout: RS-ERROR fields directly in the message
        if isinstance(error_body, dict):
            referenced = error_body.get("referencedDistributionID")
            code = error_body.get("errorCode")
            cause = error_body.get("errorCause")
            if not isinstance(referenced, str):
                log.warning(
                    "hubsante_error_unreferenced", target=name, queue=queue, cause=str(cause)
                )
                return "ignored"
            event_id = event_id_of(self.target.client_id, referenced)
            if event_id is None:
                log.info("hubsante_foreign_error", target=name, distribution_id=referenced)
                return "ignored"
            if isinstance(code, dict):
                label = f"{code.get('statusString', '?')} ({code.get('statusCode', '?')})"
            else:
                label = str(code)
            return await self._dead(event_id, f"Hub Santé error {label}: {cause}")

        log.warning("hubsante_unexpected", target=name, queue=queue, kind=kind)
        return "ignored"

    async def _dead(self, event_id: str, error: str) -> str:
        name = self.target.name
        done = await self.store.mark_dead(name, event_id, error, self.clock.now())
        log.warning("hubsante_delivery_failed", target=name, event_id=event_id, error=error)
        if done:
            self._report(Result.DEAD)
            return "dead"
        return "unknown"

    def _report(self, result: Result) -> None:
        if self.on_result is not None:
            try:
                self.on_result(self.target.name, result)
            except Exception:
                log.exception("hubsante_on_result_failed")

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        """aio-pika callback: handle, then ack; requeue only if our store failed."""
        try:
            await self.handle(message.body, message.routing_key or "")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("hubsante_consumer_error", target=self.target.name)
            await asyncio.sleep(1.0)  # store down: don't spin on the same message
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        with contextlib.suppress(Exception):
            await message.ack()


class HubSanteLink:
    """One AMQP connection for a Hub Santé target: publisher and Ack/info consumer.

    ``await link.start()`` connects (robustly: reconnects by itself) and starts
    consuming; ``link.sender`` goes to the outbox worker; ``await link.close()``.
    Queues and the exchange belong to the hub: they are used, never declared.
    """

    def __init__(
        self,
        target: HubSanteTarget,
        store: OutboxStore,
        clock: Clock,
        *,
        url: str | None = None,
        environ: Mapping[str, str] | None = None,
        on_result: Callable[[str, Result], None] | None = None,
        prefetch: int = 32,
    ) -> None:
        self.target = target
        self.url = url if url is not None else target.amqp_url(environ)
        self.prefetch = prefetch
        self.sender = HubSanteSender(target, self, clock)
        self.consumer = HubSanteConsumer(target, store, clock, on_result=on_result)
        self.connection: AbstractRobustConnection | None = None
        self.exchange: AbstractExchange | None = None
        self._publish_channel: AbstractChannel | None = None
        self._consume_channel: AbstractChannel | None = None
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._connector: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.connection is not None:
            return
        connection = await aio_pika.connect_robust(self.url)
        try:
            # Confirms + mandatory: a message the broker could not route is a failed send.
            publish = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self.exchange = await publish.get_exchange(self.target.exchange, ensure=False)
            consume = await connection.channel()
            await consume.set_qos(prefetch_count=self.prefetch)
            for name in self.consumer.queues:
                queue = await consume.get_queue(name, ensure=True)  # passive: must exist
                tag = await queue.consume(self.consumer.on_message)
                self._consumers.append((queue, tag))
        except BaseException:
            await connection.close()
            self.exchange = None
            raise
        self.connection = connection
        self._publish_channel = publish
        self._consume_channel = consume
        log.info("hubsante_connected", target=self.target.name, queues=self.consumer.queues)

    def start_background(
        self, *, first_delay_s: float = 1.0, max_delay_s: float = 60.0
    ) -> asyncio.Task[None]:
        """Connect in the background, retrying with backoff until it works: a hub that is
        down at start-up must not stop the service (the outbox keeps the messages)."""

        async def connect() -> None:
            delay = first_delay_s
            while True:
                try:
                    await self.start()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning(
                        "hubsante_connect_failed",
                        target=self.target.name,
                        error=f"{type(exc).__name__}: {exc}",
                        retry_in_s=delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(max_delay_s, delay * 2)

        self._connector = asyncio.create_task(connect(), name=f"hubsante:{self.target.name}")
        return self._connector

    async def close(self) -> None:
        connector, self._connector = self._connector, None
        if connector is not None and not connector.done():
            connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connector
        self.exchange = None
        consumers, self._consumers = self._consumers, []
        for queue, tag in consumers:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        connection, self.connection = self.connection, None
        if connection is not None:
            await connection.close()


__all__ = [
    "HubSanteConsumer",
    "HubSanteLink",
    "HubSanteSender",
    "ack_envelope",
    "build_envelope",
    "distribution_id",
    "envelope_for",
    "event_id_of",
    "hub_time",
    "use_case",
]
