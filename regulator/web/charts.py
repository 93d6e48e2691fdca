"""The report's charts as data: scale, bar geometry, legend and the data table.

Pure functions, no markup: ``templates/charts.html`` draws the SVG from what they
return (server-side, no chart library, nothing inline for the CSP to refuse), and
renders each chart's numbers again as a table beside it for screen readers and
for anyone who prefers figures to bars.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from regulator.core.answer_quality import LABELS as QUALITY_LABELS
from regulator.core.answer_quality import hourly_qs60
from regulator.core.indicators import share_text
from regulator.core.labels import CHANNEL_SEEN_LABELS, DAY_TYPE_PLURALS
from regulator.core.models import DayType, VisitChannel


def french_number(value: int) -> str:
    """French grouping of thousands (narrow no-break space): ``12 345``."""
    return f"{value:,}".replace(",", "\u202f")


def nice_scale(peak: int) -> tuple[int, int]:
    """(top of the axis, step between grid lines) for a maximum value ``peak``:
    about four grid lines, steps of 1, 2 or 5 times a power of ten."""
    if peak <= 0:
        return 4, 1
    raw = peak / 4
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next((f * magnitude for f in (1, 2, 5) if f * magnitude >= raw), 10 * magnitude)
    return math.ceil(peak / step) * step, step


@dataclass(frozen=True, slots=True)
class DataTable:
    """A chart's figures as rows: ``(row header, values…)`` under ``columns``."""

    columns: tuple[str, ...]  # the first one heads the row headers
    rows: tuple[tuple[str, tuple[int | str, ...]], ...]  # str: already formatted


@dataclass(frozen=True, slots=True)
class GridLine:
    value: int
    y: float


@dataclass(frozen=True, slots=True)
class Bar:
    """One stacked segment: ``series`` is the day type (the CSS class ``s-…``)."""

    series: str
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class LegendItem:
    series: str
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class ChartFrame:
    """What every per-hour chart shares: what it is and where its plot area lies in
    the SVG (``left``/``top`` margins, ``plot_w`` × ``plot_h``)."""

    chart_id: str
    title: str
    empty_text: str
    width: int
    height: int
    left: int
    right: int
    top: int
    plot_w: int
    plot_h: int


def chart_frame(
    chart_id: str,
    title: str,
    empty_text: str,
    size: tuple[int, int],
    margins: tuple[int, int, int, int],
) -> dict[str, Any]:
    """A ``ChartFrame``'s fields, to build a chart with: ``size`` (width, height),
    ``margins`` (left, right, top, bottom)."""
    (width, height), (left, right, top, bottom) = size, margins
    return {
        "chart_id": chart_id,
        "title": title,
        "empty_text": empty_text,
        "width": width,
        "height": height,
        "left": left,
        "right": right,
        "top": top,
        "plot_w": width - left - right,
        "plot_h": height - top - bottom,
    }


def hour_columns(frame: Mapping[str, Any]) -> tuple[list[float], float, tuple[Tick, ...]]:
    """The 24 hour columns of a frame: each bar's left x, the bar width, and the axis
    ticks (centred under the bars, labelled 0–23)."""
    slot = frame["plot_w"] / 24
    bar_w = slot * 0.72
    xs = [frame["left"] + hour * slot + (slot - bar_w) / 2 for hour in range(24)]
    return xs, bar_w, tuple(Tick(x + bar_w / 2, str(hour)) for hour, x in enumerate(xs))


@dataclass(frozen=True, slots=True)
class HoursChart(ChartFrame):
    """Calls (or persons seen) per local hour, stacked by day type."""

    unit: str
    total: int
    axis_top: int
    step: int
    grid: tuple[GridLine, ...]
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    legend: tuple[LegendItem, ...]
    legend_y: int
    table: DataTable

    @property
    def empty(self) -> bool:
        return self.total == 0


#: (unit, its plural, chart title, text of an empty month) of each kind of peaks.
HOURS_KINDS: dict[str, tuple[str, str, str, str]] = {
    "calls": (
        "appel",
        "appels",
        "Appels reçus par heure de la journée et par type de jour",
        "Aucun appel ce mois-ci",
    ),
    "visits": (
        "personne vue",
        "personnes vues",
        "Personnes vues en consultation par heure d'arrivée et par type de jour",
        "Aucune personne vue ce mois-ci",
    ),
}


def hours_chart(peaks: Mapping[str, Sequence[int]], kind: str = "calls") -> HoursChart:
    """Stacked bars of ``peaks`` (day type → 24 counts), scaled to a round axis maximum.

    ``kind`` is the report's ``peaks`` key: ``calls`` or ``visits`` (patient flow,
    the circular's "pics d'activité" for the safety of the reception)."""
    unit, plural_unit, chart_title, empty_text = HOURS_KINDS[kind]
    frame = chart_frame(kind, chart_title, empty_text, (760, 320), (48, 12, 16, 84))
    top, plot_h = frame["top"], frame["plot_h"]
    order = list(DayType)
    totals = [sum(peaks[d][h] for d in order) for h in range(24)]
    axis_top, step = nice_scale(max(totals))
    grid = tuple(
        GridLine(value, top + plot_h - value / axis_top * plot_h)
        for value in range(0, axis_top + 1, step)
    )
    xs, bar_w, ticks = hour_columns(frame)
    bars: list[Bar] = []
    for hour, x in enumerate(xs):
        base = float(top + plot_h)
        for day_type in order:
            count = peaks[day_type][hour]
            if count <= 0:
                continue
            h = count / axis_top * plot_h
            base -= h
            title = (
                f"{hour:02d} h — {DAY_TYPE_PLURALS[day_type]} : "
                f"{french_number(count)} {plural_unit if count > 1 else unit}"
            )
            bars.append(Bar(day_type.value, x, base, bar_w, h, title))
    legend: list[LegendItem] = []
    legend_x = float(frame["left"])
    for day_type in order:
        label = DAY_TYPE_PLURALS[day_type]
        legend.append(LegendItem(day_type.value, legend_x, label))
        legend_x += 30 + 7.2 * len(label)
    table = DataTable(
        ("Heure", *(DAY_TYPE_PLURALS[d] for d in order), "Total"),
        tuple((f"{h:02d} h", (*(peaks[d][h] for d in order), totals[h])) for h in range(24)),
    )
    return HoursChart(
        **frame,
        unit=unit,
        total=sum(totals),
        axis_top=axis_top,
        step=step,
        grid=grid,
        bars=tuple(bars),
        ticks=ticks,
        legend=tuple(legend),
        legend_y=frame["height"] - 18,
        table=table,
    )


#: Persons-seen chart: (report key, channel) in the order of the bars.
SEEN_SERIES: tuple[tuple[str, VisitChannel], ...] = (
    ("via_regulation", VisitChannel.REGULATION),
    ("direct_access", VisitChannel.DIRECT),
    ("emergency_reorientation", VisitChannel.EMERGENCY_REORIENTATION),
    ("other", VisitChannel.OTHER),
)


@dataclass(frozen=True, slots=True)
class ChannelRow:
    """One horizontal bar: ``channel`` is the CSS class ``c-…``."""

    channel: str
    label: str
    value: int
    y: int
    width: float


@dataclass(frozen=True, slots=True)
class ChannelsChart:
    """Persons seen by how they came to the MMG."""

    width: int
    height: int
    row: int
    label_w: int
    plot_w: int
    total: int
    rows: tuple[ChannelRow, ...]
    table: DataTable


def channels_chart(seen: Mapping[str, int]) -> ChannelsChart:
    """Horizontal bars of the report's ``persons_seen``; the largest fills the track."""
    width, row, top = 760, 44, 12
    label_w, value_w = 330, 60
    plot_w = width - label_w - value_w
    peak = max((seen[key] for key, _ in SEEN_SERIES), default=0)
    rows = tuple(
        ChannelRow(
            channel.value,
            CHANNEL_SEEN_LABELS[channel],
            seen[key],
            top + i * row,
            seen[key] / peak * plot_w if peak else 0.0,
        )
        for i, (key, channel) in enumerate(SEEN_SERIES)
    )
    table = DataTable(
        ("Mode d'accès", "Personnes"),
        (*((r.label, (r.value,)) for r in rows), ("Total", (seen["total"],))),
    )
    return ChannelsChart(
        width=width,
        height=top * 2 + row * len(SEEN_SERIES),
        row=row,
        label_w=label_w,
        plot_w=plot_w,
        total=seen["total"],
        rows=rows,
        table=table,
    )


#: The SUdF target the QS60 chart draws: 99 % of calls answered within one minute.
QS60_TARGET = 0.99


@dataclass(frozen=True, slots=True)
class SharesChart(ChartFrame):
    """QS60 of one line per local hour, 0–100 %, with the SUdF target as a line."""

    offered: int
    grid: tuple[tuple[str, float], ...]  # (axis label, y)
    target_y: float
    target_label: str
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    table: DataTable

    @property
    def empty(self) -> bool:
        return self.offered == 0


def qs60_chart(line: Mapping[str, Any], line_label: str) -> SharesChart:
    """Bars of QS60 (answered within 60 s / offered) per local hour of the month, every
    day type together, from a line's ``by_hour`` (``core.answer_quality``). An hour
    without a call offered has no bar (nothing to measure), and "—" in the table; an
    hour at 0 % has a 2-unit stub, so that it reads as measured, not as empty."""
    frame = chart_frame(
        "qs60",
        f"QS60 par heure de la journée — {line_label}",
        "Aucun appel présenté ce mois-ci",
        (760, 312),
        (56, 12, 28, 64),
    )
    top, plot_h = frame["top"], frame["plot_h"]
    hours = hourly_qs60(line)
    grid = tuple((f"{p}\u00a0%", top + plot_h - p / 100 * plot_h) for p in (0, 25, 50, 75, 100))
    xs, bar_w, ticks = hour_columns(frame)
    bars: list[Bar] = []
    rows: list[tuple[str, tuple[int | str, ...]]] = []
    for hour, (offered, within, qs60) in enumerate(hours):
        x = xs[hour]
        rows.append((f"{hour:02d} h", (offered, within, share_text(qs60, "—"))))
        if qs60 is None:
            continue
        h = max(qs60 * plot_h, 2.0)
        title = (
            f"{hour:02d} h — QS60 : {share_text(qs60)} "
            f"({french_number(within)} sur {french_number(offered)} "
            f"appel{'s' if offered > 1 else ''} présenté{'s' if offered > 1 else ''})"
        )
        bars.append(Bar("qs60", x, top + plot_h - h, bar_w, h, title))
    table = DataTable(
        ("Heure", QUALITY_LABELS["offered"], QUALITY_LABELS["answered_within_60s"], "QS60"),
        tuple(rows),
    )
    return SharesChart(
        **frame,
        offered=sum(offered for offered, _, _ in hours),
        grid=grid,
        target_y=top + plot_h - QS60_TARGET * plot_h,
        target_label=f"objectif SUdF {share_text(QS60_TARGET)}",
        bars=tuple(bars),
        ticks=ticks,
        table=table,
    )
