"""Kamailio (``http_client`` + ``rtjson``): shared-secret header, JSON request, routing document.

Kamailio posts ``{"call_id": "$ci", "from": "$fU", "to": "$rU", "source_ip": "$si"}``
with ``X-Regulator-Secret`` and routes the INVITE with the ``rtjson`` document we
return: serial forking over ``routes`` (``rtjson_init_routes`` / ``rtjson_push_routes``,
``rtjson_next_route`` in the failure route, ``rtjson_update_branch`` in the branch route
to apply ``headers.extra`` and ``fr_inv_timer``).

Kamailio has no voice menu and cannot play our messages: the web layer decides with
``Stage.DIGITS`` and no digits (the menu default), and a destination that can only be
announced (short codes) is replaced by the regulation line. The regulation line always
closes the list, as the failover of whatever comes first.

Every route must be one Kamailio can relay: a number becomes a route only through a
configured SIP gateway (``REGULATOR_SIP_GATEWAY``), never through a placeholder host.
The deploy script moves on past a route that fails anyway (a gateway that does not
resolve) and ends on its own ``REGULATION_URI``; :func:`unreachable_destinations` lets
``check-protocols`` and ``serve`` name the destinations Kamailio cannot reach.
"""

from __future__ import annotations

import orjson

from regulator.core import phone
from regulator.core.legs import LegEvent
from regulator.core.models import Call, Decision, Destination, Platform, Route, Stage
from regulator.core.protocol import Destination as ProtocolDestination
from regulator.core.protocol import Protocol
from regulator.platforms import _common as f
from regulator.platforms.base import (
    Answer,
    CallEvent,
    HookRequest,
    RenderContext,
    SignatureError,
)

CONTENT_TYPE = "application/json"

SECRET_HEADER = "x-regulator-secret"  # noqa: S105 (a header name, not a secret)
ROUTE_HEADER = "X-Regulator-Route"

_EMPTY = orjson.dumps({"version": "1.0", "routing": "serial", "routes": []})


def verify(req: HookRequest, secret: str) -> None:
    """Raise :class:`SignatureError` unless ``X-Regulator-Secret`` is the shared secret."""
    if not secret:
        raise SignatureError("Kamailio secret not configured")
    f.check_shared_secret(req.headers.get(SECRET_HEADER), "X-Regulator-Secret", secret)


def parse_call(req: HookRequest, stage: Stage) -> Call:
    """The routing request as a Call (``from``/``to`` are SIP user parts)."""
    return f.json_call(req.body, Platform.KAMAILIO, stage)[0]


def parse_event(req: HookRequest) -> CallEvent:
    """A call event posted by the Kamailio script (same shape as the generic one):
    ``{"call_id", "status", "duration_s"?, "target"?}``."""
    data = f.json_object(req.body)
    return CallEvent(
        call_id=f.required(data.get("call_id"), "call_id"),
        status=f.status(data.get("status"), "status"),
        duration_s=f.duration(data.get("duration_s"), "duration_s"),
        target=f.target(data.get("target")),
        caller=f.text(data.get("from"), "from"),
        called=f.text(data.get("to"), "to"),
    )


def _uris(destination: Destination | None, sip_gateway: str | None) -> list[str]:
    """SIP URIs for a destination: its own SIP URI first, then its number via the gateway
    (none without a gateway: a URI Kamailio cannot relay is never emitted)."""
    if destination is None or not destination.dialable:
        return []
    uris: list[str] = []
    if destination.sip and destination.sip.lower().startswith(("sip:", "sips:")):
        uris.append(destination.sip)
    if destination.number and sip_gateway:
        uris.append(f"sip:{destination.number}@{sip_gateway}")
    return uris


def render(decision: Decision, ctx: RenderContext) -> Answer:
    """The decision as an ``rtjson`` document.

    ``ctx.regulation`` is the MMG's regulation line (centre 15 / SAS): it ends the route
    list as failover (its SIP URI, then its number through the gateway), and replaces
    destinations Kamailio cannot reach. Numbers are sent as ``sip:<E.164>@<sip_gateway>``
    only when a gateway is configured; without one, a destination known only by number
    gives no route, and a regulation line known only by number leaves the failover to
    the script's ``REGULATION_URI`` (``ctx.sip_gateway``). ``ctx.urls`` is unused (no
    callbacks in rtjson).
    """
    sip_gateway, regulation = ctx.sip_gateway, ctx.regulation
    first_route = decision.route
    first = _uris(decision.destination, sip_gateway)
    if not first:
        # Menu, announcement or nothing dialable: Kamailio can only send the call on.
        first_route = Route.REGULATION
        first = _uris(regulation, sip_gateway)
    failover = _uris(regulation, sip_gateway)

    routes: list[dict[str, object]] = []
    seen: set[str] = set()
    for uris, route, timed in ((first, first_route, True), (failover, Route.REGULATION, False)):
        for uri in uris:
            if uri in seen:
                continue
            seen.add(uri)
            entry: dict[str, object] = {
                "uri": uri,
                "headers": {"extra": f"{ROUTE_HEADER}: {route.value}\r\n"},
            }
            if timed and decision.dial_timeout_s:
                # Ring time before failing over, in ms (tm's fr_inv_timer for this branch).
                entry["fr_inv_timer"] = decision.dial_timeout_s * 1000
            routes.append(entry)

    document: dict[str, object] = {"version": "1.0", "routing": "serial", "routes": routes}
    if not routes:
        # Nothing routable (e.g. no SIP URI, no gateway): the script should reject the
        # call; tell it what the caller should dial instead. rtjson ignores this field.
        announce = (decision.destination.announce if decision.destination else None) or "15"
        document["announce"] = announce
    return Answer(orjson.dumps(document), CONTENT_TYPE)


def render_hangup() -> Answer:
    """An ``rtjson`` document with no routes: the Kamailio script rejects the call."""
    return Answer(_EMPTY, CONTENT_TYPE)


def _unreachable(destination: ProtocolDestination, sip_gateway: str | None) -> bool:
    """A dialable destination with neither a SIP URI nor a gateway for its number."""
    if destination.sip is not None or destination.number is None:
        return False
    return sip_gateway is None and not phone.is_short_code(destination.number)


def unreachable_destinations(protocol: Protocol, sip_gateway: str | None) -> list[str]:
    """Names of the protocol's destinations a Kamailio call can be sent to but Kamailio
    cannot ring: a long number, no SIP URI, no gateway. Their calls go on to the next
    route (the regulation line, else ``REGULATION_URI``) instead.

    Kamailio has no voice menu, so the pharmacy is reached only as the menu's default
    choice; short codes are never dialled on any platform (they are announced).
    """
    destinations = protocol.destinations
    names = [
        name
        for name, destination in (
            ("regulation", destinations.regulation),
            ("front_desk", destinations.front_desk),
        )
        if _unreachable(destination, sip_gateway)
    ]
    routing = protocol.routing
    if routing.when_open == "menu" and routing.menu and routing.menu.default == "pharmacy":
        pharmacy = destinations.pharmacy
        numbers = [entry.number for entry in pharmacy.roster] + [pharmacy.fallback]
        if sip_gateway is None and any(not phone.is_short_code(n) for n in numbers):
            names.append("pharmacy")
    return names


def parse_leg(req: HookRequest) -> LegEvent | None:
    """The dial-leg report of a callback (core/legs.py); None: this one reports none.

    Not reported by this adapter yet (issue 17): no leg figures from this platform."""
    return None
