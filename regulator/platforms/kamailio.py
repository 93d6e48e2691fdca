"""Kamailio (``http_client`` + ``rtjson``): shared-secret header, JSON request, routing document.

Kamailio posts ``{"call_id": "$ci", "from": "$fU", "to": "$rU", "source_ip": "$si"}``
with ``X-Regulator-Secret`` and routes the INVITE with the ``rtjson`` document we
return: serial forking over ``routes`` (``rtjson_init_routes`` / ``rtjson_push_routes``,
``rtjson_next_route`` in the failure route, ``rtjson_update_branch`` in the branch route
to apply ``headers.extra`` and ``fr_inv_timer``). The document's ``targets`` field
(ignored by rtjson) names the target of each route, in order, ``|``-separated: the
script keeps the target of each branch it sends, and names it in the dial-leg
notifications it posts to ``/hooks/kamailio/event`` (:func:`parse_leg`). Routes to
the regulation line carry ``X-Regulator-Origin`` (:func:`origin_header`): centre 15's
PBX learns which MMG the call comes from.

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

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Final

import orjson

from regulator.core import phone
from regulator.core.legs import LegEvent, LegStatus
from regulator.core.models import (
    Call,
    Decision,
    Destination,
    Platform,
    Route,
    Stage,
)
from regulator.core.protocol import Destination as ProtocolDestination
from regulator.core.protocol import Protocol
from regulator.platforms import _common as f
from regulator.platforms.base import (
    Answer,
    BadHookRequest,
    CallEvent,
    HookRequest,
    RenderContext,
    SignatureError,
)

CONTENT_TYPE = "application/json"

SECRET_HEADER = "x-regulator-secret"  # noqa: S105 (a header name, not a secret)
ROUTE_HEADER = "X-Regulator-Route"
ORIGIN_HEADER = "X-Regulator-Origin"
#: Separates the routes' targets in the document's ``targets`` field (the script
#: picks its branch's with ``{s.select,INDEX,|}``).
TARGETS_SEPARATOR = "|"

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
    callbacks in rtjson: the script posts dial-leg events to its own event URL).

    ``targets`` lists each route's target in route order (``direct_access|regulation``);
    routes to the regulation line add ``X-Regulator-Origin`` (``decision.mmg`` and
    ``ctx.mmg_name``).
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
    targets: list[str] = []
    seen: set[str] = set()
    origin = origin_header(decision.mmg, ctx.mmg_name)
    for uris, route, timed in ((first, first_route, True), (failover, Route.REGULATION, False)):
        for uri in uris:
            if uri in seen:
                continue
            seen.add(uri)
            extra = f"{ROUTE_HEADER}: {route.value}\r\n"
            if route is Route.REGULATION and origin:
                extra += f"{ORIGIN_HEADER}: {origin}\r\n"
            entry: dict[str, object] = {"uri": uri, "headers": {"extra": extra}}
            if timed and decision.dial_timeout_s:
                # Ring time before failing over, in ms (tm's fr_inv_timer for this branch).
                entry["fr_inv_timer"] = decision.dial_timeout_s * 1000
            routes.append(entry)
            targets.append(route.value)

    document: dict[str, object] = {"version": "1.0", "routing": "serial", "routes": routes}
    if targets:
        document["targets"] = TARGETS_SEPARATOR.join(targets)
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


# ------------------------------------------------------------------ origin header

_ORIGIN_NAME_CHARS: Final = 120
_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,64}")


#: Letters NFKD does not decompose, spelled out as French writes them without ligature.
_LIGATURES: Final = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss"})


def _ascii(text: str) -> str:
    """``text`` in printable ASCII: accents dropped (é → e), ligatures spelled out
    (œ → oe), anything else removed, quotes and backslashes too (it goes into a SIP
    quoted-string)."""
    kept: list[str] = []
    for c in unicodedata.normalize("NFKD", text.translate(_LIGATURES)):
        if " " <= c <= "~":
            kept.append(c if c not in '"\\' else "")
        elif c.isspace() or unicodedata.category(c).startswith("C"):
            kept.append(" ")  # a line break or a control still separates words
    return " ".join("".join(kept).split())


def origin_header(mmg: str | None, name: str | None) -> str | None:
    """The value of ``X-Regulator-Origin`` for a call of ``mmg``, None without one:
    ``mmg=nimes; name="Maison medicale de garde de Nimes"``.

    ASCII only (a PBX may log or display it as bytes): the name loses its accents,
    quotes and control characters, and is cut at 120 characters; an MMG id that is
    not a plain token (never, for protocols that load) gives no header.
    """
    if not mmg or not _TOKEN.fullmatch(mmg):
        return None
    value = f"mmg={mmg}"
    clean = _ascii(name)[:_ORIGIN_NAME_CHARS].strip() if name else ""
    if clean:
        value += f'; name="{clean}"'
    return value


# ------------------------------------------------------------------ dial legs

#: What the script reports (``event``), and the status each gives before the SIP
#: code refines a failure.
EVENTS: Final[dict[str, LegStatus]] = {
    "offered": LegStatus.OFFERED,  # the branch's INVITE is sent: the line's wait starts
    "ringing": LegStatus.RINGING,  # first 180/183 of a branch
    "answered": LegStatus.ANSWERED,  # 200 OK to the INVITE
    "failed": LegStatus.FAILED,  # the branch's final failure (code, timeout)
    "cancel": LegStatus.ABANDONED,  # the caller's CANCEL before the answer
    "bye": LegStatus.COMPLETED,  # a BYE in the answered dialog
}
#: SIP codes of a destination that refused (busy here, busy everywhere, declined).
BUSY_CODES: Final = frozenset({486, 600, 603})
#: SIP codes of a destination that rang out (request timeout, temporarily unavailable).
NO_ANSWER_CODES: Final = frozenset({408, 480})

_TIME = re.compile(r"([0-9]{1,12})(?:\.([0-9]{1,9}))?")
_CODE = re.compile(r"[0-9]{3}")
#: How far Kamailio's clock may be from ours before a time is refused: the script
#: posts within seconds of the SIP event (a queue bounded in size, a 1 s timeout).
_MAX_AHEAD_S: Final = 3600.0
_MAX_BEHIND_S: Final = 7 * 86400.0


def _time(value: object, field: str, now: float) -> datetime:
    """Kamailio's ``$TV(Sn)`` (``"1764581083.123456"``, ASCII digits only), or a whole
    number of seconds, as an aware UTC datetime; ``now`` (receipt) when absent."""
    if value is None or value == "":
        return datetime.fromtimestamp(now, UTC)
    if isinstance(value, bool):
        raise BadHookRequest(field, "expected Unix seconds (digits, optional .fraction)")
    if isinstance(value, int):
        raw = str(value)
    elif isinstance(value, str):
        raw = value.strip()
    else:
        raise BadHookRequest(field, "expected Unix seconds (digits, optional .fraction)")
    match = _TIME.fullmatch(raw)
    if match is None:
        raise BadHookRequest(field, "expected Unix seconds (ASCII digits, optional .fraction)")
    seconds = int(match.group(1))
    if not now - _MAX_BEHIND_S <= seconds <= now + _MAX_AHEAD_S:
        raise BadHookRequest(field, "too far from the current time (check Kamailio's clock)")
    micros = int((match.group(2) or "0")[:6].ljust(6, "0"))
    return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=micros)


def _code(value: object, field: str) -> int | None:
    """A SIP status code (100–699) as a JSON number or ASCII digits; None if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadHookRequest(field, "expected a SIP status code")
    if isinstance(value, int):
        code = value
    elif isinstance(value, str) and _CODE.fullmatch(value.strip()):
        code = int(value.strip())
    else:
        raise BadHookRequest(field, "expected a SIP status code")
    if not 100 <= code <= 699:
        raise BadHookRequest(field, "not a SIP status code (100-699)")
    return code


def _failure(code: int | None, timeout: bool, replied: bool) -> LegStatus:
    """A branch's final failure: rang out, refused, or could not be reached."""
    if not replied:
        # Nothing came back (tm's reply timer, an unresolvable host): not reached.
        return LegStatus.FAILED
    if timeout or code in NO_ANSWER_CODES:
        # A 487 after our own ring timer (tm cancels the branch) is a no-answer too.
        return LegStatus.NO_ANSWER
    if code in BUSY_CODES:
        return LegStatus.BUSY
    return LegStatus.FAILED


def parse_leg(req: HookRequest) -> LegEvent | None:
    """The dial-leg notification the script posts to ``/hooks/kamailio/event``:
    ``{"call_id": "$ci", "target": "regulation", "event": "ringing", "code": 180,
    "timeout": false, "replied": true, "at": "$TV(Sn)"}``.

    ``event``: ``offered`` (the branch's INVITE is sent) → offered; ``ringing`` (first
    180/183 of a branch) → ringing; ``answered`` (200) →
    answered; ``cancel`` (the caller's CANCEL before the answer) → abandoned; ``bye``
    → completed; ``failed`` (the branch's final failure) → failed when nothing came
    back from the destination (``replied`` false: silent, unresolvable), else busy for
    486/600/603, no-answer for 408/480 or after the ring timer (``timeout``), failed
    otherwise.
    ``call_id`` is the SIP Call-ID the route hook received; ``target`` one of the
    document's ``targets``; ``at`` Kamailio's own clock (receipt time when absent).
    The MMG is the call's (filled by the router from the route history).
    """
    data = f.json_object(req.body)
    call_id = f.required(data.get("call_id"), "call_id")
    target = f.leg_target(data.get("target"))
    event = f.required(data.get("event"), "event").lower()
    status = EVENTS.get(event)
    if status is None:
        raise BadHookRequest("event", f"expected one of {', '.join(EVENTS)}")
    code = _code(data.get("code"), "code")
    timeout = data.get("timeout", False)
    if not isinstance(timeout, bool):
        raise BadHookRequest("timeout", "expected true or false")
    replied = data.get("replied", True)
    if not isinstance(replied, bool):
        raise BadHookRequest("replied", "expected true or false")
    if status is LegStatus.FAILED:
        if code is None and not timeout:
            raise BadHookRequest("code", "missing (the final failure's SIP code)")
        if code is not None and code < 300:
            raise BadHookRequest("code", "not a failure (expected 300-699)")
        status = _failure(code, timeout, replied)
    elif status is LegStatus.RINGING and code is not None and not 100 < code < 200:
        raise BadHookRequest("code", "not a provisional reply (expected 180 or 183)")
    elif status is LegStatus.ANSWERED and code is not None and not 200 <= code < 300:
        raise BadHookRequest("code", "not an answer (expected 200)")
    return LegEvent(
        call_id=call_id,
        target=target,
        status=status,
        at=_time(data.get("at"), "at", req.now),
        platform=Platform.KAMAILIO.value,
    )
