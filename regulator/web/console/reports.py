"""The monthly indicators page: the circular's figures, the answer quality of the lines,
four charts, qualitative data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from regulator.core import answer_quality as aq
from regulator.core.figures import (
    COST_SECTION,
    ED_SECTION,
    NOT_ENTERED,
    FigureEntry,
    FigureKind,
    entered_rows,
    entered_text,
)
from regulator.core.indicators import INDICATORS, Section, report_rows, valid_month
from regulator.core.labels import DAY_TYPE_PLURALS, ROUTE_REPORT_LABELS, month_label
from regulator.core.models import DayType, Route
from regulator.logs import get_logger
from regulator.ports import Store, StoreError
from regulator.reporting import month_report
from regulator.web import keys
from regulator.web.access import Permission
from regulator.web.charts import channels_chart, hours_chart, qs60_chart
from regulator.web.console.render import (
    denied,
    error_page,
    mmg_page_access,
    page,
    protocols,
    redirect,
    to_login,
    who,
)

log = get_logger("regulator.consoles")

#: (row key or "", French label, value): one line of an indicators table.
Row = tuple[str, str, int]


def shift_month(month: str, delta: int) -> str:
    """``2026-12`` + 1 → ``2027-01``."""
    year, mon = int(month[:4]), int(month[5:])
    index = year * 12 + (mon - 1) + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def circular_rows(report: Mapping[str, Any]) -> list[Row]:
    """The circular's figures, in its order."""
    return report_rows(report)[: len(INDICATORS)]


def detail_rows(report: Mapping[str, Any]) -> list[Row]:
    """Calls by route and by day type, and the fail-safe count."""
    rows: list[Row] = [
        (f"calls_by_route.{route}", ROUTE_REPORT_LABELS[Route(route)], count)
        for route, count in report["calls_by_route"].items()
    ]
    rows += [
        ("", f"Appels reçus — {DAY_TYPE_PLURALS[DayType(day)]}", count)
        for day, count in report["calls_by_day_type"].items()
    ]
    rows.append(
        (
            "calls_failsafe",
            "Appels routés par sécurité vers le centre 15",
            report["calls_failsafe"],
        )
    )
    return rows


def quality_rows(quality: Mapping[str, Any]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(field, French label, text for each line of ``aq.LINES``) of the answer-quality
    table: shares in percent, waits in seconds, "non calculable" when nothing to divide."""
    return [
        (
            field,
            aq.LABELS[field],
            tuple(aq.value_text(field, quality[line][field]) for line in aq.LINES),
        )
        for field in aq.FIELDS
    ]


def qualitative_tables(report: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, int]]]:
    """(caption, column head, counts) for each qualitative breakdown with data."""
    tables = (
        ("age_band", "Tranches d'âge des personnes vues", "Tranche d'âge"),
        ("reason", "Motifs de consultation", "Motif"),
    )
    return [
        (title, head, report["qualitative"][key])
        for key, title, head in tables
        if report["qualitative"][key]
    ]


def _field_values(section: Section, entry: FigureEntry | None) -> list[tuple[str, str, str]]:
    """(field, label, current value or "") of one entry form."""
    values = entry.values if entry is not None else {}
    out = []
    for indicator in section.indicators:
        name = indicator.key.rsplit(".", 1)[1]
        value = values.get(name)
        out.append((name, indicator.label, "" if value is None else f"{value:g}"))
    return out


async def _figures_forms(store: Store, mmg: str, month: str) -> dict[str, Any]:
    """The coordinator's entry forms of the page: ED passages of the month, the
    year's costs, prefilled with what was entered."""
    year = month[:4]
    ed = await store.get_figures(mmg, FigureKind.ED_PASSAGES, month)
    costs = await store.get_figures(mmg, FigureKind.COSTS, year)
    return {
        "year": year,
        "ed_href": f"/api/v1/figures/{quote(mmg)}/{month}",
        "costs_href": f"/api/v1/figures/{quote(mmg)}/{year}",
        "ed_fields": _field_values(ED_SECTION, ed),
        "ed_source_value": (ed.source or "") if ed is not None else "",
        "cost_fields": _field_values(COST_SECTION, costs),
    }


async def reports_redirect(request: web.Request) -> web.Response:
    """``GET /console/reports?mmg=…&month=…``: the month picker's target."""
    person = who(request)
    if person is None:
        return to_login(request)
    mmg = request.query.get("mmg", "")
    if not mmg:
        reportable = [p.id for p in protocols(request) if person.can_report(p.id)]
        if not reportable:
            return denied(request, person, "aux indicateurs")
        mmg = reportable[0]
    month = request.query.get("month", "")
    suffix = "?" + urlencode({"month": month}) if month else ""
    return redirect(f"/console/reports/{quote(mmg)}{suffix}")


async def reports_page(request: web.Request) -> web.Response:
    """``GET /console/reports/{mmg}?month=YYYY-MM``: the month's indicators and charts."""
    access = mmg_page_access(request, Permission.REPORT)
    if isinstance(access, web.Response):
        return access
    person, proto = access
    mmg = proto.id
    now_month = request.config_dict[keys.CLOCK].now().astimezone(proto.tz).strftime("%Y-%m")
    month = request.query.get("month") or now_month
    if not valid_month(month):
        return error_page(
            request,
            person,
            400,
            "Mois invalide",
            f"Mois « {month} » invalide : format attendu AAAA-MM (par exemple {now_month}).",
        )
    store = request.config_dict[keys.STORE]
    try:
        short = request.config_dict[keys.SETTINGS].short_abandon_s
        report = await month_report(store, proto, month, short_abandon_s=short)
        forms = await _figures_forms(store, mmg, month) if person.can_enter_figures() else {}
    except (StoreError, OSError) as exc:
        log.warning("report_store_failed", mmg=mmg, error=str(exc))
        return error_page(
            request,
            person,
            503,
            "Stockage indisponible",
            "Les indicateurs ne peuvent pas être lus pour le moment ; réessayez dans un instant.",
        )
    api = f"/api/v1/reports/{quote(mmg)}/{month}"
    prev_month, next_month = shift_month(month, -1), shift_month(month, 1)
    return page(
        request,
        person,
        "reports.html",
        scripts=("common.js", "reports.js") if forms else (),
        figures_forms=bool(forms),
        **forms,
        title=f"Indicateurs — {proto.name} — {month_label(month)}",
        current="reports",
        mmg=mmg,
        name=proto.name,
        month=month,
        month_label=month_label(month),
        mmgs=[p for p in protocols(request) if person.can_report(p.id)],
        prev_href=f"/console/reports/{quote(mmg)}?month={prev_month}",
        prev_label=month_label(prev_month),
        next_href=f"/console/reports/{quote(mmg)}?month={next_month}",
        next_label=month_label(next_month),
        csv_href=f"{api}?format=csv",
        xlsx_href=f"{api}?format=xlsx",
        md_href=f"{api}?format=md",
        json_href=api,
        report=report,
        circular=circular_rows(report),
        entered_title=ED_SECTION.title,
        entered=[
            (key, label, entered_text(value))
            for key, label, value in entered_rows(report["entered"])
        ],
        entered_source=(report["entered"]["ed_passages"] or {}).get("source") or NOT_ENTERED,
        details=detail_rows(report),
        hours=hours_chart(report["peaks"]["calls"], "calls"),
        visit_hours=hours_chart(report["peaks"]["visits"], "visits"),
        channels=channels_chart(report["persons_seen"]),
        qualitative=qualitative_tables(report),
        quality_lines=[aq.LINE_LABELS[line] for line in aq.LINES],
        quality=quality_rows(report["answer_quality"]),
        short_abandon=aq.seconds_text(report["answer_quality"]["short_abandon_s"]),
        qs60=qs60_chart(report["answer_quality"]["regulation"], aq.LINE_LABELS["regulation"]),
    )
