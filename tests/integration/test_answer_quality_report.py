"""The report's ``answer_quality`` end to end (issue 17): dial legs recorded through the
app's own write path (``CallRouter.leg_event`` → call writer → store), on real SQLite
and real Redis, read back from ``GET /api/v1/reports/nimes/<month>`` as JSON, CSV,
XLSX and Markdown, and from ``regulator report``.

The recorded cases are the issue's: answered at 25 s, answered at 75 s, caller hangs up
at 40 s while ringing, caller hangs up at 8 s, busy, no answer (some callbacks out of
order or repeated). Expected figures are the issue's, written out here by hand:
offered 5, answered 2, answer rate 0.4, QS60 0.2, QS60 of answered 0.5, QS30 0.2,
abandoned 1, short abandons 1, median wait 25 s, 90th percentile 75 s.

Two of the six sit on December's edges in Europe/Paris: offered on 31 December at
23:30 (22:30 UTC) and on 1 December at 00:10 (23:10 UTC on 30 November); a leg offered
on 30 November at 23:50 is November's, one on 1 January at 00:30 (23:30 UTC on
31 December) January's. Legs of Metz and a pharmacy leg are not Nîmes' lines.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import openpyxl
import orjson
import pytest
import pytest_asyncio

from regulator.cli import main
from regulator.core.legs import LegEvent, LegStatus
from regulator.core.models import Route
from regulator.ports import FixedClock, Store
from regulator.storage import SQLITE_FILENAME
from regulator.web import keys
from regulator.web.app import create_app
from regulator.web.responses import ReportOut
from tests.support.app import PROTOCOLS, AppClient, ClientFactory, bearer, make_settings, paris
from tests.support.figures import ISSUE_BLOCK

S, A, R, AB, BU, NA, C = (
    LegStatus.OFFERED,
    LegStatus.RINGING,
    LegStatus.ANSWERED,
    LegStatus.ABANDONED,
    LegStatus.BUSY,
    LegStatus.NO_ANSWER,
    LegStatus.COMPLETED,
)

#: (call, MMG, line, local offer time, [(status, seconds after the offer), …]) in the
#: order the callbacks arrive (some late, some twice).
LEGS: list[tuple[str, str, Route, str, list[tuple[LegStatus, float]]]] = [
    ("CA25", "nimes", Route.REGULATION, "2026-12-31T23:30", [(S, 0), (A, 1), (R, 25), (R, 25)]),
    ("CA75", "nimes", Route.REGULATION, "2026-12-05T20:00", [(R, 75), (S, 0), (C, 200), (C, 200)]),
    ("CH40", "nimes", Route.REGULATION, "2026-12-05T20:10", [(S, 0), (AB, 40), (A, 2)]),
    ("CH08", "nimes", Route.REGULATION, "2026-12-05T20:20", [(S, 0), (AB, 8)]),
    ("CBSY", "nimes", Route.REGULATION, "2026-12-01T00:10", [(S, 0), (BU, 1)]),
    ("CNOA", "nimes", Route.REGULATION, "2026-12-05T21:00", [(A, 1), (S, 0), (NA, 30)]),
    ("CDSK", "nimes", Route.DIRECT_ACCESS, "2026-12-05T20:30", [(S, 0), (R, 10)]),
    ("CPHA", "nimes", Route.PHARMACY, "2026-12-05T20:40", [(S, 0), (R, 3)]),
    ("CNOV", "nimes", Route.REGULATION, "2026-11-30T23:50", [(S, 0), (R, 20)]),
    ("CJAN", "nimes", Route.REGULATION, "2027-01-01T00:30", [(S, 0), (R, 40)]),
    ("CMTZ", "metz", Route.REGULATION, "2026-12-05T20:00", [(S, 0), (R, 5)]),
]


def one(offered: int, answered: int, within_60: int, within_30: int, **rest: Any) -> Any:
    """A block from its counts (shares by hand: answered / offered and so on)."""
    block = {
        "offered": offered,
        "answered": answered,
        "answer_rate": answered / offered if offered else None,
        "answered_within_60s": within_60,
        "qs60": within_60 / offered if offered else None,
        "qs60_of_answered": within_60 / answered if answered else None,
        "qs30": within_30 / offered if offered else None,
        "abandoned": 0,
        "short_abandons": 0,
        "wait_median_s": None,
        "wait_p90_s": None,
    }
    return block | rest


#: December's regulation line per hour × day type: Thursday 31 and Tuesday 1 are
#: weekdays, Saturday 5 is a Saturday; the 8 s hang-up sits in its hour as a short one.
DECEMBER_BY_HOUR = {
    "weekday": {
        "00": one(1, 0, 0, 0),
        "23": one(1, 1, 1, 1, wait_median_s=25.0, wait_p90_s=25.0),
    },
    "saturday": {
        "20": one(2, 1, 0, 0, abandoned=1, short_abandons=1, wait_median_s=75.0, wait_p90_s=75.0),
        "21": one(1, 0, 0, 0),
    },
}


@pytest_asyncio.fixture(params=["sqlite", "redis"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Store]:
    """A real store, and the environment that makes ``regulator report`` read it."""
    for name in ("REGULATOR_CONFIG", "REGULATOR_REDIS_URL", "REGULATOR_SHORT_ABANDON_S"):
        monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "var"
    monkeypatch.setenv("REGULATOR_DATA_DIR", str(data_dir))
    if request.param == "sqlite":
        from regulator.storage.sqlite import SqliteStore

        yield SqliteStore(data_dir / SQLITE_FILENAME)
        return
    from regulator.storage.redis import RedisStore

    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    monkeypatch.setenv("REGULATOR_REDIS_URL", url)
    monkeypatch.setenv("REGULATOR_REDIS_PREFIX", prefix)
    yield RedisStore(url, prefix=prefix)


@pytest_asyncio.fixture
async def client(aiohttp_client: ClientFactory, backend: Store, tmp_path: Path) -> AppClient:
    clock = FixedClock(paris("2027-01-02T10:00"))
    app = create_app(make_settings(tmp_path, data_dir=tmp_path / "var"), backend, clock)
    client = await aiohttp_client(app)
    router = client.app[keys.ROUTER]
    for call, mmg, target, local, events in LEGS:
        offered = paris(local)
        for status, after in events:
            at = offered + timedelta(seconds=after)
            await router.leg_event(LegEvent(call, target, status, at, mmg, "twilio"))
    await client.app[keys.WRITER].flush()
    return client


async def get(client: AppClient, month: str, fmt: str = "json", mmg: str = "nimes") -> bytes:
    resp = await client.get(
        f"/api/v1/reports/{mmg}/{month}?format={fmt}", headers=bearer("coordinator")
    )
    assert resp.status == 200, await resp.text()
    return await resp.read()


async def test_the_json_report_gives_the_issue_figures_per_line_and_hour(
    client: AppClient,
) -> None:
    report = orjson.loads(await get(client, "2026-12"))
    ReportOut.model_validate(report)  # the documented shape (OpenAPI)
    quality = report["answer_quality"]
    print(orjson.dumps(quality["regulation"]).decode())
    assert quality["short_abandon_s"] == 15
    assert {k: v for k, v in quality["regulation"].items() if k != "by_hour"} == ISSUE_BLOCK
    assert quality["regulation"]["by_hour"] == DECEMBER_BY_HOUR
    desk = one(1, 1, 1, 1, wait_median_s=10.0, wait_p90_s=10.0)
    assert quality["front_desk"] == desk | {"by_hour": {"saturday": {"20": desk}}}
    assert set(quality) == {"short_abandon_s", "regulation", "front_desk"}  # no pharmacy


async def test_month_edges_are_local_and_other_mmgs_apart(client: AppClient) -> None:
    november = orjson.loads(await get(client, "2026-11"))["answer_quality"]["regulation"]
    assert (november["offered"], november["answered"], november["wait_median_s"]) == (1, 1, 20.0)
    assert set(november["by_hour"]) == {"weekday"} and set(november["by_hour"]["weekday"]) == {"23"}
    january = orjson.loads(await get(client, "2027-01"))["answer_quality"]["regulation"]
    assert (january["offered"], january["qs60"], january["qs30"]) == (1, 1.0, 0.0)
    assert set(january["by_hour"]) == {"holiday"}  # 1 January, at 00 h local
    assert set(january["by_hour"]["holiday"]) == {"00"}
    metz = orjson.loads(await get(client, "2026-12", mmg="metz"))["answer_quality"]
    assert (metz["regulation"]["offered"], metz["regulation"]["wait_median_s"]) == (1, 5.0)
    # What the alert reads (the write path's counters) agrees with the reports.
    metrics = await (await client.get("/metrics")).text()
    nimes_offered = 'regulator_legs_offered_total{mmg="nimes",target="regulation"} 7.0'
    assert nimes_offered in metrics  # December's 5, November's 1, January's 1
    assert 'regulator_legs_abandoned_total{mmg="nimes",target="regulation"} 1.0' in metrics


async def test_csv_markdown_and_workbook_say_the_same_in_french(client: AppClient) -> None:
    text = (await get(client, "2026-12", "csv")).decode("utf-8")
    assert text.startswith("\ufeff")
    rows = {row[2]: (row[0], row[1]) for row in csv.reader(io.StringIO(text[1:]), delimiter=";")}
    line = "Ligne de régulation (centre 15 / SAS)"
    assert rows["answer_quality.regulation.answer_rate"] == (
        f"{line} — Taux de décroché (%)",
        "40,00",
    )
    assert rows["answer_quality.regulation.answered_within_60s"] == (
        f"{line} — Décrochés en moins de 60 s",
        "1",
    )
    expected_csv = {
        "offered": "5",
        "answered": "2",
        "qs60": "20,00",
        "qs60_of_answered": "50,00",
        "qs30": "20,00",
        "abandoned": "1",
        "short_abandons": "1",
        "wait_median_s": "25,0",
        "wait_p90_s": "75,0",
    }
    for field, value in expected_csv.items():
        assert rows[f"answer_quality.regulation.{field}"][1] == value, field
    assert rows["answer_quality.front_desk.qs60"][1] == "100,00"
    saturday_20 = "answer_quality.regulation.by_hour.saturday.20"
    assert rows[f"{saturday_20}.qs60_of_answered"] == (
        f"{line} — samedis, 20 h — Décrochés en moins de 60 s / décrochés (%)",
        "0,00",
    )
    assert rows[f"{saturday_20}.short_abandons"][1] == "1"
    assert rows["answer_quality.regulation.by_hour.weekday.00.wait_median_s"][1] == ""

    md = (await get(client, "2026-12", "md")).decode("utf-8")
    assert "## Qualité de décroché" in md
    nbsp = "\u00a0"
    assert f"| Taux de décroché | 40,0{nbsp}% | 100,0{nbsp}% |" in md
    assert f"| QS60 (décrochés en moins de 60 s / présentés) | 20,0{nbsp}% | 100,0{nbsp}% |" in md
    assert f"| Attente médiane avant décroché (s) | 25{nbsp}s | 10{nbsp}s |" in md
    assert "| Abandons courts (exclus) | 1 | 0 |" in md
    assert f"| 20 h | — | 0,0{nbsp}% (2 présentés) |" in md
    assert f"| 23 h | 100,0{nbsp}% (1 présenté) | — |" in md

    book = openpyxl.load_workbook(io.BytesIO(await get(client, "2026-12", "xlsx")))
    sheet = book["Qualité de décroché"]
    assert sheet["A1"].value == (
        "Qualité de décroché — Maison médicale de garde de Nîmes — décembre 2026"
    )
    cells = list(sheet.iter_rows(values_only=True))
    by_field = {row[3]: row[1:3] for row in cells[3:14]}
    assert cells[2][:4] == ("Indicateur", line, "Accueil de la MMG", "Clé")
    assert {f: v[0] for f, v in by_field.items()} == ISSUE_BLOCK
    assert by_field["qs60_of_answered"][1] == 1.0
    assert sheet.cell(row=4 + 2, column=2).number_format == "0.0%"  # answer_rate
    hours = {(row[0], row[1], row[2]): row[3:] for row in cells[17:]}
    assert hours[(line, "samedis", "20 h")] == (2, 1, 0.5, 0, 0.0, 0.0, 0.0, 1, 1, 75.0, 75.0)
    assert hours[(line, "jours de semaine", "00 h")] == (
        1,
        0,
        0.0,
        0,
        0.0,
        "non calculable",
        0.0,
        0,
        0,
        "non calculable",
        "non calculable",
    )
    assert len(hours) == 5  # four regulation cells, one front desk


async def test_the_cli_report_reads_the_same_store(client: AppClient, tmp_path: Path) -> None:
    out = tmp_path / "nimes-2026-12.json"
    args = ["report", "--protocols", str(PROTOCOLS), "--mmg", "nimes", "--month", "2026-12"]
    assert await asyncio.to_thread(main, [*args, "-o", str(out)]) == 0
    quality = orjson.loads(out.read_bytes())["answer_quality"]
    assert {k: v for k, v in quality["regulation"].items() if k != "by_hour"} == ISSUE_BLOCK
    assert quality["regulation"]["by_hour"] == DECEMBER_BY_HOUR
    md = tmp_path / "nimes-2026-12.md"
    assert await asyncio.to_thread(main, [*args, "--format", "md", "-o", str(md)]) == 0
    assert "| Taux de décroché | 40,0\u00a0% | 100,0\u00a0% |" in md.read_text("utf-8")


async def test_the_annual_export_has_monthly_blocks_and_the_years_own(client: AppClient) -> None:
    """The year's block is computed from the year's legs (November's answered at 20 s
    and December's six), not averaged from the months' shares."""
    resp = await client.get("/api/v1/exports/2026", headers=bearer("coordinator"))
    assert resp.status == 200, await resp.text()
    nimes = (await resp.json())["mmgs"]["nimes"]
    december = nimes["months"][11]["answer_quality"]["regulation"]
    assert {k: v for k, v in december.items() if k != "by_hour"} == ISSUE_BLOCK
    assert nimes["months"][10]["answer_quality"]["regulation"]["qs60"] == 1.0
    year = nimes["answer_quality"]["regulation"]
    assert (year["offered"], year["answered"], year["answered_within_60s"]) == (6, 3, 2)
    assert year["qs60"] == round(2 / 6, 4)  # not (1.0 + 0.2) / 2
    assert (year["wait_median_s"], year["wait_p90_s"]) == (25.0, 75.0)  # of 20, 25, 75 s
    assert nimes["totals"]["answer_quality.regulation.qs60"] == year["qs60"]
    assert nimes["totals"]["answer_quality.regulation.offered"] == 6

    resp = await client.get("/api/v1/exports/2026?format=csv", headers=bearer("coordinator"))
    header, *rows = (await resp.text()).lstrip("\ufeff").splitlines()
    column = header.split(";").index("Ligne de régulation (centre 15 / SAS) — Taux de décroché (%)")
    by_month = {r.split(";")[1]: r.split(";")[column] for r in rows if r.startswith("nimes;")}
    assert (by_month["décembre 2026"], by_month["novembre 2026"]) == ("40,00", "100,00")
    assert (by_month["janvier 2026"], by_month["Total 2026"]) == ("", "50,00")


async def test_the_reports_page_shows_the_lines_and_charts_qs60_by_hour(
    client: AppClient,
) -> None:
    from tests.support.app import sign_in_all

    signed = await sign_in_all(client)
    resp = await client.get(
        "/console/reports/nimes?month=2026-12", headers=signed.cookie("coordinator")
    )
    assert resp.status == 200
    text = html.unescape(await resp.text())
    table = text[text.index('id="answer-quality"') : text.index('id="chart-qs60"')]
    assert "Ligne de régulation (centre 15 / SAS)" in table and "Accueil de la MMG" in table
    cells = dict(re.findall(r'data-quality="(\w+)"><th scope="row">[^<]*</th>(.*?)</tr>', table))
    values = {k: re.findall(r'<td class="num">([^<]*)</td>', v) for k, v in cells.items()}
    nbsp = "\u00a0"
    assert values["answer_rate"] == [f"40,0{nbsp}%", f"100,0{nbsp}%"]
    assert values["qs60_of_answered"] == [f"50,0{nbsp}%", f"100,0{nbsp}%"]
    assert values["wait_p90_s"] == [f"75{nbsp}s", f"10{nbsp}s"]
    assert values["short_abandons"] == ["1", "0"]
    chart = text[text.index('id="chart-qs60"') :]
    chart = chart[: chart.index("</figure>")]
    bars = re.findall(r'<rect class="s-qs60"[^>]*><title>([^<]*)</title>', chart)
    assert bars == [
        f"00 h — QS60 : 0,0{nbsp}% (0 sur 1 appel présenté)",
        f"20 h — QS60 : 0,0{nbsp}% (0 sur 2 appels présentés)",
        f"21 h — QS60 : 0,0{nbsp}% (0 sur 1 appel présenté)",
        f"23 h — QS60 : 100,0{nbsp}% (1 sur 1 appel présenté)",
    ]
    assert f"objectif SUdF 99,0{nbsp}%" in chart
    rows = re.findall(r'<tr><th scope="row">(\d\d h)</th>(.*?)</tr>', chart)
    assert len(rows) == 24
    assert re.findall(r">([^<]*)</td>", dict(rows)["23 h"]) == ["1", "1", f"100,0{nbsp}%"]
    assert re.findall(r">([^<]*)</td>", dict(rows)["12 h"]) == ["0", "0", "—"]
