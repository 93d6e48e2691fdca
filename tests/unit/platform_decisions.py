"""Every decision the service can hand an adapter, for the rendering tests of the
Asterisk, FreeSWITCH, jambonz and Telnyx adapters (each renders all of them)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from regulator.core.decision import decide, failsafe
from regulator.core.models import Call, Decision, DecisionContext, Platform, Route, Stage
from regulator.core.protocol import Protocol
from regulator.protocols import load_protocol_file
from tests.unit.helpers import PROTOCOLS_DIR, variant

#: A week in November (pharmacy rosters, open and closed hours) and Christmas day.
_WEEK = [datetime(2026, 11, 21) + timedelta(hours=h) for h in range(0, 8 * 24, 1)]
_HOLIDAY = [datetime(2026, 12, 25, 10), datetime(2026, 12, 25, 21)]


def _protocols() -> list[Protocol]:
    examples = [load_protocol_file(p) for p in sorted(PROTOCOLS_DIR.glob("*.yaml"))]
    sip_only = [
        variant(
            p.id,
            **{
                "destinations.regulation": {"sip": "sip:sas@regulation.example"},
                "destinations.front_desk": {"sip": "sip:accueil@mmg.example"},
            },
        )
        for p in examples
    ]
    return [*examples, *sip_only]


def _calls(proto: Protocol) -> Iterator[tuple[Call, DecisionContext]]:
    menu = proto.routing.menu
    keys = [*(menu.options if menu else ()), "9", None]
    number = proto.numbers[0]
    for caller in ["+33612000001", "", *proto.routing.direct_access.professionals[:1]]:
        for pending in (False, True):
            ctx = DecisionContext(pending_referral=pending)
            yield Call("c", caller, number, Platform.GENERIC, Stage.INCOMING), ctx
            for digits in keys:
                yield Call("c", caller, number, Platform.GENERIC, Stage.DIGITS, digits), ctx
            for failed in (None, *Route):
                ctx = DecisionContext(pending_referral=pending, failed_route=failed)
                yield Call("c", caller, number, Platform.GENERIC, Stage.DIAL_FAILED), ctx


@cache
def every_decision() -> tuple[Decision, ...]:
    """The distinct decisions of the example protocols over a week, plus the fail-safes
    (with a protocol, with only REGULATOR_FAILSAFE_NUMBER, with nothing: announce 15)."""
    seen: dict[Decision, None] = {}
    for proto in _protocols():
        zone = ZoneInfo(proto.timezone)
        for local in (*_WEEK, *_HOLIDAY):
            now = local.replace(tzinfo=zone)
            for call, ctx in _calls(proto):
                seen.setdefault(decide(proto, call, now, ctx))
        seen.setdefault(failsafe(proto, "internal_error"))
    for reason in ("bad_request", "internal_error", "unknown_number"):
        seen.setdefault(failsafe(None, reason, "+33466000099"))
        seen.setdefault(failsafe(None, reason))
    return tuple(seen)


def failsafes() -> list[Decision]:
    """The fail-safe decisions of :func:`every_decision` (the answer to any error)."""
    return [d for d in every_decision() if d.failsafe]
