"""The circular's monthly indicator set, each figure defined once.

Call figures come from pre-aggregated counters (so a month of a million calls
reports in milliseconds); persons-seen figures come from the month's visits.
"Via la régulation de la PDS" counts visits with channel ``regulation``: arrived
referrals and persons the desk records as sent by centre 15 / SAS, one per case.
Labels and headings are the circular's wording (Partie 3) so a report reads like
the convention's annex; figures the circular does not have are set apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from regulator.core.labels import DAY_TYPE_PLURALS, GROUND_LABELS, ROUTE_REPORT_LABELS
from regulator.core.models import (
    CallRecord,
    DayType,
    Ground,
    Outcome,
    Route,
    Visit,
    VisitChannel,
)

# ---------------------------------------------------------------- call counters
# Counter keys shared by every store: one hash (or table) per MMG and month.
CALLS = "calls"
FAILSAFE = "failsafe"


def route_key(route: Route | str) -> str:
    return f"route:{route}"


def ground_key(ground: Ground | str) -> str:
    return f"ground:{ground}"


def call_counter_deltas(record: CallRecord) -> dict[str, int]:
    """Counter increments for one new call record."""
    deltas = {
        CALLS: 1,
        route_key(record.route): 1,
        f"day_type:{record.day_type}": 1,
        f"hour:{record.hour}": 1,
        f"hour:{record.day_type}:{record.hour}": 1,
        f"platform:{record.platform}": 1,
    }
    if record.ground is not None:
        deltas[ground_key(record.ground)] = 1
    if record.failsafe:
        deltas[FAILSAFE] = 1
    return deltas


def reroute_deltas(
    old_route: Route | str,
    old_ground: Ground | str | None,
    new_route: Route | str,
    new_ground: Ground | str | None,
) -> dict[str, int]:
    """Counter moves when a call's route changes (menu choice, overflow)."""
    deltas: dict[str, int] = {}
    if old_route != new_route:
        deltas[route_key(old_route)] = -1
        deltas[route_key(new_route)] = 1
    if old_ground != new_ground:
        if old_ground is not None:
            deltas[ground_key(old_ground)] = -1
        if new_ground is not None:
            deltas[ground_key(new_ground)] = 1
    return deltas


def local_facts(instant: datetime, tz: ZoneInfo) -> tuple[str, int]:
    """(YYYY-MM, hour of day) of an instant in the MMG's time zone."""
    local = instant.astimezone(tz)
    # Not strftime: this runs for every call record, and strftime was 1.5 % of a call.
    return f"{local.year:04d}-{local.month:02d}", local.hour


def month_bounds(month: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``[start, end)`` of the local calendar month ``YYYY-MM`` as UTC instants: a leg
    offered on 31 December at 23:30 in Paris (22:30 UTC) is December's, one offered on
    1 January at 00:30 (23:30 UTC the day before) January's."""
    year, mon = int(month[:4]), int(month[5:])
    next_year, next_index = divmod(year * 12 + mon, 12)
    start = datetime(year, mon, 1, tzinfo=tz)
    end = datetime(next_year, next_index + 1, 1, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def valid_month(month: str) -> bool:
    """True for ``YYYY-MM`` with a real month."""
    if len(month) != 7 or month[4] != "-":
        return False
    year, mon = month[:4], month[5:]
    # ASCII digits only: str.isdigit() also accepts "²" (int() then fails) and "٢".
    if not (year.isascii() and mon.isascii() and year.isdigit() and mon.isdigit()):
        return False
    return 1 <= int(mon) <= 12 and int(year) >= 2000


# ------------------------------------------------------------------ definitions


@dataclass(frozen=True, slots=True)
class Indicator:
    """One figure of the report: its stable key (JSON/CSV) and its French label."""

    key: str
    label: str


@dataclass(frozen=True, slots=True)
class Section:
    """A group of figures under one heading (the circular's question, or set apart)."""

    title: str
    indicators: tuple[Indicator, ...]


#: The circular's tables (Partie 3), its headings and row labels.
CIRCULAR_SECTIONS: tuple[Section, ...] = (
    Section(
        "A- Régulation à l'accès à la MMG",
        (
            Indicator("calls_received", "Nombre d'appels reçus à la MMG par mois"),
            Indicator(
                "persons_seen.total", "Nombre total de personnes vues en consultation à la MMG"
            ),
            Indicator("persons_seen.weekday", "… dont jours de semaine"),
            Indicator("persons_seen.weekend", "… dont week-end"),
            Indicator("persons_seen.holiday", "… dont jours fériés (et ponts)"),
            Indicator("persons_seen.public_holiday", "… … dont jours fériés"),
            Indicator("persons_seen.bridge", "… … dont ponts (art. R.6315-1)"),
            Indicator(
                "persons_seen.via_regulation",
                "Nombre de personnes venues à la MMG via la régulation de la PDS",
            ),
            Indicator(
                "persons_seen.direct_access",
                "Nombre de personnes venues à la MMG en accès direct (hors régulation préalable)",
            ),
            Indicator(
                "persons_seen.emergency_reorientation",
                "Nombre de personnes venues à la MMG après réorientation par un service d'urgences",
            ),
            Indicator("persons_seen.other", "Autres cas"),
        ),
    ),
    Section(
        "1- L'activité de la MMG répond-t-elle à sa vocation première (consultations non "
        "programmées aux heures de fermeture des cabinets libéraux ?)",
        (
            Indicator(
                "returned_home", "Nombre de patients retournant à leur domicile après consultation"
            ),
            Indicator(
                "reoriented_to_emergency",
                "Nombre de patients réorientés vers une structure d'urgence",
            ),
            Indicator("acts", "Nombre d'actes réalisés par le médecin"),
        ),
    ),
)

#: Outcomes the circular's table does not have: with its two rows they add up to the
#: persons seen (every person seen has exactly one of the five outcomes).
OTHER_OUTCOMES = Section(
    "Autres issues de consultation (hors tableau de la circulaire)",
    (
        Indicator("hospitalised", "Nombre de patients hospitalisés après consultation"),
        Indicator("outcome_other", "Nombre de patients avec une autre issue"),
        Indicator("outcome_missing", "Nombre de consultations dont l'issue n'est pas renseignée"),
    ),
)

#: Every whole-number figure, circular first: the flat rows of CSV and exports.
INDICATORS: tuple[Indicator, ...] = tuple(
    i for section in (*CIRCULAR_SECTIONS, OTHER_OUTCOMES) for i in section.indicators
)

#: A ratio 0–1 (null when nobody was seen): not a count, so kept apart from INDICATORS.
SHARE_REGULATED = Indicator(
    "share_regulated", "Part des personnes vues venues via la régulation de la PDS"
)

_WEEKEND = (DayType.SATURDAY, DayType.SUNDAY)
_HOLIDAY_LIKE = (DayType.HOLIDAY, DayType.BRIDGE)


def distinct_visits(visits: Sequence[Visit]) -> list[Visit]:
    """The visits with each regulated case counted once.

    The desk may record a ``regulation`` visit for a patient whose referral also
    arrived in this system (same ``case_id``): one person seen, not two. Of the
    visits of one case the one that says most is kept: with an outcome first, then
    the arrived referral's, then the earliest. Other visits are all distinct.
    Case numbers typed at the desk may differ in case and spacing: compared without.
    """
    best: dict[str, Visit] = {}
    for visit in visits:
        key = _case_key(visit)
        if key is None:
            continue
        kept = best.get(key)
        if kept is None or _rank(visit) < _rank(kept):
            best[key] = visit
    return [v for v in visits if (key := _case_key(v)) is None or best[key] is v]


def _case_key(visit: Visit) -> str | None:
    if visit.channel is not VisitChannel.REGULATION or not visit.case_id:
        return None
    return "".join(visit.case_id.split()).upper() or None


def _rank(visit: Visit) -> tuple[bool, bool, datetime, str]:
    return (visit.outcome is None, visit.referral_id is None, visit.at, visit.id)


def _persons_seen(visits: Sequence[Visit]) -> dict[str, int]:
    seen = {
        "total": len(visits),
        "weekday": 0,
        "weekend": 0,
        "holiday": 0,
        "public_holiday": 0,
        "bridge": 0,
        "via_regulation": 0,
        "direct_access": 0,
        "emergency_reorientation": 0,
        "other": 0,
    }
    channel_key = {
        VisitChannel.REGULATION: "via_regulation",
        VisitChannel.DIRECT: "direct_access",
        VisitChannel.EMERGENCY_REORIENTATION: "emergency_reorientation",
        VisitChannel.OTHER: "other",
    }
    for visit in visits:
        if visit.day_type in _HOLIDAY_LIKE:
            # The circular's "JF" total, then holidays and bridges apart beneath it.
            seen["holiday"] += 1
            seen["bridge" if visit.day_type is DayType.BRIDGE else "public_holiday"] += 1
        elif visit.day_type in _WEEKEND:
            seen["weekend"] += 1
        else:
            seen["weekday"] += 1
        seen[channel_key[visit.channel]] += 1
    return seen


def share(part: int, whole: int) -> float | None:
    """``part / whole`` as a number 0–1, or None when ``whole`` is 0 (nobody seen)."""
    return part / whole if whole else None


def _count_by(values: Iterable[str | None]) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        if value:
            out[value] = out.get(value, 0) + 1
    return dict(sorted(out.items()))


def build_report(
    mmg: str, month: str, counters: Mapping[str, int], visits: Sequence[Visit]
) -> dict[str, Any]:
    """The monthly report (DESIGN.md §5 field names) from call counters and visits."""
    calls_by_route = {r.value: counters.get(route_key(r), 0) for r in Route}
    calls_by_ground = {g.value: counters.get(ground_key(g), 0) for g in Ground}
    calls_by_day_type = {d.value: counters.get(f"day_type:{d}", 0) for d in DayType}
    calls_by_hour = [counters.get(f"hour:{h}", 0) for h in range(24)]
    calls_peaks = {d.value: [counters.get(f"hour:{d}:{h}", 0) for h in range(24)] for d in DayType}
    visits = distinct_visits(visits)
    visits_peaks = {d.value: [0] * 24 for d in DayType}
    for visit in visits:
        visits_peaks[visit.day_type.value][visit.hour] += 1
    outcomes = [v.outcome for v in visits]
    persons_seen = _persons_seen(visits)
    return {
        "mmg": mmg,
        "month": month,
        "calls_received": counters.get(CALLS, 0),
        "calls_by_route": calls_by_route,
        "calls_by_ground": calls_by_ground,
        "calls_by_day_type": calls_by_day_type,
        "calls_by_hour": calls_by_hour,
        "calls_failsafe": counters.get(FAILSAFE, 0),
        "persons_seen": persons_seen,
        "share_regulated": share(persons_seen["via_regulation"], persons_seen["total"]),
        "returned_home": outcomes.count(Outcome.HOME),
        "reoriented_to_emergency": outcomes.count(Outcome.EMERGENCY),
        "hospitalised": outcomes.count(Outcome.HOSPITALISED),
        "outcome_other": outcomes.count(Outcome.OTHER),
        "outcome_missing": outcomes.count(None),
        "acts": sum(v.acts for v in visits),
        "peaks": {"calls": calls_peaks, "visits": visits_peaks},
        "qualitative": {
            "age_band": _count_by(v.age_band for v in visits),
            "reason": _count_by(v.reason for v in visits),
        },
    }


def _value(report: Mapping[str, Any], dotted: str) -> Any:
    value: Any = report
    for part in dotted.split("."):
        value = value[part]
    return value


def report_rows(report: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """Flat (key, French label, value) rows: the circular's figures then the breakdowns."""
    rows = [(i.key, i.label, int(_value(report, i.key))) for i in INDICATORS]
    for route, count in report["calls_by_route"].items():
        rows.append((f"calls_by_route.{route}", ROUTE_REPORT_LABELS[route], count))
    for ground, count in report["calls_by_ground"].items():
        rows.append(
            (f"calls_by_ground.{ground}", f"Accès direct, motif : {GROUND_LABELS[ground]}", count)
        )
    for day_type, count in report["calls_by_day_type"].items():
        rows.append(
            (f"calls_by_day_type.{day_type}", f"Appels reçus — {DAY_TYPE_PLURALS[day_type]}", count)
        )
    for hour, count in enumerate(report["calls_by_hour"]):
        rows.append(
            (f"calls_by_hour.{hour:02d}", f"Appels reçus de {hour:02d} h à {hour:02d} h 59", count)
        )
    rows.append(
        ("calls_failsafe", "Appels routés par sécurité vers le centre 15", report["calls_failsafe"])
    )
    return rows


def share_text(value: float | None, missing: str = "non calculable (aucune personne vue)") -> str:
    """A share in French: ``41,7 %``, or ``missing`` when it has no denominator (by
    default the persons-seen wording; answer quality says no call was offered)."""
    if value is None:
        return missing
    return f"{value * 100:.1f}".replace(".", ",") + "\u00a0%"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count > 1 else ''}"


def _entered_markdown(report: Mapping[str, Any]) -> list[str]:
    """The entered figures' section: "non renseigné" until a coordinator enters them."""
    # Imported here: core.figures builds on this module's Indicator and Section.
    from regulator.core.figures import ED_SECTION, NOT_ENTERED, entered_rows, entered_text

    entered = report.get("entered")
    if entered is None:
        return []
    lines = ["", f"## {ED_SECTION.title}", "", "| Indicateur | Valeur |", "| --- | ---: |"]
    for _, label, value in entered_rows(entered):
        lines.append(f"| {label} | {entered_text(value)} |")
    block = entered.get("ed_passages")
    lines.append(f"| Source | {NOT_ENTERED if block is None else block['source']} |")
    return lines


def report_markdown(report: Mapping[str, Any], name: str | None = None) -> str:
    """A French Markdown summary: the circular's tables, headings and wording."""
    title = name or report["mmg"]
    lines = [f"# Indicateurs de suivi — {title} — {report['month']}"]
    for section in (*CIRCULAR_SECTIONS, OTHER_OUTCOMES):
        lines += ["", f"## {section.title}", "", "| Indicateur | Valeur |", "| --- | ---: |"]
        for indicator in section.indicators:
            lines.append(f"| {indicator.label} | {int(_value(report, indicator.key))} |")
            if indicator.key == "persons_seen.other":
                share_row = share_text(report["share_regulated"])
                lines.append(f"| {SHARE_REGULATED.label} | {share_row} |")
    lines += _entered_markdown(report)
    if "answer_quality" in report:
        # Imported here: core.answer_quality formats its shares with share_text.
        from regulator.core.answer_quality import quality_markdown

        lines += quality_markdown(report["answer_quality"])
    lines += ["", "## Appels par orientation", "", "| Orientation | Appels |", "| --- | ---: |"]
    lines += [f"| {ROUTE_REPORT_LABELS[r]} | {c} |" for r, c in report["calls_by_route"].items()]
    peak_hour = max(range(24), key=lambda h: report["calls_by_hour"][h])
    peak = report["calls_by_hour"][peak_hour]
    lines += [
        "",
        "## Pics d'activité",
        "",
        f"Heure la plus chargée : {peak_hour:02d} h ({_plural(peak, 'appel')}).",
        "",
    ]
    return "\n".join(lines)
