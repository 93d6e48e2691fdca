"""The regulation and front-desk consoles, the MMGs' state now, the French 404."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from aiohttp import web

from regulator.auth import Principal
from regulator.core.labels import (
    AGE_BANDS,
    CHANNEL_LABELS,
    DAY_TYPE_NAMES,
    DESK_GROUND_LABELS,
    OUTCOME_LABELS,
    URGENCIES,
)
from regulator.core.models import Ground, ReferralStatus, VisitChannel
from regulator.core.phone import is_short_code
from regulator.core.protocol import Protocol
from regulator.core.referrals import CONFIRMED_URGENCIES, ON_THE_DESK, OPEN_STATUSES
from regulator.errors import Unavailable
from regulator.logs import get_logger
from regulator.ports import StoreError
from regulator.web import keys
from regulator.web.access import Permission, principal, require_mmg
from regulator.web.console.quality import COLUMNS as QUALITY_COLUMNS
from regulator.web.console.quality import rows_today
from regulator.web.console.render import (
    denied,
    display_number,
    error_page,
    mmg_page_access,
    page,
    protocols,
    to_login,
    who,
)
from regulator.web.middlewares import json_response

log = get_logger("regulator.consoles")

#: The visit form's channels: a person sent by centre 15 / SAS whose referral is not in
#: this system is recorded here as ``regulation`` (counted as regulated).
#: Direct access first (the form's default: a regulated person is a deliberate choice).
WALK_IN_CHANNELS = tuple(
    (c.value, CHANNEL_LABELS[c])
    for c in (
        VisitChannel.DIRECT,
        VisitChannel.REGULATION,
        VisitChannel.EMERGENCY_REORIENTATION,
        VisitChannel.OTHER,
    )
)
#: The visit form's tiers payant choice: by default the circular's rule decides.
TIERS_PAYANT_OPTIONS = (
    ("", "Selon la règle : oui si adressé(e) par la régulation, non sinon"),
    ("true", "Oui (accordé explicitement)"),
    ("false", "Non (écarté explicitement)"),
)
OUTCOME_OPTIONS = tuple((o.value, label) for o, label in OUTCOME_LABELS.items())
URGENCY_OPTIONS = tuple((u, u) for u in URGENCIES)


def mmg_state(proto: Protocol, now: datetime) -> dict[str, Any]:
    """Open/closed now and the pharmacy on duty now, for the consoles (JSON-ready)."""
    state = proto.schedule.state(now)
    pharmacy = proto.destinations.pharmacy
    entry = pharmacy.on_duty(state.local.replace(tzinfo=None))
    if entry is not None:
        number = entry.number
        name: str | None = entry.name
    else:
        number = pharmacy.fallback
        name = None
    return {
        "mmg": proto.id,
        "name": proto.name,
        "timezone": proto.timezone,
        "open": state.open,
        "state_label": "Ouverte" if state.open else "Fermée",
        "reason": state.reason,
        "day_type": state.day_type.value,
        "day_type_label": DAY_TYPE_NAMES[state.day_type],
        "local_time": state.local.strftime("%H:%M"),
        "direct_access": state.direct_access,
        "pharmacy_name": name,
        "pharmacy_number": number,
        "pharmacy_display": display_number(number),
        "pharmacy_short_code": is_short_code(number),
    }


# --------------------------------------------------------------- regulation


async def regulation_page(request: web.Request) -> web.Response:
    """``GET /console/regulation``: calls, MMG states, referral form and list."""
    person = who(request)
    if person is None:
        return to_login(request)
    if not person.is_regulator:
        return denied(request, person, "la console de régulation (rôle « regulator »)")
    now = request.config_dict[keys.CLOCK].now()
    protos = [p for p in protocols(request) if person.can_regulate(p.id)]
    return page(
        request,
        person,
        "regulation.html",
        title="Console de régulation",
        scripts=("common.js", "regulation.js"),
        current="regulation",
        rows=[(proto, mmg_state(proto, now)) for proto in protos],
        quality=await rows_today(request, protos),
        quality_columns=QUALITY_COLUMNS,
        age_bands=AGE_BANDS,
        urgencies=URGENCY_OPTIONS,
        confirmed_urgencies=sorted(CONFIRMED_URGENCIES),
        short_abandon_s=f"{request.config_dict[keys.SETTINGS].short_abandon_s:g}",
    )


# --------------------------------------------------------------- front desk


async def _desk_summary(request: web.Request, proto: Protocol) -> dict[str, int]:
    """Today's counters of one front desk (MMG's local day)."""
    store = request.config_dict[keys.STORE]
    local = request.config_dict[keys.CLOCK].now().astimezone(proto.tz)
    refs = await store.list_referrals(mmg=proto.id, statuses=ON_THE_DESK, limit=1000)
    today: date = local.date()
    visits = [
        v
        for v in await store.visits(proto.id, local.strftime("%Y-%m"))
        if v.at.astimezone(proto.tz).date() == today
    ]
    return {
        "pending": sum(1 for r in refs if r.status in OPEN_STATUSES),
        "arrived": sum(1 for r in refs if r.status is ReferralStatus.ARRIVED),
        "visits_today": len(visits),
        "via_regulation_today": sum(1 for v in visits if v.channel is VisitChannel.REGULATION),
    }


#: A call put through to the desk on no known ground (it should not happen).
DIRECT_ACCESS_LABEL = "Appel transféré à l'accueil"


def desk_grounds(proto: Protocol) -> tuple[tuple[str, str], ...]:
    """(ground, the desk card's heading) for each ground of a call put through to the
    desk; the overflow's says after how long, as the MMG's protocol sets it."""
    overflow = proto.routing.direct_access.regulation_overflow
    out = [("", DIRECT_ACCESS_LABEL)]
    for ground, label in DESK_GROUND_LABELS.items():
        if ground is Ground.REGULATION_OVERFLOW and overflow is not None:
            label = f"{label} en {overflow.after_s} s"
        out.append((ground.value, label))
    return tuple(out)


def _desk_access(request: web.Request) -> tuple[Principal, Protocol]:
    """For the desk's JSON endpoints: errors are JSON (the route table says so)."""
    return require_mmg(request, Permission.DESK)


async def desk_page(request: web.Request) -> web.Response:
    """``GET /console/desk/{mmg}``: incoming referrals, walk-in visits, today's counters."""
    access = mmg_page_access(request, Permission.DESK)
    if isinstance(access, web.Response):
        return access
    person, proto = access
    try:
        summary: Mapping[str, object] = await _desk_summary(request, proto)
    except (StoreError, OSError) as exc:
        log.warning("desk_summary_failed", mmg=proto.id, error=str(exc))
        summary = dict.fromkeys(("pending", "arrived", "visits_today", "via_regulation_today"), "—")
    return page(
        request,
        person,
        "desk.html",
        title=f"Accueil — {proto.name}",
        scripts=("common.js", "desk.js"),
        current=f"desk:{proto.id}",
        mmg=proto.id,
        name=proto.name,
        tz=proto.timezone,
        state=mmg_state(proto, request.config_dict[keys.CLOCK].now()),
        summary=summary,
        channels=WALK_IN_CHANNELS,
        tiers_payant_options=TIERS_PAYANT_OPTIONS,
        outcomes=OUTCOME_OPTIONS,
        age_bands=AGE_BANDS,
        on_the_desk=sorted(ON_THE_DESK),
        grounds=desk_grounds(proto),
    )


async def desk_summary(request: web.Request) -> web.Response:
    """``GET /console/desk/{mmg}/summary.json``: the counters, refreshed by the page."""
    _, proto = _desk_access(request)
    try:
        return json_response(await _desk_summary(request, proto))
    except (StoreError, OSError) as exc:
        raise Unavailable("Stockage indisponible ; nouvel essai dans un instant.") from exc


async def state_json(request: web.Request) -> web.Response:
    """``GET /console/state.json``: open/closed and pharmacy now, for the visible MMGs."""
    person = principal(request)
    now = request.config_dict[keys.CLOCK].now()
    states = [mmg_state(p, now) for p in protocols(request) if person.can_see(p.id)]
    return json_response({"at": now.isoformat(), "mmgs": states})


async def not_found(request: web.Request) -> web.Response:
    """Any other ``/console/…`` path: a French 404 page."""
    return error_page(
        request, who(request), 404, "Page introuvable", "Cette page de la console n'existe pas."
    )
