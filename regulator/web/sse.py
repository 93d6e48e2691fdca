"""``GET /api/v1/events``: live calls, referrals and visits as Server-Sent Events.

Each client sees only the MMGs its role allows; it resumes after a reconnection
with ``Last-Event-ID``. A slow client only loses its own oldest events (bounded
queue in :mod:`regulator.bus`); shutdown ends every stream cleanly.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from regulator.bus import BusEvent, EventBus
from regulator.calls import CallListener
from regulator.core.models import CallRecord, Decision
from regulator.core.phone import mask
from regulator.errors import BadRequest
from regulator.web import keys
from regulator.web.api import principal

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
        from regulator.errors import Forbidden

        raise Forbidden(f"Le jeton « {who.name} » ne voit pas les événements de {only}.")

    def accept(event: BusEvent) -> bool:
        return who.can_see(event.mmg) and (only is None or event.mmg == only)

    last_id = _last_event_id(request)
    bus = request.app[keys.BUS]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    clients = request.app[SSE_CLIENTS]
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


def call_publisher(bus: EventBus) -> CallListener:
    """A CallRouter listener that publishes each routed call (numbers masked)."""

    def publish(record: CallRecord, decision: Decision, first: bool) -> None:
        bus.publish(
            "call",
            record.mmg,
            {
                "call_id": record.call_id,
                "caller": mask(record.caller),
                "first": first,
                "route": decision.route.value,
                "ground": decision.ground.value if decision.ground else None,
                "rule": decision.rule,
                "failsafe": decision.failsafe,
                "at": record.at.isoformat(),
            },
        )

    return publish


def setup_sse(app: web.Application) -> None:
    app[SSE_CLIENTS] = set()
    app.router.add_get("/api/v1/events", events)
    listener = call_publisher(app[keys.BUS])
    app[keys.ROUTER].listeners.append(listener)
