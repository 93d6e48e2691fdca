"""The report's charts: scale, bar geometry, empty months, and the data tables beside them."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jinja2
import pytest
from markupsafe import Markup

from regulator.core.models import DayType
from regulator.web.charts import (
    DataTable,
    channels_chart,
    french_number,
    hours_chart,
    nice_scale,
    qs60_chart,
)
from regulator.web.console.render import environment

WEB = Path(__file__).resolve().parents[2] / "regulator" / "web"
DAY_TYPES = [d.value for d in DayType]


def peaks(**hours: dict[int, int]) -> dict[str, list[int]]:
    """Day type → 24 counts, zero except the given ``{hour: count}``."""
    out = {d: [0] * 24 for d in DAY_TYPES}
    for day_type, counts in hours.items():
        for hour, count in counts.items():
            out[day_type][hour] = count
    return out


SEEN = {
    "total": 10,
    "via_regulation": 6,
    "direct_access": 3,
    "emergency_reorientation": 1,
    "other": 0,
}


def template_module(name: str) -> Any:
    """A template's macros, callable from Python (Jinja2 types them loosely)."""
    return environment().get_template(name).module


@pytest.fixture(scope="module")
def charts() -> Any:
    return template_module("charts.html")


class Tables(HTMLParser):
    """The cells of every table, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None


def tables_of(markup: str) -> list[list[list[str]]]:
    parser = Tables()
    parser.feed(markup)
    return parser.tables


# ------------------------------------------------------------------ scale


@pytest.mark.parametrize(
    ("peak", "top", "step"),
    [
        (0, 4, 1),  # empty month: a 0–4 axis rather than a division by zero
        (1, 1, 1),
        (4, 4, 1),
        (5, 6, 2),
        (9, 10, 5),
        (17, 20, 5),
        (40, 40, 10),
        (41, 60, 20),
        (1234, 1500, 500),
    ],
)
def test_axis_maximum_is_a_round_number_at_or_above_the_peak(
    peak: int, top: int, step: int
) -> None:
    assert nice_scale(peak) == (top, step)
    assert top >= peak
    assert top % step == 0
    assert top // step <= 5  # a handful of grid lines, never a comb


def test_hours_axis_is_scaled_on_the_busiest_hour_all_day_types_stacked() -> None:
    chart = hours_chart(peaks(weekday={21: 5}, saturday={21: 2, 14: 3}))
    assert chart.axis_top == 8  # busiest hour is 21 h with 5 + 2 = 7 calls
    assert [g.value for g in chart.grid] == [0, 2, 4, 6, 8]
    assert chart.grid[0].y == chart.top + chart.plot_h  # 0 on the baseline
    assert chart.grid[-1].y == chart.top  # the maximum at the top of the plot


def test_bar_heights_are_proportional_and_stack_from_the_baseline() -> None:
    chart = hours_chart(peaks(weekday={21: 5}, saturday={21: 2}, holiday={3: 10}))
    per_call = chart.plot_h / chart.axis_top
    weekday, saturday = (b for b in chart.bars if b.title.startswith("21 h"))
    assert (weekday.series, saturday.series) == ("weekday", "saturday")
    assert weekday.height == pytest.approx(5 * per_call)
    assert saturday.height == pytest.approx(2 * per_call)
    assert weekday.y + weekday.height == pytest.approx(chart.top + chart.plot_h)
    assert saturday.y + saturday.height == pytest.approx(weekday.y)  # stacked on top
    holiday = next(b for b in chart.bars if b.series == "holiday")
    assert holiday.height == pytest.approx(chart.plot_h)  # the peak fills the plot
    assert holiday.title == "03 h — jours fériés : 10 appels"
    assert weekday.title == "21 h — jours de semaine : 5 appels"


def test_a_single_call_is_singular_and_zero_counts_draw_no_bar() -> None:
    chart = hours_chart(peaks(sunday={8: 1}))
    assert [b.title for b in chart.bars] == ["08 h — dimanches : 1 appel"]


def test_empty_month_draws_no_bar_and_says_so(charts: Any) -> None:
    chart = hours_chart(peaks())
    assert chart.empty
    assert chart.bars == ()
    assert (chart.axis_top, chart.step) == (4, 1)
    markup = str(charts.hours_chart(chart))
    assert "Aucun appel ce mois-ci" in markup
    assert '<rect class="s-weekday" x' in markup  # the legend is still drawn
    assert len(tables_of(markup)[0]) == 1 + 24  # and the table still lists every hour


def test_patient_flow_chart_counts_persons_seen_with_its_own_words_and_ids(
    charts: Any,
) -> None:
    chart = hours_chart(peaks(saturday={14: 1}, holiday={10: 3}), "visits")
    assert sorted(b.title for b in chart.bars) == [
        "10 h — jours fériés : 3 personnes vues",
        "14 h — samedis : 1 personne vue",
    ]
    assert chart.total == 4 and chart.axis_top >= 3  # scaled on the busiest hour (3)
    markup = str(charts.hours_chart(chart))
    assert 'aria-labelledby="chart-visits-title chart-visits-desc"' in markup
    assert "Personnes vues en consultation par heure d'arrivée" in html.unescape(markup)
    empty = str(charts.hours_chart(hours_chart(peaks(), "visits")))
    assert "Aucune personne vue ce mois-ci" in empty
    calls = str(charts.hours_chart(hours_chart(peaks(), "calls")))
    assert 'id="chart-calls-title"' in calls  # two charts on one page: distinct ids


def test_channel_bars_scale_on_the_largest_channel() -> None:
    chart = channels_chart(SEEN)
    widths = {r.channel: r.width for r in chart.rows}
    assert widths["regulation"] == pytest.approx(chart.plot_w)
    assert widths["direct"] == pytest.approx(chart.plot_w / 2)
    assert widths["other"] == 0.0
    assert channels_chart(dict.fromkeys(SEEN, 0)).rows[0].width == 0.0  # no division by 0


def cell(offered: int, within: int) -> dict[str, int]:
    """The two counts of an answer-quality block the QS60 chart reads."""
    return {"offered": offered, "answered_within_60s": within}


def test_qs60_bars_merge_the_day_types_of_an_hour_from_the_counts(charts: Any) -> None:
    # 20 h: 3 of 4 on weekdays, 0 of 1 on Saturdays → 3 / 5, not the mean of 75 % and 0 %.
    line = {
        "by_hour": {
            "weekday": {"20": cell(4, 3), "02": cell(0, 0)},  # 02 h: only short abandons
            "saturday": {"20": cell(1, 0), "23": cell(2, 2)},
        }
    }
    chart = qs60_chart(line, "Ligne de régulation")
    assert not chart.empty and chart.offered == 7
    twenty, twenty_three = chart.bars
    assert twenty.height == pytest.approx(0.6 * chart.plot_h)
    assert twenty.y + twenty.height == pytest.approx(chart.top + chart.plot_h)
    assert twenty_three.height == pytest.approx(chart.plot_h)
    assert twenty.title == "20 h — QS60 : 60,0\u00a0% (3 sur 5 appels présentés)"
    assert chart.target_y == pytest.approx(chart.top + 0.01 * chart.plot_h)  # 99 %
    (table,) = tables_of(str(charts.shares_chart(chart)))
    assert table[0] == ["Heure", "Appels présentés", "Décrochés en moins de 60 s", "QS60"]
    assert table[1 + 20] == ["20 h", "5", "3", "60,0\u00a0%"]
    assert table[1 + 2] == ["02 h", "0", "0", "—"]  # nothing offered: no share, no bar
    assert len(table) == 25


def test_qs60_chart_of_a_month_without_calls_says_so(charts: Any) -> None:
    chart = qs60_chart({"by_hour": {}}, "Accueil")
    assert chart.empty and chart.bars == ()
    markup = html.unescape(str(charts.shares_chart(chart)))
    assert "Aucun appel présenté ce mois-ci" in markup
    assert 'aria-labelledby="chart-qs60-title chart-qs60-desc"' in markup
    assert "style=" not in markup and "<script" not in markup


# ------------------------------------------------------- tables beside charts


def test_hours_chart_has_its_figures_in_a_table_hour_by_hour(
    charts: Any,
) -> None:
    chart = hours_chart(peaks(weekday={21: 1200}, bridge={21: 3}))
    markup = str(charts.hours_chart(chart))
    assert markup.index("</svg>") < markup.index('<details class="chart-data">')
    (table,) = tables_of(markup)
    assert table[0] == [
        "Heure",
        "jours de semaine",
        "samedis",
        "dimanches",
        "jours fériés",
        "ponts",
        "Total",
    ]
    assert len(table) == 25
    assert table[1 + 21] == ["21 h", "1\u202f200", "0", "0", "0", "3", "1\u202f203"]
    assert table[1] == ["00 h", "0", "0", "0", "0", "0", "0"]


def test_channels_chart_has_its_figures_in_a_table_with_the_total(
    charts: Any,
) -> None:
    markup = str(charts.channels_chart(channels_chart(SEEN)))
    (table,) = tables_of(markup)
    assert table == [
        ["Mode d'accès", "Personnes"],
        ["Via la régulation de la PDS", "6"],
        ["Accès direct (hors régulation préalable)", "3"],
        ["Après réorientation par un service d'urgences", "1"],
        ["Autres cas", "0"],
        ["Total", "10"],
    ]
    assert "Total du mois : 10. Via la régulation de la PDS : 6;" in markup


def test_chart_svg_is_accessible_and_has_nothing_inline(
    charts: Any,
) -> None:
    for markup in (
        str(charts.hours_chart(hours_chart(peaks(weekday={20: 2})))),
        str(charts.channels_chart(channels_chart(SEEN))),
    ):
        assert markup.count('role="img"') == 1
        assert re.search(r'aria-labelledby="(\S+)-title \1-desc"', markup)
        assert "style=" not in markup
        assert "<script" not in markup


def test_data_table_cells_use_french_thousands() -> None:
    assert french_number(1234567) == "1\u202f234\u202f567"
    table = DataTable(("Mois", "Appels"), (("novembre", (12345,)),))
    markup = str(template_module("charts.html").data_table(table, "Légende"))
    assert tables_of(markup)[0][1] == ["novembre", "12\u202f345"]
    assert "<caption>Légende</caption>" in markup


# ------------------------------------------------------------- environment


def test_templates_escape_values_and_refuse_undefined_names() -> None:
    env = environment()
    macros = template_module("macros.html")
    rendered = macros.options([("x", '<script>alert("1")</script>')])
    assert "<script>" not in str(rendered)
    assert "&lt;script&gt;" in str(rendered)
    assert isinstance(rendered, Markup)
    with pytest.raises(jinja2.UndefinedError):
        env.get_template("error.html").render(title="t")


def test_console_python_modules_hold_no_html() -> None:
    sources = [WEB / "consoles.py", WEB / "charts.py", *sorted((WEB / "console").glob("*.py"))]
    tag = re.compile(r"<(/?)(a|p|div|span|tr|td|th|table|svg|rect|text|li|ul|nav|option|form)\b")
    offenders = [
        f"{path.name}:{n}"
        for path in sources
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if tag.search(line)
    ]
    assert offenders == []
