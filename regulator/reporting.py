"""Monthly reports and the annual export for the regional authority (ARS).

Used by ``regulator report`` / ``regulator export`` and by the API. Figures are
those of :mod:`regulator.core.indicators`, read from the configured store.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from regulator.core import answer_quality as aq
from regulator.core.figures import FigureKind, entered_one, entered_rows, sum_entered
from regulator.core.indicators import (
    SHARE_REGULATED,
    build_report,
    local_facts,
    month_bounds,
    report_markdown,
    share,
    valid_month,
)
from regulator.core.legs import Leg
from regulator.core.protocol import Protocol, ProtocolLoadError, ProtocolSet
from regulator.exports import annual_rows, export_csv, export_labels, report_csv
from regulator.ports import Store, StoreError
from regulator.protocols import load_protocols
from regulator.settings import Settings


async def month_report(
    store: Store, protocol: Protocol, month: str, *, short_abandon_s: float
) -> dict[str, Any]:
    """One MMG's report for one month (a calendar month in the MMG's time zone), from
    the store's counters, visits and dial legs, with the month's entered figures
    (``entered.ed_passages``: null until a coordinator enters them) and
    ``answer_quality`` (:mod:`regulator.core.answer_quality`; ``short_abandon_s``:
    the ``REGULATOR_SHORT_ABANDON_S`` setting)."""
    start, end = month_bounds(month, protocol.tz)
    legs = await store.legs(protocol.id, start, end)
    return await _month_report(store, protocol, month, legs, short_abandon_s)


def _answer_quality(protocol: Protocol, legs: list[Leg], short_abandon_s: float) -> dict[str, Any]:
    """The legs' figures, hours in the MMG's time zone, day types from its calendar."""
    return aq.answer_quality(legs, protocol.tz, protocol.schedule.day_type, short_abandon_s)


async def _month_report(
    store: Store, protocol: Protocol, month: str, legs: list[Leg], short_abandon_s: float
) -> dict[str, Any]:
    """:func:`month_report` with the month's legs already read."""
    counters = await store.call_counters(protocol.id, month)
    visits = await store.visits(protocol.id, month)
    report = build_report(protocol.id, month, counters, visits)
    ed = await store.get_figures(protocol.id, FigureKind.ED_PASSAGES, month)
    report["entered"] = {FigureKind.ED_PASSAGES.value: entered_one(ed)}
    report["answer_quality"] = _answer_quality(protocol, legs, short_abandon_s)
    return report


def _totals(
    months: list[dict[str, Any]], entered: dict[str, Any], quality: dict[str, Any]
) -> dict[str, Any]:
    """Yearly sums, the year's share regulated (from the sums, not an average), the ED
    passages (a sum only when all twelve months were entered), the year's costs and
    the year's answer quality (``quality``: computed from the year's legs, so the
    median wait and the shares are the year's, not an average of months)."""
    totals: dict[str, Any] = {}
    for report in months:
        for key, _, value in annual_rows(report):
            totals[key] = totals.get(key, 0) + value
    totals[SHARE_REGULATED.key] = share(
        totals.get("persons_seen.via_regulation", 0), totals.get("persons_seen.total", 0)
    )
    monthly = [dict((k, v) for k, _, v in entered_rows(r["entered"])) for r in months]
    for key in monthly[0]:
        totals[key] = sum_entered([m[key] for m in monthly])
    for key, _, figure in entered_rows(entered):
        totals[key] = figure
    for key, _, value in aq.report_rows(quality):
        totals[key] = value
    return totals


async def annual_export(
    store: Store,
    protocols: ProtocolSet,
    year: int,
    now: datetime | None = None,
    *,
    short_abandon_s: float,
) -> dict[str, Any]:
    """Twelve monthly reports per MMG plus yearly totals (share regulated included),
    the year's ``answer_quality`` (from the year's legs, read once and split by local
    month for the monthly blocks), and ``labels``: the French label of every key of
    the totals."""
    mmgs: dict[str, Any] = {}
    for proto in protocols:
        start = month_bounds(f"{year}-01", proto.tz)[0]
        end = month_bounds(f"{year}-12", proto.tz)[1]
        legs = await store.legs(proto.id, start, end)
        by_month: dict[str, list[Leg]] = {}
        for leg in legs:
            by_month.setdefault(local_facts(leg.offered_at, proto.tz)[0], []).append(leg)
        months = []
        for m in range(1, 13):
            month = f"{year}-{m:02d}"
            months.append(
                await _month_report(store, proto, month, by_month.get(month, []), short_abandon_s)
            )
        costs = await store.get_figures(proto.id, FigureKind.COSTS, str(year))
        entered = {FigureKind.COSTS.value: entered_one(costs)}
        quality = _answer_quality(proto, legs, short_abandon_s)
        mmgs[proto.id] = {
            "name": proto.name,
            "months": months,
            "entered": entered,
            "answer_quality": quality,
            "totals": _totals(months, entered, quality),
        }
    export: dict[str, Any] = {
        "year": year,
        "generated_at": (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds"),
        "mmgs": mmgs,
    }
    export["labels"] = export_labels(export)
    return export


def export_file(export: dict[str, Any], fmt: str) -> bytes:
    """The annual export encoded as ``json``, ``csv`` (French conventions) or ``xlsx``."""
    if fmt == "xlsx":
        from regulator.workbooks import export_xlsx  # openpyxl: only for a workbook

        return export_xlsx(export)
    if fmt == "csv":
        return export_csv(export).encode("utf-8")
    return orjson.dumps(export, option=orjson.OPT_INDENT_2) + b"\n"


def report_file(report: dict[str, Any], fmt: str, name: str | None = None) -> bytes:
    """The monthly report encoded as ``json``, ``csv``, ``md`` or ``xlsx``."""
    if fmt == "xlsx":
        from regulator.workbooks import report_xlsx  # openpyxl: only for a workbook

        return report_xlsx(report, name)
    if fmt == "csv":
        return report_csv(report).encode("utf-8")
    if fmt == "md":
        return report_markdown(report, name).encode("utf-8")
    return orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n"


# ------------------------------------------------------------ scheduled files


def previous_month(local: datetime) -> str:
    """The calendar month before ``local``'s, as ``YYYY-MM``."""
    year, month = divmod(local.year * 12 + local.month - 2, 12)
    return f"{year}-{month + 1:02d}"


_FILE_FORMATS = ("xlsx", "json")


def _missing(stem: Path) -> bool:
    """True when one of ``stem``'s files is not written yet (creating the directory)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    return not all(stem.with_suffix(f".{fmt}").exists() for fmt in _FILE_FORMATS)


def _write_once(path: Path, data: bytes) -> bool:
    """Write ``path`` unless it exists; through a temporary file and a rename, so a
    crash never leaves a truncated file that would then count as written."""
    if path.exists():
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


async def write_due_exports(
    store: Store,
    protocols: ProtocolSet,
    directory: Path,
    now: datetime,
    *,
    short_abandon_s: float,
) -> list[Path]:
    """Write the files due at ``now`` that are not yet in ``directory``.

    From the 1st of a month (in the MMG's time zone), each MMG's previous month:
    ``<mmg>-<YYYY-MM>.xlsx`` and ``.json``; from 1 January (once every MMG has
    entered the new year), the previous year's export ``export-<YYYY>.xlsx`` and
    ``.json`` — the annual transmission to the ARS, one file ready to send. A file
    already there is never rewritten, so the task can run every hour and after every
    restart (a day missed while the service was down is caught up).
    """
    written: list[Path] = []
    years: list[int] = []
    for proto in protocols:
        local = now.astimezone(proto.tz)
        years.append(local.year)
        month = previous_month(local)
        stem = directory / f"{proto.id}-{month}"
        if not await asyncio.to_thread(_missing, stem):
            continue
        report = await month_report(store, proto, month, short_abandon_s=short_abandon_s)
        for fmt in _FILE_FORMATS:
            path = stem.with_suffix(f".{fmt}")
            if await asyncio.to_thread(_write_once, path, report_file(report, fmt, proto.name)):
                written.append(path)
    if years:
        year = min(years) - 1
        stem = directory / f"export-{year}"
        if await asyncio.to_thread(_missing, stem):
            export = await annual_export(
                store, protocols, year, now, short_abandon_s=short_abandon_s
            )
            for fmt in _FILE_FORMATS:
                path = stem.with_suffix(f".{fmt}")
                if await asyncio.to_thread(_write_once, path, export_file(export, fmt)):
                    written.append(path)
    return written


def _settings_and_protocols(args: argparse.Namespace) -> tuple[Settings, ProtocolSet] | None:
    settings = Settings()
    directory = getattr(args, "protocols", None) or settings.protocols_dir
    try:
        return settings, load_protocols(directory)
    except ProtocolLoadError as exc:
        for issue in exc.issues:
            print(f"erreur : {issue}", file=sys.stderr)
        return None


async def _with_store(settings: Settings, work: Any) -> Any:
    from regulator.storage import open_store

    store = open_store(settings)
    await store.open()
    try:
        return await work(store)
    finally:
        await store.close()


def run_report(args: argparse.Namespace) -> int:
    """``regulator report --mmg ID --month YYYY-MM [--format json|csv|md|xlsx] [-o FILE]``."""
    loaded = _settings_and_protocols(args)
    if loaded is None:
        return 1
    settings, protocols = loaded
    proto = protocols.get(args.mmg)
    if proto is None:
        print(f"erreur : MMG inconnue {args.mmg!r}", file=sys.stderr)
        return 2
    if not valid_month(args.month):
        print(f"erreur : --month {args.month!r} : format attendu AAAA-MM", file=sys.stderr)
        return 2

    def work(store: Store) -> Any:
        return month_report(store, proto, args.month, short_abandon_s=settings.short_abandon_s)

    try:
        report = asyncio.run(_with_store(settings, work))
    except StoreError as exc:
        print(f"erreur : stockage indisponible : {exc}", file=sys.stderr)
        return 1
    data = report_file(report, args.format, proto.name)
    return _emit(data, args.format, getattr(args, "output", None), f"rapport {args.month}")


def _emit(data: bytes, fmt: str, output: str | None, what: str) -> int:
    """Write ``data`` to ``output``, or to stdout (never a binary workbook to a terminal)."""
    if output:
        Path(output).write_bytes(data)
        print(f"{what} écrit dans {output}", file=sys.stderr)
        return 0
    if fmt == "xlsx":
        print("erreur : --format xlsx demande un fichier (-o FICHIER.xlsx)", file=sys.stderr)
        return 2
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0


def run_export(args: argparse.Namespace) -> int:
    """``regulator export --year YYYY [--format json|csv|xlsx] [-o FILE]``."""
    loaded = _settings_and_protocols(args)
    if loaded is None:
        return 1
    settings, protocols = loaded
    try:
        export = asyncio.run(
            _with_store(
                settings,
                lambda s: annual_export(
                    s, protocols, args.year, short_abandon_s=settings.short_abandon_s
                ),
            )
        )
    except StoreError as exc:
        print(f"erreur : stockage indisponible : {exc}", file=sys.stderr)
        return 1
    return _emit(export_file(export, args.format), args.format, args.output, f"export {args.year}")
