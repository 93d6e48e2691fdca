"""The protocol page of an MMG: the next 14 days at a glance, the load warnings, the
version in force and the history of changes (``/console/protocols/{mmg}``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web

from regulator.core.history import ProtocolVersion
from regulator.core.plan import PlanDay, build_plan, day_heading, fmt_minutes
from regulator.core.protocol import Protocol, pds_hours_warnings, roster_gap_warnings
from regulator.logs import get_logger
from regulator.ports import StoreError
from regulator.web import keys
from regulator.web.access import Permission
from regulator.web.console.render import mmg_page_access, page, protocols

log = get_logger("regulator.consoles")

#: Days the timeline shows, from today (local date of the MMG).
TIMELINE_DAYS = 14
#: Versions listed on the page (the API gives more).
HISTORY_ROWS = 50


@dataclass(frozen=True, slots=True)
class Band:
    """One stretch of a day's timeline: ``x``/``width`` in minutes of a 1440 axis."""

    x: int
    width: int
    kind: str  # CSS class: open, override, closure
    label: str  # French, also the SVG <title>


@dataclass(frozen=True, slots=True)
class TimelineDay:
    key: str  # YYYY-MM-DD
    heading: str
    day_type: str
    special: bool  # holiday or bridge: highlighted
    bands: tuple[Band, ...]
    slots: tuple[str, ...]  # "20:00-24:00 — horaires hebdomadaires", readable list
    pharmacy: tuple[str, ...]
    open_label: str


def timeline_day(day: PlanDay) -> TimelineDay:
    bands: list[Band] = []
    slots: list[str] = []
    for slot in day.slots:
        span = f"{fmt_minutes(slot.start)}-{fmt_minutes(slot.end)}"
        kind = "override" if slot.source == "override" else "open"
        label = f"ouvert {span} — {slot.label}"
        if slot.direct_access:
            label += " (accès direct)"
        bands.append(Band(slot.start, slot.end - slot.start, kind, label))
        slots.append(label)
    for closure in day.closures:
        span = f"{fmt_minutes(closure.start)}-{fmt_minutes(closure.end)}"
        label = f"fermé {span} — dérogation « {closure.reason} »"
        bands.append(Band(closure.start, closure.end - closure.start, "closure", label))
        slots.append(label)
    pharmacy = tuple(
        f"{fmt_minutes(p.start)}-{fmt_minutes(p.end)} : "
        + (f"{p.name} ({p.number})" if p.name else f"aucune pharmacie au tableau ({p.number})")
        for p in day.pharmacy
    )
    hours, minutes = divmod(day.open_minutes, 60)
    open_label = f"{hours} h {minutes:02d}" if minutes else f"{hours} h"
    return TimelineDay(
        key=day.day.isoformat(),
        heading=day_heading(day),
        day_type=day.day_type.value,
        special=day.day_type.value in ("holiday", "bridge"),
        bands=tuple(sorted(bands, key=lambda b: b.x)),
        slots=tuple(sorted(slots)) or ("fermé toute la journée",),
        pharmacy=pharmacy,
        open_label=open_label if day.open_minutes else "fermé",
    )


def _local(moment: datetime, proto: Protocol) -> str:
    return moment.astimezone(proto.tz).strftime("%d/%m/%Y %H:%M")


async def protocol_page(request: web.Request) -> web.Response:
    """``GET /console/protocols/{mmg}``: coordinator, the MMG's desk, regulators."""
    access = mmg_page_access(request, Permission.PROTOCOL)
    if isinstance(access, web.Response):
        return access
    person, proto = access
    registry = request.config_dict[keys.PROTOCOLS]
    today = request.config_dict[keys.CLOCK].now().astimezone(proto.tz).date()
    plan = build_plan(proto, today, TIMELINE_DAYS)
    file = registry.current.files.get(proto.id, proto.id)
    warnings = [
        str(i) for i in (*pds_hours_warnings(proto, file), *roster_gap_warnings(proto, file))
    ]
    in_force = registry.versions().get(proto.id)
    history: list[ProtocolVersion] | None
    try:
        history = await request.config_dict[keys.STORE].protocol_history(
            proto.id, limit=HISTORY_ROWS
        )
    except (StoreError, OSError) as exc:
        log.warning("protocol_history_read_failed", mmg=proto.id, error=str(exc))
        history = None
    last_day = today + timedelta(days=TIMELINE_DAYS - 1)
    return page(
        request,
        person,
        "protocols.html",
        title=f"Protocole — {proto.name}",
        current="protocols",
        mmg=proto.id,
        name=proto.name,
        mmgs=[p for p in protocols(request) if person.can_report(p.id)],
        period=f"du {today:%d/%m/%Y} au {last_day:%d/%m/%Y}",
        timezone=proto.timezone,
        when_open=plan.when_open,
        when_closed=plan.when_closed,
        days=[timeline_day(day) for day in plan.days],
        warnings=warnings,
        version=in_force.version if in_force is not None else "",
        version_file=in_force.file if in_force is not None else file,
        version_sha=in_force.file_sha256 if in_force is not None else "",
        history=[
            {
                "version": v.version,
                "loaded_at": _local(v.loaded_at, proto),
                "summary": v.summary,
                "current": in_force is not None and v.version == in_force.version,
            }
            for v in history or ()
        ],
        history_error=history is None,
        history_api=f"/api/v1/protocols/{proto.id}/history",
        hours=[0, 4, 8, 12, 16, 20, 24],
    )
