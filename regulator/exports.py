"""Reports and exports as files a reviewer opens: CSV in French conventions, and the
rows, labels and values the workbooks (:mod:`regulator.workbooks`) share with it.

Pure functions from the JSON report (``core.indicators.build_report``) and the annual
export (``reporting.annual_export``) to bytes or text. Every figure of a file is one of
the JSON's, under its French label; the machine key stays in a last column ("Clé")
so a file and its JSON can be matched row by row.

French spreadsheet conventions for CSV (what Excel and LibreOffice in a French locale
open as columns): ``;`` separator, UTF-8 with a byte-order mark, decimal comma.
Shares are written as percentages (``41,67``) under a header saying "(%)", empty when
they cannot be computed (nobody seen, no call offered); in a workbook such a cell
says "non calculable".
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from regulator.core import answer_quality as aq
from regulator.core.figures import (
    NOT_ENTERED,
    FigureKind,
    entered_rows,
    is_euros,
)
from regulator.core.indicators import (
    INDICATORS,
    SHARE_REGULATED,
    report_rows,
)
from regulator.core.labels import month_label

BOM = "\ufeff"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: Shown for a share when nobody was seen (never 0: 0 would say "nobody regulated").
NOT_COMPUTABLE = "non calculable"
SHARE_PERCENT_LABEL = f"{SHARE_REGULATED.label} (%)"
#: Row key of the ED passages' source in the monthly files.
ED_SOURCE_KEY = "entered.ed_passages.source"


def percent_text(value: float | None) -> str:
    """A share 0–1 as a French percentage without the sign: ``41,67``; empty when None."""
    return "" if value is None else f"{value * 100:.2f}".replace(".", ",")


def annual_rows(report: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """(key, label, value) rows of one month in the annual export: the circular's
    figures, calls by route, ground and day type; not the 24 hourly rows."""
    return [row for row in report_rows(report) if not row[0].startswith("calls_by_hour.")]


def month_rows(report: Mapping[str, Any], *, hours: bool = True) -> list[tuple[str, str, Any]]:
    """Every figure of a monthly report as (key, label, value): the circular's counts,
    the share regulated (0–1 or None), the entered figures (None: not entered), the
    call breakdowns, then the answer quality of each line (shares 0–1 or None, waits
    in seconds or None); with ``hours`` (not in the annual export) the hourly call rows
    and the answer quality of every hour × day type that had a leg."""
    rows = report_rows(report) if hours else annual_rows(report)
    at = len(INDICATORS)
    share_row = (SHARE_REGULATED.key, SHARE_REGULATED.label, report["share_regulated"])
    quality = report.get("answer_quality")
    extra: list[tuple[str, str, Any]] = []
    if quality is not None:
        extra = aq.report_rows(quality) + (aq.hour_rows(quality) if hours else [])
    return [*rows[:at], share_row, *entered_rows(report.get("entered", {})), *rows[at:], *extra]


def annual_columns(export: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, label) of every figure of the annual export, in the files' order: a month's
    figures, then the year's cost table (entered for the year, not per month)."""
    for data in export["mmgs"].values():
        rows = [(k, label) for k, label, _ in month_rows(data["months"][0], hours=False)]
        return rows + [(k, label) for k, label, _ in entered_rows(data["entered"])]
    return []


def export_labels(export: Mapping[str, Any]) -> dict[str, str]:
    """Machine key → French label of every figure of the export (its JSON ``labels``)."""
    return dict(annual_columns(export))


def month_values(report: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, _, value in month_rows(report, hours=False)}


def quality_field(key: str) -> str | None:
    """The answer-quality field a flat key names (``answer_quality.….qs60`` → ``qs60``)."""
    return key.rsplit(".", 1)[1] if key.startswith("answer_quality.") else None


def _text(key: str, value: Any) -> Any:
    """A CSV cell: shares in percent, figures not entered said so, euros with a comma,
    waits in seconds with one decimal; a figure that cannot be computed is empty."""
    field = quality_field(key)
    if key == SHARE_REGULATED.key or field in aq.SHARES:
        return percent_text(value)
    if field in aq.SECONDS:
        return "" if value is None else f"{value:.1f}".replace(".", ",")
    if value is None and key.startswith("entered."):
        return NOT_ENTERED
    if isinstance(value, float):
        return f"{value:.2f}".replace(".", ",")
    return value


def _label(key: str, label: str) -> str:
    if key == SHARE_REGULATED.key:
        return SHARE_PERCENT_LABEL
    if quality_field(key) in aq.SHARES:
        return f"{label} (%)"
    return f"{label} (€)" if is_euros(key) else label


def _csv_writer(out: io.StringIO) -> Any:
    return csv.writer(out, delimiter=";", lineterminator="\r\n")


# ------------------------------------------------------------------------ monthly


def report_csv(report: Mapping[str, Any]) -> str:
    """The monthly report as ``Indicateur;Valeur;Clé`` rows, French conventions."""
    out = io.StringIO()
    writer = _csv_writer(out)
    writer.writerow(["Indicateur", "Valeur", "Clé"])
    writer.writerow(["MMG", report["mmg"], "mmg"])
    writer.writerow(["Mois", month_label(report["month"]), "month"])
    for key, label, value in month_rows(report):
        writer.writerow([_label(key, label), _text(key, value), key])
    ed = (report.get("entered") or {}).get(FigureKind.ED_PASSAGES.value)
    if ed is not None:
        writer.writerow(["Source des passages aux urgences", ed["source"], ED_SOURCE_KEY])
    return BOM + out.getvalue()


def export_csv(export: Mapping[str, Any]) -> str:
    """One row per MMG and month, then the MMG's yearly total row; French conventions.
    The cost table is the year's: only on the total row."""
    out = io.StringIO()
    writer = _csv_writer(out)
    columns = annual_columns(export)
    writer.writerow(["MMG", "Mois", *(_label(k, label) for k, label in columns)])
    for mmg, data in export["mmgs"].items():
        for report in data["months"]:
            values = month_values(report)
            cells = [_text(k, values[k]) if k in values else "" for k, _ in columns]
            writer.writerow([mmg, month_label(report["month"]), *cells])
        totals = data["totals"]
        cells = [_text(k, totals[k]) for k, _ in columns]
        writer.writerow([mmg, f"Total {export['year']}", *cells])
    return BOM + out.getvalue()
