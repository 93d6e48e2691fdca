"""Reports and exports as files a reviewer opens: XLSX and CSV in French conventions.

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
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from regulator.core import answer_quality as aq
from regulator.core.figures import (
    ED_SECTION,
    NOT_ENTERED,
    FigureKind,
    entered_rows,
    is_euros,
)
from regulator.core.indicators import (
    CIRCULAR_SECTIONS,
    INDICATORS,
    OTHER_OUTCOMES,
    SHARE_REGULATED,
    report_rows,
)
from regulator.core.labels import DAY_TYPE_PLURALS, month_label
from regulator.core.models import DayType

if TYPE_CHECKING:
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.worksheet.worksheet import Worksheet

# openpyxl (~6 MB resident) is imported by the functions that write a workbook, not
# with this module: the webhook path imports it (the API's media types), and every
# worker would otherwise carry it whether anyone ever downloads a spreadsheet.

BOM = "\ufeff"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: Shown for a share when nobody was seen (never 0: 0 would say "nobody regulated").
NOT_COMPUTABLE = "non calculable"
SHARE_PERCENT_LABEL = f"{SHARE_REGULATED.label} (%)"
_PERCENT_FORMAT = "0.0%"
_SECONDS_FORMAT = "0.0"
_EUROS_FORMAT = '#,##0.00 "€"'
#: Row key of the ED passages' source in the monthly files.
_ED_SOURCE = "entered.ed_passages.source"


@cache
def _bold() -> Font:
    from openpyxl.styles import Font

    return Font(bold=True)


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


def _month_values(report: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, _, value in month_rows(report, hours=False)}


def _quality_field(key: str) -> str | None:
    """The answer-quality field a flat key names (``answer_quality.….qs60`` → ``qs60``)."""
    return key.rsplit(".", 1)[1] if key.startswith("answer_quality.") else None


def _text(key: str, value: Any) -> Any:
    """A CSV cell: shares in percent, figures not entered said so, euros with a comma,
    waits in seconds with one decimal; a figure that cannot be computed is empty."""
    field = _quality_field(key)
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
    if _quality_field(key) in aq.SHARES:
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
        writer.writerow(["Source des passages aux urgences", ed["source"], _ED_SOURCE])
    return BOM + out.getvalue()


def _title(sheet: Worksheet, text: str) -> None:
    from openpyxl.styles import Font

    sheet["A1"] = text
    sheet["A1"].font = Font(bold=True, size=13)


def _share_cell(sheet: Worksheet, row: int, column: int, value: float | None) -> None:
    from openpyxl.styles import Alignment

    cell = sheet.cell(row=row, column=column, value=NOT_COMPUTABLE if value is None else value)
    if value is not None:
        cell.number_format = _PERCENT_FORMAT
    cell.alignment = Alignment(horizontal="right")


def _widths(sheet: Worksheet, first: int, others: int, count: int) -> None:
    from openpyxl.utils import get_column_letter

    sheet.column_dimensions["A"].width = first
    for column in range(2, count + 1):
        sheet.column_dimensions[get_column_letter(column)].width = others


def report_xlsx(report: Mapping[str, Any], name: str | None = None) -> bytes:
    """The monthly report as a workbook: sheet "Indicateurs" (the circular's sections,
    then the call breakdowns) and sheet "Pics d'activité" (per hour × day type)."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Indicateurs"
    title = f"Indicateurs de suivi — {name or report['mmg']} — {month_label(report['month'])}"
    _title(sheet, title)
    sheet.append([])
    sheet.append(["Indicateur", "Valeur", "Clé"])
    for cell in sheet[3]:
        cell.font = _bold()
    values = {key: value for key, _, value in report_rows(report)}
    for section in (*CIRCULAR_SECTIONS, OTHER_OUTCOMES):
        sheet.append([section.title])
        sheet.cell(row=sheet.max_row, column=1).font = _bold()
        for indicator in section.indicators:
            sheet.append([indicator.label, values[indicator.key], indicator.key])
            if indicator.key == "persons_seen.other":
                sheet.append([SHARE_REGULATED.label, None, SHARE_REGULATED.key])
                _share_cell(sheet, sheet.max_row, 2, report["share_regulated"])
    entered = report.get("entered", {})
    sheet.append([ED_SECTION.title])
    sheet.cell(row=sheet.max_row, column=1).font = _bold()
    for key, label, figure in entered_rows(entered):
        sheet.append([label, NOT_ENTERED if figure is None else figure, key])
    ed = entered.get(FigureKind.ED_PASSAGES.value)
    sheet.append(["Source", NOT_ENTERED if ed is None else ed["source"], _ED_SOURCE])
    sheet.append(["Appels (hors tableau de la circulaire)"])
    sheet.cell(row=sheet.max_row, column=1).font = _bold()
    for key, label, value in report_rows(report)[len(INDICATORS) :]:
        sheet.append([label, value, key])
    _widths(sheet, 90, 14, 3)
    sheet.column_dimensions["C"].width = 34
    _peaks_sheet(book.create_sheet("Pics d'activité"), report)
    if "answer_quality" in report:
        quality = book.create_sheet("Qualité de décroché")
        heading = f"Qualité de décroché — {name or report['mmg']} — {month_label(report['month'])}"
        _quality_sheet(quality, report["answer_quality"], heading)
    return _save(book)


def _quality_value(sheet: Worksheet, row: int, column: int, field: str, value: Any) -> None:
    """An answer-quality cell: shares as percentages, waits in seconds, null said so."""
    from openpyxl.styles import Alignment

    if field in aq.SHARES:
        _share_cell(sheet, row, column, value)
        return
    cell = sheet.cell(row=row, column=column, value=NOT_COMPUTABLE if value is None else value)
    if value is None:
        cell.alignment = Alignment(horizontal="right")
    elif field in aq.SECONDS:
        cell.number_format = _SECONDS_FORMAT


def _quality_sheet(sheet: Worksheet, quality: Mapping[str, Any], heading: str) -> None:
    """The lines' figures side by side (one row per figure, its key last), then one
    row per line × day type × hour that had a leg, one column per figure."""
    from openpyxl.styles import Alignment

    _title(sheet, heading)
    short = aq.seconds_text(quality["short_abandon_s"])
    sheet.append([f"Abandons courts : raccroché moins de {short} après la présentation (exclus)"])
    sheet.append(["Indicateur", *(aq.LINE_LABELS[line] for line in aq.LINES), "Clé"])
    for cell in sheet[3]:
        cell.font = _bold()
    for field in aq.FIELDS:
        sheet.append([aq.LABELS[field]])
        row = sheet.max_row
        for column, line in enumerate(aq.LINES, start=2):
            _quality_value(sheet, row, column, field, quality[line][field])
        sheet.cell(row=row, column=2 + len(aq.LINES), value=field)
    sheet.append([])
    sheet.append(["Par heure et type de jour (heure locale de présentation de l'appel)"])
    sheet.cell(row=sheet.max_row, column=1).font = _bold()
    sheet.append(["Ligne", "Type de jour", "Heure", *(aq.LABELS[f] for f in aq.FIELDS)])
    for cell in sheet[sheet.max_row]:
        cell.font = _bold()
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for line, day_type, hour, block in aq.hour_cells(quality):
        sheet.append([aq.LINE_LABELS[line], DAY_TYPE_PLURALS[day_type], f"{hour} h"])
        row = sheet.max_row
        for column, field in enumerate(aq.FIELDS, start=4):
            _quality_value(sheet, row, column, field, block[field])
    _widths(sheet, 48, 20, 3 + len(aq.FIELDS))


def _peaks_sheet(sheet: Worksheet, report: Mapping[str, Any]) -> None:
    """Calls then persons seen, one row per hour, one column per day type."""
    row = 1
    for kind, title in (("calls", "Appels reçus"), ("visits", "Personnes vues")):
        peaks = report["peaks"][kind]
        sheet.cell(row=row, column=1, value=f"{title} par heure et type de jour").font = _bold()
        header = ["Heure", *(DAY_TYPE_PLURALS[d] for d in DayType)]
        for column, text in enumerate(header, start=1):
            sheet.cell(row=row + 1, column=column, value=text).font = _bold()
        for hour in range(24):
            sheet.cell(row=row + 2 + hour, column=1, value=f"{hour:02d} h")
            for column, day_type in enumerate(DayType, start=2):
                sheet.cell(row=row + 2 + hour, column=column, value=peaks[day_type.value][hour])
        row += 24 + 3
    _widths(sheet, 10, 16, 1 + len(DayType))


def _save(book: Workbook) -> bytes:
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# ------------------------------------------------------------------------- annual


def export_csv(export: Mapping[str, Any]) -> str:
    """One row per MMG and month, then the MMG's yearly total row; French conventions.
    The cost table is the year's: only on the total row."""
    out = io.StringIO()
    writer = _csv_writer(out)
    columns = annual_columns(export)
    writer.writerow(["MMG", "Mois", *(_label(k, label) for k, label in columns)])
    for mmg, data in export["mmgs"].items():
        for report in data["months"]:
            values = _month_values(report)
            cells = [_text(k, values[k]) if k in values else "" for k, _ in columns]
            writer.writerow([mmg, month_label(report["month"]), *cells])
        totals = data["totals"]
        cells = [_text(k, totals[k]) for k, _ in columns]
        writer.writerow([mmg, f"Total {export['year']}", *cells])
    return BOM + out.getvalue()


def _sheet_name(mmg: str, taken: set[str]) -> str:
    """An Excel sheet name (31 characters, none of ``[]:*?/\\``), unique in the book."""
    base = "".join("_" if c in "[]:*?/\\" else c for c in mmg)[:31] or "MMG"
    name, n = base, 2
    while name.lower() in taken:
        suffix = f" ({n})"
        name, n = base[: 31 - len(suffix)] + suffix, n + 1
    taken.add(name.lower())
    return name


def _figure_cell(sheet: Worksheet, row: int, column: int, key: str, value: Any) -> None:
    """A figure's cell: shares as percentages, euros as such, "non renseigné" if None."""
    from openpyxl.styles import Alignment

    if key == SHARE_REGULATED.key:
        _share_cell(sheet, row, column, value)
        return
    field = _quality_field(key)
    if field is not None:
        _quality_value(sheet, row, column, field, value)
        return
    cell = sheet.cell(row=row, column=column, value=NOT_ENTERED if value is None else value)
    if value is not None and is_euros(key):
        cell.number_format = _EUROS_FORMAT
    elif value is None:
        cell.alignment = Alignment(horizontal="right")


def export_xlsx(export: Mapping[str, Any]) -> bytes:
    """The annual export as a workbook: a "Synthèse" sheet (one row per MMG, the year's
    totals) then one sheet per MMG (one row per figure, 12 months and the year's total)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment

    year = export["year"]
    book = Workbook()
    summary = book.active
    assert summary is not None
    summary.title = "Synthèse"
    _title(summary, f"Indicateurs de suivi des maisons médicales de garde — année {year}")
    columns = annual_columns(export)
    summary.append([])
    summary.append(["MMG", "Nom", "Feuille", *(label for _, label in columns)])
    for cell in summary[3]:
        cell.font = _bold()
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    taken = {"synthèse"}
    for mmg, data in export["mmgs"].items():
        sheet = book.create_sheet(_sheet_name(mmg, taken))
        _mmg_sheet(sheet, year, data, columns)
        summary.append([mmg, data["name"], sheet.title])
        line = summary.max_row
        for column, (key, _) in enumerate(columns, start=4):
            _figure_cell(summary, line, column, key, data["totals"][key])
    _widths(summary, 14, 18, 3 + len(columns))
    summary.column_dimensions["B"].width = 40
    summary.freeze_panes = "D4"
    return _save(book)


def _mmg_sheet(
    sheet: Worksheet, year: int, data: Mapping[str, Any], columns: Sequence[tuple[str, str]]
) -> None:
    """Rows: figures; columns: the 12 months, the year's total, the key. A cost row has
    its months empty (the table is the year's) and the year's figure as total."""
    from openpyxl.utils import get_column_letter

    _title(sheet, f"{data['name']} — indicateurs {year}")
    sheet.append([])
    months = data["months"]
    sheet.append(["Indicateur", *(month_label(r["month"]) for r in months), f"Total {year}", "Clé"])
    for cell in sheet[3]:
        cell.font = _bold()
    values = [_month_values(r) for r in months]
    for key, label in columns:
        sheet.append([label])
        line = sheet.max_row
        if key in values[0]:
            for column, month in enumerate(values, start=2):
                _figure_cell(sheet, line, column, key, month[key])
        _figure_cell(sheet, line, 2 + len(months), key, data["totals"][key])
        sheet.cell(row=line, column=3 + len(months), value=key)
    _widths(sheet, 80, 14, 3 + len(months))
    sheet.column_dimensions[get_column_letter(3 + len(months))].width = 34
    sheet.freeze_panes = "B4"
