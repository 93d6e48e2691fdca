"""Monthly reports and the annual export for the regional authority (ARS).

Used by ``regulator report`` / ``regulator export`` and by the API. Figures are
those of :mod:`regulator.core.indicators`, read from the configured store.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from regulator.core.indicators import (
    INDICATORS,
    SHARE_REGULATED,
    build_report,
    report_csv,
    report_markdown,
    share,
    valid_month,
)
from regulator.core.protocol import ProtocolLoadError, ProtocolSet
from regulator.ports import Store, StoreError
from regulator.protocols import load_protocols
from regulator.settings import Settings


async def month_report(store: Store, mmg: str, month: str) -> dict[str, Any]:
    """One MMG's report for one month, from the store's counters and visits."""
    counters = await store.call_counters(mmg, month)
    visits = await store.visits(mmg, month)
    return build_report(mmg, month, counters, visits)


def _flat(report: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for indicator in INDICATORS:
        value: Any = report
        for part in indicator.key.split("."):
            value = value[part]
        out[indicator.key] = int(value)
    for route, count in report["calls_by_route"].items():
        out[f"calls_by_route.{route}"] = count
    return out


def _totals(months: list[dict[str, Any]]) -> dict[str, Any]:
    """Yearly sums, and the year's share regulated (from the sums, not an average)."""
    totals: dict[str, Any] = {}
    for report in months:
        for key, value in _flat(report).items():
            totals[key] = totals.get(key, 0) + value
    totals[SHARE_REGULATED.key] = share(
        totals.get("persons_seen.via_regulation", 0), totals.get("persons_seen.total", 0)
    )
    return totals


async def annual_export(store: Store, protocols: ProtocolSet, year: int) -> dict[str, Any]:
    """Twelve monthly reports per MMG plus yearly totals (share regulated included)."""
    mmgs: dict[str, Any] = {}
    for proto in protocols:
        months = [await month_report(store, proto.id, f"{year}-{m:02d}") for m in range(1, 13)]
        mmgs[proto.id] = {"name": proto.name, "months": months, "totals": _totals(months)}
    return {
        "year": year,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mmgs": mmgs,
    }


def export_csv(export: dict[str, Any]) -> str:
    """One row per MMG and month (12 rows per MMG), one column per indicator."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header: list[str] | None = None
    for mmg, data in export["mmgs"].items():
        for report in data["months"]:
            flat = _flat(report)
            ratio = report[SHARE_REGULATED.key]
            if header is None:
                header = ["mmg", "month", *flat, SHARE_REGULATED.key]
                writer.writerow(header)
            shown = "" if ratio is None else round(ratio, 4)
            writer.writerow([mmg, report["month"], *flat.values(), shown])
    return out.getvalue()


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
    """``regulator report --mmg ID --month YYYY-MM [--format json|csv|md]``."""
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
    try:
        report = asyncio.run(_with_store(settings, lambda s: month_report(s, args.mmg, args.month)))
    except StoreError as exc:
        print(f"erreur : stockage indisponible : {exc}", file=sys.stderr)
        return 1
    if args.format == "csv":
        sys.stdout.write(report_csv(report))
    elif args.format == "md":
        sys.stdout.write(report_markdown(report, proto.name))
    else:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """``regulator export --year YYYY [--format json|csv] [-o FILE]``."""
    loaded = _settings_and_protocols(args)
    if loaded is None:
        return 1
    settings, protocols = loaded
    try:
        export = asyncio.run(
            _with_store(settings, lambda s: annual_export(s, protocols, args.year))
        )
    except StoreError as exc:
        print(f"erreur : stockage indisponible : {exc}", file=sys.stderr)
        return 1
    text = (
        export_csv(export)
        if args.format == "csv"
        else orjson.dumps(export, option=orjson.OPT_INDENT_2).decode() + "\n"
    )
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"export {args.year} écrit dans {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
