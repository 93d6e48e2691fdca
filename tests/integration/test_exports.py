"""Files written to REGULATOR_EXPORT_DIR: the previous month's report from the 1st,
the previous year's export from 1 January, each once, by the clock given to the app."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import openpyxl

from regulator.core.models import Outcome, VisitChannel
from regulator.core.referrals import make_visit
from regulator.ports import FixedClock
from regulator.protocols import load_protocols
from regulator.reporting import write_due_exports
from regulator.storage.sqlite import SqliteStore
from regulator.web.app import create_app
from tests.support.app import PROTOCOLS, ClientFactory, make_settings, paris


async def _store_with_visits(tmp_path: Path) -> SqliteStore:
    store = SqliteStore(tmp_path / "regulator.sqlite3")
    await store.open()
    nimes = load_protocols(PROTOCOLS).get("nimes")
    assert nimes is not None
    for at, channel in (
        ("2026-11-24T21:00", VisitChannel.REGULATION),
        ("2026-12-24T21:00", VisitChannel.DIRECT),
        ("2026-12-25T10:00", VisitChannel.REGULATION),
    ):
        visit = make_visit(nimes, channel=channel, at=paris(at), outcome=Outcome.HOME, acts=1)
        assert (await store.add_visit(visit, None))[1]
    return store


async def test_reports_from_the_1st_in_each_time_zone_and_the_year_from_1_january(
    tmp_path: Path,
) -> None:
    store = await _store_with_visits(tmp_path)
    protocols = load_protocols(PROTOCOLS)
    out = tmp_path / "exports"
    try:
        # 31 December 21:30 in Nîmes is already 1 January 00:30 in La Réunion.
        written = await write_due_exports(
            store, protocols, out, paris("2026-12-31T21:30"), short_abandon_s=15
        )
        names = sorted(p.name for p in written)
        assert names == sorted(
            [
                "metz-2026-11.json",
                "metz-2026-11.xlsx",
                "nimes-2026-11.json",
                "nimes-2026-11.xlsx",
                "saint-denis-reunion-2026-12.json",
                "saint-denis-reunion-2026-12.xlsx",
                # every MMG is in 2026 or later: the year before is complete
                "export-2025.json",
                "export-2025.xlsx",
            ]
        )
        # Idempotent: nothing due is rewritten, even an hour later or after a restart.
        (out / "nimes-2026-11.json").write_text("kept", encoding="utf-8")
        assert (
            await write_due_exports(
                store, protocols, out, paris("2026-12-31T22:30"), short_abandon_s=15
            )
            == []
        )
        assert (out / "nimes-2026-11.json").read_text(encoding="utf-8") == "kept"
        # 1 January in mainland France: December and the whole of 2026.
        written = await write_due_exports(
            store, protocols, out, paris("2027-01-01T00:30"), short_abandon_s=15
        )
        assert sorted(p.name for p in written) == sorted(
            [
                "metz-2026-12.json",
                "metz-2026-12.xlsx",
                "nimes-2026-12.json",
                "nimes-2026-12.xlsx",
                "export-2026.json",
                "export-2026.xlsx",
            ]
        )
        december = json.loads((out / "nimes-2026-12.json").read_text(encoding="utf-8"))
        assert (december["persons_seen"]["total"], december["share_regulated"]) == (2, 0.5)
        export = json.loads((out / "export-2026.json").read_text(encoding="utf-8"))
        totals = export["mmgs"]["nimes"]["totals"]
        assert totals["persons_seen.total"] == 3
        assert export["generated_at"] == "2026-12-31T23:30:00+00:00"  # the injected clock
        sheet = openpyxl.load_workbook(out / "export-2026.xlsx")["nimes"]
        by_key = {row[-1]: row[-2] for row in sheet.iter_rows(min_row=4, values_only=True)}
        assert by_key["persons_seen.total"] == 3
        assert by_key["share_regulated"] == totals["share_regulated"] == 2 / 3
        assert not list(out.glob(".*.tmp"))  # written through a rename, nothing left over
    finally:
        await store.close()


async def test_the_app_writes_due_files_at_start_with_its_clock(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    store = await _store_with_visits(tmp_path)
    await store.close()
    out = tmp_path / "exports"
    settings = make_settings(tmp_path, export_dir=out)
    clock = FixedClock(datetime.fromisoformat("2027-01-01T08:00:00+01:00"))
    await aiohttp_client(create_app(settings, SqliteStore(tmp_path / "regulator.sqlite3"), clock))
    for _ in range(200):
        if (out / "export-2026.xlsx").exists() and (out / "nimes-2026-12.xlsx").exists():
            break
        await asyncio.sleep(0.05)
    book = openpyxl.load_workbook(out / "nimes-2026-12.xlsx")
    values = {row[2]: row[1] for row in book["Indicateurs"].iter_rows(min_row=4, values_only=True)}
    assert values["persons_seen.via_regulation"] == 1
    assert (out / "export-2026.json").exists()


async def test_no_export_dir_no_files(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert settings.export_dir is None
    clock = FixedClock(paris("2027-01-01T08:00"))
    await aiohttp_client(create_app(settings, SqliteStore(tmp_path / "regulator.sqlite3"), clock))
    await asyncio.sleep(0.1)
    assert not await asyncio.to_thread(lambda: list(tmp_path.rglob("*.xlsx")))
