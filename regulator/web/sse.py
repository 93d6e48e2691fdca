"""``GET /api/v1/events``: live calls, referrals and visits as Server-Sent Events
(and ``quality``, the regulation line's figures of the day, from
:mod:`regulator.web.console.quality`).

Each client sees only the MMGs its role allows; it resumes after a reconnection
with ``Last-Event-ID``. A slow client only loses its own oldest events (bounded
queue in :mod:`regulator.bus`); shutdown ends every stream cleanly.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from regulator.bus import BusEvent, EventBus
from regulator.core.phone import mask
from regulator.errors import BadRequest, Forbidden
from regulator.events import CallRouted, Events, ReferralChanged, VisitRecorded
from regulator.web import keys
from regulator.web.access import principal
from regulator.web.schemas import referral_json, visit_json

HEARTBEAT_S = 15.0
SSE_CLIENTS: web.AppKey[set[web.StreamResponse]] = web.AppKey("sse_clients")


def _frame(event: BusEvent) -> bytes:
    data = orjson.dumps({"kind": event.kind, "mmg": event.mmg, **event.data})
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.id, event.kind.encode(), data)


def _last_event_id(request: web.Request) -> int | None:
    """Where a reconnecting client resumes: ``Last-Event-ID`` or ``?last_event_id``.

    ASCII digits only (``str.isdigit`` also accepts "²", which ``int`` refuses)."""
    field = "Last-Event-ID"
    raw = request.headers.get(field)
    if not raw:
        field, raw = "last_event_id", request.query.get("last_event_id")
    if not raw:
        return None
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise BadRequest(
            f"{field} doit être un identifiant d'événement (entier positif).",
            field=field,
            value=raw[:32],
        )
    return int(raw)


async def events(request: web.Request) -> web.StreamResponse:
    who = principal(request)
    only = request.query.get("mmg")
    if only is not None and not who.can_see(only):
        raise Forbidden(f"Le jeton « {who.name} » ne voit pas les événements de {only}.")

    def accept(event: BusEvent) -> bool:
        return who.can_see(event.mmg) and (only is None or event.mmg == only)

    last_id = _last_event_id(request)
    bus = request.config_dict[keys.BUS]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    clients = request.config_dict[SSE_CLIENTS]
    clients.add(response)
    sub = bus.subscribe(accept, last_id)
    try:
        await response.write("retry: 2000\n: connecté\n\n".encode())
        while True:
            try:
                event = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
            except TimeoutError:
                await response.write(b": ping\n\n")
                continue
            if event is None:  # shutdown
                break
            await response.write(_frame(event))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        bus.unsubscribe(sub)
        clients.discard(response)
    return response


def subscribe_sse(events: Events, bus: EventBus) -> None:
    """Routed calls (numbers masked), referral changes and visits to the live consoles."""

    def on_call(event: CallRouted) -> None:
        record, decision = event.record, event.decision
        bus.publish(
            "call",
            record.mmg,
            {
                "call_id": record.call_id,
                "caller": mask(record.caller),
                "first": event.first,
                "route": decision.route.value,
                "ground": decision.ground.value if decision.ground else None,
                "rule": decision.rule,
                "failsafe": decision.failsafe,
                "at": record.at.isoformat(),
            },
        )

    def on_referral(event: ReferralChanged) -> None:
        ref = event.referral
        bus.publish("referral", ref.mmg, {"event": event.event, "referral": referral_json(ref)})

    def on_visit(event: VisitRecorded) -> None:
        bus.publish("visit", event.visit.mmg, {"visit": visit_json(event.visit)})

    events.subscribe(CallRouted, on_call)
    events.subscribe(ReferralChanged, on_referral)
    events.subscribe(VisitRecorded, on_visit)
