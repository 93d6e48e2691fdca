"""Answer quality of the lines an MMG puts its callers through to (issue 17).

*Were they answered, and how fast?* — one block per line (``regulation``: centre 15 /
SAS; ``front_desk``: the MMG's own desk), computed from the dial legs of the month
(:mod:`regulator.core.legs`). Each figure follows a published reading:

1. ``short_abandons`` — the caller hung up less than ``short_abandon_s`` (15 s by
   default) after the leg was offered: noise, not an abandon (QRAARM, Samu 93). They
   are left out of every other figure.
2. ``offered`` — the legs offered, short abandons excluded (one leg per call and line:
   no destination is offered twice to a call). A leg still ringing counts as offered
   and not answered: the report of a past month has none.
3. ``answered`` and ``answer_rate`` = answered / offered (the *taux de décroché*;
   DREES: 88 % of calls to the Samu answered in 2022).
4. ``answered_within_60s`` and ``qs60`` = answered within 60 s / offered (the SUdF
   target: 99 % of calls answered within one minute); ``qs60_of_answered`` = answered
   within 60 s / answered (the DREES reading: 80 % in 2022); ``qs30`` likewise at 30 s.
   An answer whose instant the platform did not give is answered but not "within".
5. ``abandoned`` — the caller hung up before an answer, after ``short_abandon_s``.
6. ``wait_median_s`` / ``wait_p90_s`` — seconds from offer to answer of the answered
   legs (nearest-rank percentiles), null when none was answered.

Shares are numbers 0–1, or null when nothing was offered (or answered, for
``qs60_of_answered``). The same block is given per hour of day (local, when the leg
was offered) × day type (the MMG's calendar: weekday, saturday, sunday, holiday,
bridge). Pure: the caller passes the legs, the MMG's time zone and calendar.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from regulator.core.legs import Leg, LegOutcome
from regulator.core.models import DayType

#: The lines reported, in report order (``Leg.line``).
LINES: Final[tuple[str, ...]] = ("regulation", "front_desk")

#: The block's fields, in report order (what exports and the console list).
FIELDS: Final[tuple[str, ...]] = (
    "offered",
    "answered",
    "answer_rate",
    "answered_within_60s",
    "qs60",
    "qs60_of_answered",
    "qs30",
    "abandoned",
    "short_abandons",
    "wait_median_s",
    "wait_p90_s",
)

#: French labels, as the console and the exports show them.
LABELS: Final[dict[str, str]] = {
    "offered": "Appels présentés",
    "answered": "Appels décrochés",
    "answer_rate": "Taux de décroché",
    "answered_within_60s": "Décrochés en moins de 60 s",
    "qs60": "QS60 (décrochés en moins de 60 s / présentés)",
    "qs60_of_answered": "Décrochés en moins de 60 s / décrochés",
    "qs30": "QS30 (décrochés en moins de 30 s / présentés)",
    "abandoned": "Abandons (l'appelant a raccroché avant la réponse)",
    "short_abandons": "Abandons courts (exclus)",
    "wait_median_s": "Attente médiane avant décroché (s)",
    "wait_p90_s": "Attente avant décroché, 90e centile (s)",
}

LINE_LABELS: Final[dict[str, str]] = {
    "regulation": "Ligne de régulation (centre 15 / SAS)",
    "front_desk": "Accueil de la MMG",
}


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (the value at rank ⌈fraction·n⌉), None when empty."""
    if not sorted_values:
        return None
    rank = max(math.ceil(fraction * len(sorted_values)), 1)
    return round(sorted_values[rank - 1], 1)


def quality(legs: Iterable[Leg], short_abandon_s: float) -> dict[str, Any]:
    """The block of figures (:data:`FIELDS`, rules 1–6) of ``legs`` (one line)."""
    offered = answered = within_60 = within_30 = abandoned = short = 0
    waits: list[float] = []
    for leg in legs:
        if leg.is_short_abandon(short_abandon_s):
            short += 1  # 1. noise, out of every other figure
            continue
        offered += 1  # 2.
        if leg.outcome is LegOutcome.ANSWERED:
            answered += 1  # 3.
            wait = leg.wait_s
            if wait is not None:
                waits.append(wait)
                within_60 += wait <= 60  # 4.
                within_30 += wait <= 30
        elif leg.outcome is LegOutcome.ABANDONED:
            abandoned += 1  # 5.
    waits.sort()
    return {
        "offered": offered,
        "answered": answered,
        "answer_rate": _share(answered, offered),
        "answered_within_60s": within_60,
        "qs60": _share(within_60, offered),
        "qs60_of_answered": _share(within_60, answered),
        "qs30": _share(within_30, offered),
        "abandoned": abandoned,
        "short_abandons": short,
        "wait_median_s": _percentile(waits, 0.5),  # 6.
        "wait_p90_s": _percentile(waits, 0.9),
    }


def answer_quality(
    legs: Iterable[Leg],
    tz: ZoneInfo,
    day_type_of: Callable[[date], DayType],
    short_abandon_s: float,
) -> dict[str, Any]:
    """The report's ``answer_quality``: for each line of :data:`LINES`, the block of
    :func:`quality` and ``by_hour``: ``{day_type: {"HH": block}}`` for the hours and
    day types that had at least one leg (local time of the offer, the MMG's calendar).
    """
    by_line: dict[str, list[Leg]] = {line: [] for line in LINES}
    for leg in legs:
        if leg.line in by_line:
            by_line[leg.line].append(leg)
    days: dict[date, DayType] = {}
    result: dict[str, Any] = {"short_abandon_s": short_abandon_s}
    for line, line_legs in by_line.items():
        cells: dict[tuple[DayType, int], list[Leg]] = {}
        for leg in line_legs:
            local = leg.offered_at.astimezone(tz)
            day = local.date()
            if day not in days:
                days[day] = day_type_of(day)
            cells.setdefault((days[day], local.hour), []).append(leg)
        by_hour: dict[str, dict[str, Any]] = {}
        for day_type in DayType:
            hours = sorted(hour for kind, hour in cells if kind is day_type)
            if hours:
                by_hour[day_type.value] = {
                    f"{hour:02d}": quality(cells[(day_type, hour)], short_abandon_s)
                    for hour in hours
                }
        result[line] = {**quality(line_legs, short_abandon_s), "by_hour": by_hour}
    return result


def live(legs: Iterable[Leg], short_abandon_s: float, now: datetime) -> dict[str, Any]:
    """Today's figures of one line for a console: :func:`quality` plus ``waiting``,
    the legs offered and neither answered nor ended (callers waiting on the line now)."""
    legs = list(legs)
    waiting = sum(1 for leg in legs if leg.outcome is None and leg.offered_at <= now)
    return {**quality(legs, short_abandon_s), "waiting": waiting}


__all__ = ["FIELDS", "LABELS", "LINES", "LINE_LABELS", "answer_quality", "live", "quality"]
