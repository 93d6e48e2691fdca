"""The PDS calendar: day types in the MMG's time zone and opening hours.

Public holidays come from the ``holidays`` package (France with its department
subdivisions); bridge days follow art. R.6315-1 of the Code de la santé publique:
the Monday before a public holiday, and the Friday and Saturday after one. The
article says the PDS *may* be organised on each of the three, so each departmental
cahier des charges chooses (:class:`BridgeDays`).

:func:`outside_pds` gives the parts of a slot that fall outside the PDS hours of
R.6315-1, for ``regulator check-protocols``.

All wall-clock reasoning is done on local dates and times obtained from an aware
instant, so daylight-saving changes never shift a slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import holidays

from regulator.core.labels import DAY_TYPE_NAMES
from regulator.core.models import DayType

if TYPE_CHECKING:
    from regulator.core.protocol import CalendarConfig, Opening, Override, Slot

#: Departments a protocol may name, mapped to the ``holidays`` package's France
#: subdivisions (Alsace's two departments are one subdivision there).
DEPARTMENTS: dict[str, str] = {
    "57": "57",
    "67": "6AE",
    "68": "6AE",
    "971": "971",
    "972": "972",
    "973": "973",
    "974": "974",
    "975": "PM",
    "976": "976",
}


@lru_cache(maxsize=256)
def holiday_dates(subdiv: str | None, year: int) -> dict[date, str]:
    """Public holidays of ``year`` for a department (None = metropolitan France)."""
    package_subdiv = DEPARTMENTS[subdiv] if subdiv is not None else None
    days = holidays.country_holidays("FR", subdiv=package_subdiv, years=year, language="fr")
    return dict(days.items())


def holiday_name(day: date, subdiv: str | None) -> str | None:
    """The French name of the public holiday on ``day``, or None."""
    return holiday_dates(subdiv, day.year).get(day)


def is_holiday(day: date, subdiv: str | None) -> bool:
    return day in holiday_dates(subdiv, day.year)


@dataclass(frozen=True, slots=True)
class BridgeDays:
    """Which of the three R.6315-1 bridge days the department's PDS covers."""

    monday_before: bool = True  # the Monday before a Tuesday holiday
    friday_after: bool = True  # the Friday after a Thursday holiday
    saturday_after: bool = True  # the Saturday after a Friday (or Thursday) holiday

    @classmethod
    def of(cls, value: bool | BridgeDays) -> BridgeDays:
        """``True``/``False`` (all or none, the protocol's short form) or a choice."""
        if isinstance(value, BridgeDays):
            return value
        return cls(value, value, value)

    @property
    def any(self) -> bool:
        return self.monday_before or self.friday_after or self.saturday_after


@lru_cache(maxsize=8192)
def day_type(day: date, subdiv: str | None, bridges: bool | BridgeDays = True) -> DayType:
    """Kind of ``day`` (a local date) for opening hours and indicators.

    A public holiday wins over everything. R.6315-1 bridge days, each only when
    chosen in ``bridges`` (``True`` = all three): the Monday before a holiday
    (Tuesday), the Friday after a holiday (Thursday), and the Saturday after a
    holiday (Friday) or closing the same long weekend (after a Thursday holiday,
    e.g. Ascension).
    """
    if is_holiday(day, subdiv):
        return DayType.HOLIDAY
    weekday = day.weekday()
    chosen = BridgeDays.of(bridges)
    one = timedelta(days=1)
    if weekday == 0 and chosen.monday_before and is_holiday(day + one, subdiv):
        return DayType.BRIDGE
    if weekday == 4 and chosen.friday_after and is_holiday(day - one, subdiv):
        return DayType.BRIDGE
    if (
        weekday == 5
        and chosen.saturday_after
        and (is_holiday(day - one, subdiv) or is_holiday(day - 2 * one, subdiv))
    ):
        return DayType.BRIDGE
    if weekday == 5:
        return DayType.SATURDAY
    if weekday == 6:
        return DayType.SUNDAY
    return DayType.WEEKDAY


#: PDS hours of art. R.6315-1 per kind of day, in minutes since local midnight: every
#: night 20:00-08:00, Saturdays from noon, Sundays, public holidays and the chosen
#: bridge days all day.
PDS_HOURS: dict[DayType, tuple[tuple[int, int], ...]] = {
    DayType.WEEKDAY: ((0, 8 * 60), (20 * 60, 24 * 60)),
    DayType.SATURDAY: ((0, 8 * 60), (12 * 60, 24 * 60)),
    DayType.SUNDAY: ((0, 24 * 60),),
    DayType.HOLIDAY: ((0, 24 * 60),),
    DayType.BRIDGE: ((0, 24 * 60),),
}


def outside_pds(kind: DayType, start: int, end: int) -> tuple[tuple[int, int], ...]:
    """The parts of the slot ``[start, end)`` (minutes) outside the PDS hours of ``kind``."""
    parts: list[tuple[int, int]] = []
    cursor = start
    for pds_start, pds_end in PDS_HOURS[kind]:
        if cursor >= end:
            break
        if pds_start > cursor:
            parts.append((cursor, min(pds_start, end)))
        cursor = max(cursor, pds_end)
    if cursor < end:
        parts.append((cursor, end))
    return tuple(parts)


def weekly_kind(day: date) -> DayType:
    """The day's kind ignoring holidays: weekday, saturday or sunday."""
    weekday = day.weekday()
    if weekday == 5:
        return DayType.SATURDAY
    if weekday == 6:
        return DayType.SUNDAY
    return DayType.WEEKDAY


@dataclass(frozen=True, slots=True)
class DayPlan:
    """The opening slots of one local date and where they come from."""

    day: date
    day_type: DayType
    slots: tuple[tuple[int, int], ...]  # (start, end) in minutes since local midnight
    source: str  # human-readable: which part of the protocol gave these slots
    # Which part, for regulator calendar: weekly, holiday, bridge or period (its name).
    kind: str = "weekly"
    period: str | None = None


@dataclass(frozen=True, slots=True)
class OpenState:
    """Whether the MMG is open at an instant, and why."""

    open: bool
    day_type: DayType
    local: datetime
    reason: str
    override: Override | None = None

    @property
    def direct_access(self) -> bool:
        """True when a dated override declares an influx with direct access."""
        return self.override is not None and self.override.open and self.override.direct_access


#: French names of the weekdays (Monday first) and of the day types, for coordinators.
WEEKDAYS_FR = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
DAY_TYPES_FR: dict[DayType, str] = {
    DayType.WEEKDAY: "jour de semaine",
    DayType.SATURDAY: "samedi",
    DayType.SUNDAY: "dimanche",
    DayType.HOLIDAY: "jour férié",
    DayType.BRIDGE: "pont (art. R.6315-1)",
}


def format_local(moment: datetime) -> str:
    """``samedi 21/11/2026 19:00``: a local wall-clock time as coordinators write it."""
    return f"{WEEKDAYS_FR[moment.weekday()]} {moment:%d/%m/%Y %H:%M}"


def _fmt(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def format_slots(slots: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(f"{_fmt(s)}-{_fmt(e)}" for s, e in slots) or "aucun créneau"


class Schedule:
    """Opening hours of one protocol, with a per-date cache of day plans.

    Built once per loaded protocol; answering ``state(instant)`` is a zone
    conversion, a dictionary look-up and a scan of a handful of slots.
    """

    __slots__ = ("_bridges", "_calendar", "_last", "_opening", "_plans", "tz")

    def __init__(self, timezone: str, calendar: CalendarConfig, opening: Opening) -> None:
        self.tz = ZoneInfo(timezone)
        self._calendar = calendar
        self._bridges = calendar.bridge_days
        self._opening = opening
        self._plans: dict[date, DayPlan] = {}
        # The last instant asked and its state: a webhook asks twice for the same
        # instant (the router, then ``decide``), 2 % of a call's CPU the second time.
        self._last: tuple[datetime, OpenState] | None = None

    def day_type(self, day: date) -> DayType:
        return day_type(day, self._calendar.subdiv, self._bridges)

    def plan(self, day: date) -> DayPlan:
        """Slots of a local date: holiday or bridge slots, else a period's, else weekly."""
        cached = self._plans.get(day)
        if cached is not None:
            return cached
        plan = self._compute_plan(day)
        if len(self._plans) > 4096:
            self._plans.clear()
        self._plans[day] = plan
        return plan

    def _compute_plan(self, day: date) -> DayPlan:
        opening = self._opening
        kind = self.day_type(day)
        if kind is DayType.HOLIDAY and opening.holiday is not None:
            name = holiday_name(day, self._calendar.subdiv)
            return DayPlan(day, kind, _minutes(opening.holiday), f"jour férié ({name})", "holiday")
        if kind is DayType.BRIDGE and opening.bridge is not None:
            return DayPlan(day, kind, _minutes(opening.bridge), "pont (art. R.6315-1)", "bridge")
        weekly = weekly_kind(day)
        for period in opening.periods:
            if period.from_ <= day <= period.to:
                slots = period.slots_for(weekly)
                if slots is not None:
                    label = f"période « {period.name} » ({DAY_TYPE_NAMES[weekly]})"
                    return DayPlan(day, kind, _minutes(slots), label, "period", period.name)
        slots = opening.slots_for(weekly)
        return DayPlan(
            day, kind, _minutes(slots), f"horaires hebdomadaires ({DAY_TYPE_NAMES[weekly]})"
        )

    def state(self, instant: datetime) -> OpenState:
        """Open or closed at an aware instant, with the reason in French."""
        last = self._last
        if last is not None and last[0] is instant:
            return last[1]
        state = self._state(instant)
        self._last = (instant, state)
        return state

    def _state(self, instant: datetime) -> OpenState:
        local = instant.astimezone(self.tz)
        naive = local.replace(tzinfo=None)
        plan = self.plan(local.date())
        for override in reversed(self._opening.overrides):  # last one wins
            if override.from_ <= naive < override.to:
                verb = "ouverte" if override.open else "fermée"
                return OpenState(
                    override.open,
                    plan.day_type,
                    local,
                    f"dérogation « {override.reason} » : {verb}",
                    override,
                )
        minute = local.hour * 60 + local.minute
        for start, end in plan.slots:
            if start <= minute < end:
                return OpenState(True, plan.day_type, local, _open_reason(plan.source, start, end))
        return OpenState(False, plan.day_type, local, _closed_reason(plan.source, plan.slots))


# The reasons are the same few strings all day long: formatted once (hot path).
@lru_cache(maxsize=4096)
def _open_reason(source: str, start: int, end: int) -> str:
    return f"{source} : {_fmt(start)}-{_fmt(end)}"


@lru_cache(maxsize=4096)
def _closed_reason(source: str, slots: tuple[tuple[int, int], ...]) -> str:
    return f"{source} : hors créneau ({format_slots(slots)})"


def _minutes(slots: tuple[Slot, ...] | list[Slot]) -> tuple[tuple[int, int], ...]:
    return tuple((s.start, s.end) for s in slots)
