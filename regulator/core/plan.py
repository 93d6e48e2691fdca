"""The plan of an MMG at a glance: ``regulator calendar`` (DESIGN.md §3).

:func:`build_plan` is a pure function of a protocol and a range of local dates. For
each day: its type (and the holiday's French name), every opening slot with where it
comes from (weekly hours, holiday or bridge hours, a dated period, an override and
its reason), the hours an override closes, the pharmacy on duty for each stretch of
the day, and the length of the day and of its opening in real time (23 h and 25 h on
daylight-saving nights). The routing a caller gets when open and when closed is
described once, in French (:func:`routing_text`).

Opening is computed on wall-clock minutes exactly as :meth:`Schedule.state` decides
a call — base slots of the day, then the overrides, the last one winning — so the
plan and the decisions cannot disagree (tests check both at every quarter hour).

:func:`to_ics` exports the opening hours as iCalendar events for staff calendars.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from regulator.core.calendar import DAY_TYPES_FR, WEEKDAYS_FR, holiday_name, weekly_kind
from regulator.core.models import DayType
from regulator.core.protocol import Protocol

DAY_MINUTES = 24 * 60

#: Where a slot comes from (the ``source`` of a :class:`PlanSlot`).
SOURCES = ("weekly", "holiday", "bridge", "period", "override")


@dataclass(frozen=True, slots=True)
class PlanSlot:
    """Opening hours of one day, ``[start, end)`` in minutes since local midnight."""

    start: int
    end: int
    source: str  # one of SOURCES
    label: str  # French: "horaires hebdomadaires (samedi)", "dérogation « … »"
    reason: str | None = None  # the override's reason or the period's name
    direct_access: bool = False  # an override declaring an influx with direct access


@dataclass(frozen=True, slots=True)
class PlanClosure:
    """Hours of one day an override declares closed."""

    start: int
    end: int
    reason: str


@dataclass(frozen=True, slots=True)
class PharmacyStretch:
    """Who answers the pharmacy choice over part of a day (None: the national line)."""

    start: int
    end: int
    name: str | None
    number: str


@dataclass(frozen=True, slots=True)
class PlanDay:
    day: date
    day_type: DayType
    holiday: str | None
    slots: tuple[PlanSlot, ...]
    closures: tuple[PlanClosure, ...]
    pharmacy: tuple[PharmacyStretch, ...]
    hours: int  # real length of the day: 23 or 25 on daylight-saving nights
    open_minutes: int  # real time open (a slot over a clock change is an hour off)


@dataclass(frozen=True, slots=True)
class Plan:
    mmg: str
    name: str
    timezone: str
    days: tuple[PlanDay, ...]
    when_open: str
    when_closed: str


def fmt_minutes(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# --------------------------------------------------------------------------- plan


def build_plan(protocol: Protocol, start: date, days: int) -> Plan:
    """The plan of ``days`` local dates from ``start``."""
    when_open, when_closed = routing_text(protocol)
    return Plan(
        mmg=protocol.id,
        name=protocol.name,
        timezone=protocol.timezone,
        days=tuple(plan_day(protocol, start + timedelta(days=i)) for i in range(days)),
        when_open=when_open,
        when_closed=when_closed,
    )


def plan_day(protocol: Protocol, day: date) -> PlanDay:
    schedule = protocol.schedule
    base = schedule.plan(day)
    label, reason = _base_label(base.kind, base.period, day)
    midnight = datetime(day.year, day.month, day.day)
    overrides = [
        (max(_minute(o.from_, midnight), 0), min(_minute(o.to, midnight), DAY_MINUTES), o)
        for o in protocol.opening.overrides
    ]
    overrides = [(a, b, o) for a, b, o in overrides if a < b]
    edges = {0, DAY_MINUTES}
    edges.update(m for slot in base.slots for m in slot)
    edges.update(m for a, b, _ in overrides for m in (a, b))
    cuts = sorted(edges)

    slots: list[PlanSlot] = []
    closures: list[PlanClosure] = []
    for a, b in itertools.pairwise(cuts):
        override = next((o for s, e, o in reversed(overrides) if s <= a and b <= e), None)
        if override is not None:
            if override.open:
                _extend_slot(
                    slots,
                    PlanSlot(
                        a,
                        b,
                        "override",
                        f"dérogation « {override.reason} »",
                        override.reason,
                        override.direct_access,
                    ),
                )
            else:
                _extend_closure(closures, PlanClosure(a, b, override.reason))
        elif any(s <= a and b <= e for s, e in base.slots):
            _extend_slot(slots, PlanSlot(a, b, base.kind, label, reason))
    return PlanDay(
        day=day,
        day_type=base.day_type,
        holiday=holiday_name(day, protocol.calendar.subdiv),
        slots=tuple(slots),
        closures=tuple(closures),
        pharmacy=tuple(_pharmacy(protocol, midnight)),
        hours=_real_minutes(protocol, day, 0, DAY_MINUTES) // 60,
        open_minutes=sum(_real_minutes(protocol, day, s.start, s.end) for s in slots),
    )


def _base_label(kind: str, period: str | None, day: date) -> tuple[str, str | None]:
    if kind == "holiday":
        return "horaires des jours fériés", None
    if kind == "bridge":
        return "horaires des ponts (art. R.6315-1)", None
    weekly = DAY_TYPES_FR[weekly_kind(day)]
    if kind == "period":
        return f"période « {period} » ({weekly})", period
    return f"horaires hebdomadaires ({weekly})", None


def _minute(moment: datetime, midnight: datetime) -> int:
    """Minutes from ``midnight`` to a local wall-clock time (may be out of the day)."""
    delta = moment - midnight
    return int(delta.total_seconds() // 60)


def _extend_slot(slots: list[PlanSlot], slot: PlanSlot) -> None:
    last = slots[-1] if slots else None
    if (
        last is not None
        and last.end == slot.start
        and (
            last.source,
            last.label,
            last.direct_access,
        )
        == (slot.source, slot.label, slot.direct_access)
    ):
        slots[-1] = PlanSlot(
            last.start, slot.end, last.source, last.label, last.reason, last.direct_access
        )
    else:
        slots.append(slot)


def _extend_closure(closures: list[PlanClosure], closure: PlanClosure) -> None:
    last = closures[-1] if closures else None
    if last is not None and last.end == closure.start and last.reason == closure.reason:
        closures[-1] = PlanClosure(last.start, closure.end, last.reason)
    else:
        closures.append(closure)


def _pharmacy(protocol: Protocol, midnight: datetime) -> Iterator[PharmacyStretch]:
    """The day cut into roster stretches, holes filled with the national line."""
    fallback = protocol.destinations.pharmacy.fallback
    cursor = 0
    for entry in protocol.destinations.pharmacy.roster:  # sorted, no overlaps
        a = max(_minute(entry.from_, midnight), 0)
        b = min(_minute(entry.to, midnight), DAY_MINUTES)
        if a >= b:
            continue
        if a > cursor:
            yield PharmacyStretch(cursor, a, None, fallback)
        yield PharmacyStretch(a, b, entry.name, entry.number)
        cursor = b
    if cursor < DAY_MINUTES:
        yield PharmacyStretch(cursor, DAY_MINUTES, None, fallback)


def local_instant(protocol: Protocol, day: date, minutes: int) -> datetime:
    """The aware instant of a wall-clock minute of ``day`` (1440 = next midnight).

    A minute the clock skips (02:30 on the spring night) is read with the offset in
    force before the change, as :mod:`zoneinfo` does.
    """
    extra, minute = divmod(minutes, DAY_MINUTES)
    when = datetime.combine(day + timedelta(days=extra), time(minute // 60, minute % 60))
    return when.replace(tzinfo=protocol.tz)


def _real_minutes(protocol: Protocol, day: date, start: int, end: int) -> int:
    # Subtract in UTC: aware datetimes of one zone subtract as wall-clock times.
    a = local_instant(protocol, day, start).astimezone(UTC)
    b = local_instant(protocol, day, end).astimezone(UTC)
    return int((b - a).total_seconds() // 60)


# --------------------------------------------------------------------------- routing


def routing_text(protocol: Protocol) -> tuple[str, str]:
    """What a caller gets when the MMG is open and when it is closed, in French."""
    routing = protocol.routing
    regulation = protocol.destinations.regulation
    line = " ou ".join(x for x in (regulation.number, regulation.sip) if x)
    sas = f"médecin régulateur (centre 15 / SAS, {line})"
    pharmacy = protocol.destinations.pharmacy
    desk = protocol.destinations.front_desk
    labels = {
        "regulation": sas,
        "pharmacy": f"pharmacie de garde (tableau de garde, sinon le {pharmacy.fallback})",
    }
    if routing.when_open == "menu" and routing.menu is not None:
        menu = routing.menu
        keys = ", ".join(f"touche {k} → {labels[v]}" for k, v in menu.options.items())
        when_open = f"menu vocal : {keys} ; sans choix après {menu.timeout_s} s : "
        when_open += labels[menu.default]
    else:
        when_open = sas
    access = routing.direct_access
    grounds = []
    if access.pending_referral:
        grounds.append("orientation régulée en attente")
    if access.professionals:
        count = len(access.professionals)
        plural = "s" if count > 1 else ""
        grounds.append(f"{count} professionnel{plural} de santé référencé{plural}")
    grounds.append("afflux déclaré par une dérogation")
    when_open += (
        f". Accès direct à l'accueil ({' ou '.join(x for x in (desk.number, desk.sip) if x)}) "
        "seulement sur motif : " + ", ".join(grounds)
    )
    if access.regulation_overflow is not None:
        when_open += (
            f". Régulation sans réponse après {access.regulation_overflow.after_s} s : "
            "débordement vers l'accueil"
        )
    if routing.when_closed == "closed_message":
        when_closed = (
            f"message de fermeture « {protocol.messages.closed} », puis fin de l'appel "
            "(l'appelant compose le 15)"
        )
    else:
        when_closed = f"{sas}, pour tous les appelants"
    return when_open + ".", when_closed + "."


# --------------------------------------------------------------------------- outputs


def day_heading(day: PlanDay) -> str:
    kind = DAY_TYPES_FR[day.day_type]
    if day.day_type is DayType.HOLIDAY and day.holiday:
        kind = f"{kind} : {day.holiday}"
    heading = f"{WEEKDAYS_FR[day.day.weekday()]} {day.day:%d/%m/%Y} — {kind}"
    if day.hours == 23:
        heading += " (passage à l'heure d'été : journée de 23 h)"
    elif day.hours == 25:
        heading += " (passage à l'heure d'hiver : journée de 25 h)"
    return heading


def to_text(plan: Plan) -> str:
    """The plan for a coordinator, in French, one line per slot and stretch."""
    lines = [
        f"{plan.name} ({plan.mmg}), fuseau {plan.timezone}",
        f"Ouverte : {plan.when_open}",
        f"Fermée : {plan.when_closed}",
    ]
    for day in plan.days:
        lines.append("")
        lines.append(day_heading(day))
        if not day.slots:
            lines.append("  fermée toute la journée")
        for slot in day.slots:
            extra = " — accès direct ouvert (afflux déclaré)" if slot.direct_access else ""
            span = f"{fmt_minutes(slot.start)}-{fmt_minutes(slot.end)}"
            lines.append(f"  ouverte   {span}  {slot.label}{extra}")
        for closure in day.closures:
            lines.append(
                f"  fermée    {fmt_minutes(closure.start)}-{fmt_minutes(closure.end)}  "
                f"dérogation « {closure.reason} »"
            )
        if day.slots:
            hours, minutes = divmod(day.open_minutes, 60)
            lines.append(f"  durée d'ouverture : {hours} h {minutes:02d}")
        for stretch in day.pharmacy:
            who = (
                f"{stretch.name} ({stretch.number})"
                if stretch.name
                else f"aucune au tableau de garde : {stretch.number}"
            )
            lines.append(
                f"  pharmacie {fmt_minutes(stretch.start)}-{fmt_minutes(stretch.end)}  {who}"
            )
    return "\n".join(lines) + "\n"


def to_json(plan: Plan) -> dict[str, object]:
    return {
        "mmg": plan.mmg,
        "name": plan.name,
        "timezone": plan.timezone,
        "from": plan.days[0].day.isoformat() if plan.days else None,
        "to": plan.days[-1].day.isoformat() if plan.days else None,
        "routing": {"open": plan.when_open, "closed": plan.when_closed},
        "days": [
            {
                "date": day.day.isoformat(),
                "weekday": WEEKDAYS_FR[day.day.weekday()],
                "day_type": day.day_type.value,
                "day_label": DAY_TYPES_FR[day.day_type],
                "holiday": day.holiday,
                "hours": day.hours,
                "open_minutes": day.open_minutes,
                "slots": [
                    {
                        "start": fmt_minutes(s.start),
                        "end": fmt_minutes(s.end),
                        "source": s.source,
                        "label": s.label,
                        "reason": s.reason,
                        "direct_access": s.direct_access,
                    }
                    for s in day.slots
                ],
                "closures": [
                    {"start": fmt_minutes(c.start), "end": fmt_minutes(c.end), "reason": c.reason}
                    for c in day.closures
                ],
                "pharmacy": [
                    {
                        "start": fmt_minutes(p.start),
                        "end": fmt_minutes(p.end),
                        "name": p.name,
                        "number": p.number,
                    }
                    for p in day.pharmacy
                ],
            }
            for day in plan.days
        ],
    }


@dataclass(frozen=True, slots=True)
class Opening:
    """One continuous opening, possibly over midnight, for calendar exports."""

    start: datetime  # aware, MMG time zone
    end: datetime
    labels: tuple[str, ...]
    direct_access: bool


def openings(protocol: Protocol, plan: Plan) -> list[Opening]:
    """The plan's slots as continuous openings: 20:00-24:00 and the next day's
    00:00-02:00 are one opening."""
    out: list[Opening] = []
    for day in plan.days:
        for slot in day.slots:
            start = local_instant(protocol, day.day, slot.start)
            end = local_instant(protocol, day.day, slot.end)
            last = out[-1] if out else None
            if last is not None and last.end == start:
                labels = last.labels if slot.label in last.labels else (*last.labels, slot.label)
                out[-1] = Opening(last.start, end, labels, last.direct_access or slot.direct_access)
            else:
                out.append(Opening(start, end, (slot.label,), slot.direct_access))
    return out


def to_ics(protocol: Protocol, plan: Plan, generated_at: datetime) -> bytes:
    """The opening hours as an iCalendar document (one event per opening, times in
    the MMG's zone with its VTIMEZONE), for staff calendars."""
    import icalendar

    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//regulator//calendrier MMG//FR")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", f"{plan.name} : ouverture")
    calendar.add("x-wr-timezone", plan.timezone)
    stamp = generated_at.astimezone(UTC)
    for opening in openings(protocol, plan):
        event = icalendar.Event()
        event.add("uid", f"{plan.mmg}-{opening.start:%Y%m%dT%H%M}@regulator")
        event.add("dtstamp", stamp)
        event.add("dtstart", opening.start)
        event.add("dtend", opening.end)
        summary = f"{plan.name} : ouverte"
        if opening.direct_access:
            summary += " (accès direct, afflux déclaré)"
        event.add("summary", summary)
        event.add("description", " ; ".join(opening.labels))
        event.add("transp", "OPAQUE")
        calendar.add_component(event)
    if plan.days:  # the zone's rules around the plan (a year each side), not 1970-2038
        first, last = plan.days[0].day, plan.days[-1].day
        calendar.add_missing_timezones(
            first_date=first - timedelta(days=366), last_date=last + timedelta(days=366)
        )
    ics: bytes = calendar.to_ical()
    return ics
