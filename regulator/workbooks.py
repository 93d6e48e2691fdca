"""Reports and exports as workbooks (XLSX): the same rows, labels and keys as the CSV
files of :mod:`regulator.exports`, with percentages, seconds and euros as number
formats, and "non calculable" where a share cannot be computed.

Its own module because openpyxl is ~6 MB resident: :mod:`regulator.reporting` imports
it only when a workbook is asked for, so a serving worker never carries it otherwise.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from regulator.core import answer_quality as aq
from regulator.core.figures import ED_SECTION, NOT_ENTERED, FigureKind, entered_rows, is_euros
from regulator.core.indicators import (
    CIRCULAR_SECTIONS,
    INDICATORS,
    OTHER_OUTCOMES,
    SHARE_REGULATED,
    report_rows,
)
from regulator.core.labels import DAY_TYPE_PLURALS, month_label
from regulator.core.models import DayType
from regulator.exports import (
    ED_SOURCE_KEY,
    NOT_COMPUTABLE,
    annual_columns,
    month_values,
    quality_field,
)

_PERCENT_FORMAT = "0.0%"
_SECONDS_FORMAT = "0.0"
_EUROS_FORMAT = '#,##0.00 "€"'
_BOLD = Font(bold=True)


def _title(sheet: Worksheet, text: str) -> None:
    sheet["A1"] = text
    sheet["A1"].font = Font(bold=True, size=13)


def _share_cell(sheet: Worksheet, row: int, column: int, value: float | None) -> None:
    cell = sheet.cell(row=row, column=column, value=NOT_COMPUTABLE if value is None else value)
    if value is not None:
        cell.number_format = _PERCENT_FORMAT
    cell.alignment = Alignment(horizontal="right")


def _widths(sheet: Worksheet, first: int, others: int, count: int) -> None:
    sheet.column_dimensions["A"].width = first
    for column in range(2, count + 1):
        sheet.column_dimensions[get_column_letter(column)].width = others


def report_xlsx(report: Mapping[str, Any], name: str | None = None) -> bytes:
    """The monthly report as a workbook: sheet "Indicateurs" (the circular's sections,
    then the call breakdowns) and sheet "Pics d'activité" (per hour × day type)."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Indicateurs"
    title = f"Indicateurs de suivi — {name or report['mmg']} — {month_label(report['month'])}"
    _title(sheet, title)
    sheet.append([])
    sheet.append(["Indicateur", "Valeur", "Clé"])
    for cell in sheet[3]:
        cell.font = _BOLD
    values = {key: value for key, _, value in report_rows(report)}
    for section in (*CIRCULAR_SECTIONS, OTHER_OUTCOMES):
        sheet.append([section.title])
        sheet.cell(row=sheet.max_row, column=1).font = _BOLD
        for indicator in section.indicators:
            sheet.append([indicator.label, values[indicator.key], indicator.key])
            if indicator.key == "persons_seen.other":
                sheet.append([SHARE_REGULATED.label, None, SHARE_REGULATED.key])
                _share_cell(sheet, sheet.max_row, 2, report["share_regulated"])
    entered = report.get("entered", {})
    sheet.append([ED_SECTION.title])
    sheet.cell(row=sheet.max_row, column=1).font = _BOLD
    for key, label, figure in entered_rows(entered):
        sheet.append([label, NOT_ENTERED if figure is None else figure, key])
    ed = entered.get(FigureKind.ED_PASSAGES.value)
    sheet.append(["Source", NOT_ENTERED if ed is None else ed["source"], ED_SOURCE_KEY])
    sheet.append(["Appels (hors tableau de la circulaire)"])
    sheet.cell(row=sheet.max_row, column=1).font = _BOLD
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
    _title(sheet, heading)
    short = aq.seconds_text(quality["short_abandon_s"])
    sheet.append([f"Abandons courts : raccroché moins de {short} après la présentation (exclus)"])
    sheet.append(["Indicateur", *(aq.LINE_LABELS[line] for line in aq.LINES), "Clé"])
    for cell in sheet[3]:
        cell.font = _BOLD
    for field in aq.FIELDS:
        sheet.append([aq.LABELS[field]])
        row = sheet.max_row
        for column, line in enumerate(aq.LINES, start=2):
            _quality_value(sheet, row, column, field, quality[line][field])
        sheet.cell(row=row, column=2 + len(aq.LINES), value=field)
    sheet.append([])
    sheet.append(["Par heure et type de jour (heure locale de présentation de l'appel)"])
    sheet.cell(row=sheet.max_row, column=1).font = _BOLD
    sheet.append(["Ligne", "Type de jour", "Heure", *(aq.LABELS[f] for f in aq.FIELDS)])
    for cell in sheet[sheet.max_row]:
        cell.font = _BOLD
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
        sheet.cell(row=row, column=1, value=f"{title} par heure et type de jour").font = _BOLD
        header = ["Heure", *(DAY_TYPE_PLURALS[d] for d in DayType)]
        for column, text in enumerate(header, start=1):
            sheet.cell(row=row + 1, column=column, value=text).font = _BOLD
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
    if key == SHARE_REGULATED.key:
        _share_cell(sheet, row, column, value)
        return
    field = quality_field(key)
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
        cell.font = _BOLD
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
    _title(sheet, f"{data['name']} — indicateurs {year}")
    sheet.append([])
    months = data["months"]
    sheet.append(["Indicateur", *(month_label(r["month"]) for r in months), f"Total {year}", "Clé"])
    for cell in sheet[3]:
        cell.font = _BOLD
    values = [month_values(r) for r in months]
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
