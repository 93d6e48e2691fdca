"""A month of activity end to end → the report matches figures computed from raw events.

300 calls over May 2026 (holidays 1, 8, 14 and 25 May; bridges 2, 9, 15 and 16 May),
120 referrals through their lifecycle (some arrived without an outcome), 40 walk-in
visits and 30 persons the desk records as sent by the regulation (``regulation``
visits, some of them for a case whose referral also arrived here), on SQLite and on
Redis. Expected figures are computed here from what the test sent and what the
service answered, with the ``holidays`` package directly — not with the code
under test.
"""

from __future__ import annotations

import csv
import io
import random
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import holidays
import openpyxl
import pytest
import pytest_asyncio

from regulator.core.models import Outcome, VisitChannel
from regulator.core.referrals import make_visit
from regulator.exports import XLSX_MEDIA_TYPE
from regulator.ports import FixedClock, Store
from regulator.reporting import annual_export
from regulator.web import keys
from regulator.web.app import create_app
from tests.integration.test_call_path import dialled
from tests.support.app import (
    FRONT_DESK_NIMES,
    NIMES,
    PARIS,
    PROFESSIONAL_NIMES,
    REGULATION_NIMES,
    AppClient,
    ClientFactory,
    bearer,
    callback,
    make_settings,
    post_twilio,
    report,
)

FR_HOLIDAYS = holidays.country_holidays("FR", years=2026)
PHARMACY_FALLBACK = None  # no roster in May: the 3237 announcement (nothing dialled)


def expected_day_type(day: date) -> str:
    """Independent day type: FR holidays; R.6315-1 bridges (Mon before, Fri/Sat after)."""
    if day in FR_HOLIDAYS:
        return "holiday"
    wd = day.weekday()
    one = timedelta(days=1)
    if wd == 0 and day + one in FR_HOLIDAYS:
        return "bridge"
    if wd == 4 and day - one in FR_HOLIDAYS:
        return "bridge"
    if wd == 5 and (day - one in FR_HOLIDAYS or day - 2 * one in FR_HOLIDAYS):
        return "bridge"
    return {5: "saturday", 6: "sunday"}.get(wd, "weekday")


def is_open_nimes(local: datetime) -> bool:
    """Nîmes opening hours of protocols/nimes.yaml, restated independently."""
    kind = expected_day_type(local.date())
    minute = local.hour * 60 + local.minute
    if kind in ("holiday", "bridge", "sunday"):
        return minute >= 8 * 60
    if kind == "saturday":
        return minute >= 12 * 60
    return minute >= 20 * 60


@pytest_asyncio.fixture(params=["sqlite", "redis"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        from regulator.storage.sqlite import SqliteStore

        yield SqliteStore(tmp_path / "regulator.sqlite3")
        return
    from regulator.storage.redis import RedisStore

    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    yield RedisStore(url, prefix=prefix)


@pytest_asyncio.fixture
async def app_client(
    aiohttp_client: ClientFactory, any_store: Store, tmp_path: Path
) -> tuple[AppClient, FixedClock]:
    clock = FixedClock(datetime(2026, 5, 1, 12, tzinfo=PARIS))
    app = create_app(make_settings(tmp_path), any_store, clock)
    return await aiohttp_client(app), clock


async def test_month_report_matches_raw_events(app_client: tuple[AppClient, FixedClock]) -> None:
    client, clock = app_client
    rng = random.Random(20260501)
    calls_by_day_type: Counter[str] = Counter()
    calls_by_hour: Counter[int] = Counter()
    calls_by_route: Counter[str] = Counter()
    seen_day_types: set[str] = set()

    # ---- 300 calls
    for i in range(300):
        day = date(2026, 5, rng.randint(1, 31))
        local = datetime(
            day.year, day.month, day.day, rng.randint(0, 23), rng.randint(0, 59), tzinfo=PARIS
        )
        clock.set(local)
        sid = f"CAe2e{i:03d}"
        professional = rng.random() < 0.1
        caller = PROFESSIONAL_NIMES if professional else f"+33611{rng.randint(0, 999_999):06d}"
        params = {"CallSid": sid, "From": caller, "To": NIMES}
        status, body = await post_twilio(client, "/hooks/twilio/voice", params)
        assert status == 200
        route: str
        if not is_open_nimes(local):
            assert dialled(body) == REGULATION_NIMES
            route = "regulation"
        elif professional:
            assert dialled(body) == FRONT_DESK_NIMES
            route = "direct_access"
        else:
            choice = rng.choice(["1", "2", "hangup"])
            if choice == "hangup":
                route = "menu"  # caller hung up in the menu
            else:
                status, body = await post_twilio(
                    client, "/hooks/twilio/gather", params | {"Digits": choice}
                )
                assert status == 200
                if choice == "1":
                    assert dialled(body) == REGULATION_NIMES
                    route = "regulation"
                    if rng.random() < 0.2:  # regulation did not answer: overflow
                        status, body = await post_twilio(
                            client,
                            callback("/hooks/twilio/dial-status?mmg=nimes&target=regulation"),
                            params | {"DialCallStatus": "no-answer"},
                        )
                        assert dialled(body) == FRONT_DESK_NIMES
                        route = "direct_access"
                else:
                    route = "pharmacy"
        kind = expected_day_type(day)
        seen_day_types.add(kind)
        calls_by_day_type[kind] += 1
        calls_by_hour[local.hour] += 1
        calls_by_route[route] += 1
    assert {"holiday", "bridge", "weekday", "saturday", "sunday"} <= seen_day_types

    # ---- 120 referrals through their lifecycle, 40 walk-in visits
    persons: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    acts = 0
    # Referrals arrived in May: case id → (arrival instant, outcome or None).
    arrived_in_may: dict[str, tuple[datetime, str | None]] = {}
    for i in range(120):
        day = date(2026, 5, rng.randint(1, 30))
        created = datetime(day.year, day.month, day.day, 20, rng.randint(0, 59), tzinfo=PARIS)
        clock.set(created)
        resp = await client.post(
            "/api/v1/referrals",
            json={
                "mmg": "nimes",
                "case_id": f"DRFR{i:06d}",
                "patient": {"display_name": f"P{i}", "age_band": "18-64"},
                "callback_number": f"+33611{rng.randint(0, 999_999):06d}",
                "reason": "fièvre",
                "expected_at": (created + timedelta(minutes=30)).isoformat(),
            },
            headers=bearer("regulator") | {"Idempotency-Key": f"ref-{i}"},
        )
        assert resp.status == 201
        ref_id = (await resp.json())["id"]
        fate = rng.choice(
            ["completed", "completed", "completed", "arrived", "cancelled", "pending"]
        )
        if fate in ("completed", "arrived"):
            arrival = created + timedelta(minutes=rng.randint(10, 200))
            clock.set(arrival)
            assert (
                await client.post(f"/api/v1/referrals/{ref_id}/ack", headers=bearer("desk"))
            ).status == 200
            assert (
                await client.post(f"/api/v1/referrals/{ref_id}/arrived", headers=bearer("desk"))
            ).status == 200
            local_arrival = arrival.astimezone(PARIS)
            if local_arrival.month == 5:
                kind = expected_day_type(local_arrival.date())
                persons["total"] += 1
                persons["via_regulation"] += 1
                persons[
                    {
                        "holiday": "holiday",
                        "bridge": "holiday",
                        "saturday": "weekend",
                        "sunday": "weekend",
                    }.get(kind, "weekday")
                ] += 1
                persons[{"holiday": "public_holiday", "bridge": "bridge"}.get(kind, "-")] += 1
                arrived_in_may[f"DRFR{i:06d}"] = (arrival, None)
            if fate == "completed":
                outcome = rng.choice(["home", "home", "emergency", "hospitalised", "other"])
                n = rng.randint(0, 3)
                resp = await client.post(
                    f"/api/v1/referrals/{ref_id}/outcome",
                    json={"outcome": outcome, "acts": n},
                    headers=bearer("desk"),
                )
                assert resp.status == 200
                if local_arrival.month == 5:
                    outcomes[outcome] += 1
                    acts += n
                    arrived_in_may[f"DRFR{i:06d}"] = (arrival, outcome)
        elif fate == "cancelled":
            resp = await client.post(
                f"/api/v1/referrals/{ref_id}/cancel", headers=bearer("regulator")
            )
            assert resp.status == 200
    for i in range(40):
        day = date(2026, 5, rng.randint(1, 31))
        at = datetime(day.year, day.month, day.day, rng.randint(8, 23), 0, tzinfo=PARIS)
        clock.set(at + timedelta(hours=1))
        channel = rng.choice(["direct", "emergency_reorientation", "other"])
        outcome = rng.choice(["home", "emergency", "hospitalised", "other"])
        n = rng.randint(1, 2)
        resp = await client.post(
            "/api/v1/visits",
            json={
                "mmg": "nimes",
                "channel": channel,
                "outcome": outcome,
                "acts": n,
                "at": at.isoformat(),
            },
            headers=bearer("desk") | {"Idempotency-Key": f"visit-{i}"},
        )
        assert resp.status == 201, await resp.text()
        kind = expected_day_type(day)
        persons["total"] += 1
        persons[{"direct": "direct_access"}.get(channel, channel)] += 1
        persons[
            {
                "holiday": "holiday",
                "bridge": "holiday",
                "saturday": "weekend",
                "sunday": "weekend",
            }.get(kind, "weekday")
        ] += 1
        persons[{"holiday": "public_holiday", "bridge": "bridge"}.get(kind, "-")] += 1
        outcomes[outcome] += 1
        acts += n

    # ---- persons sent by the regulation whose referral is not in this system (the
    # desk's ``regulation`` visits, written through the store: the visit API of the
    # desk does not take that channel yet), and duplicates of arrived referrals.
    store: Store = client.app[keys.STORE]
    nimes = client.app[keys.PROTOCOLS].current.get("nimes")
    assert nimes is not None
    without_outcome = sorted(c for c, (_, o) in arrived_in_may.items() if o is None)
    with_outcome = sorted(c for c, (_, o) in arrived_in_may.items() if o is not None)
    assert len(without_outcome) >= 3 and len(with_outcome) >= 3
    for case_id in without_outcome[:3]:
        # The desk records the outcome on its own visit of the same case: that visit is
        # the person seen (once), with its outcome; the referral's has none.
        arrival, _ = arrived_in_may[case_id]
        visit = make_visit(
            nimes,
            channel=VisitChannel.REGULATION,
            at=arrival,
            outcome=Outcome.HOME,
            acts=1,
            case_id=case_id,
        )
        assert (await store.add_visit(visit, None))[1]
        outcomes["home"] += 1
        acts += 1
        arrived_in_may[case_id] = (arrival, "home")
    for case_id in with_outcome[:3]:
        # Both visits of the case have an outcome: the referral's counts, this one not.
        arrival, _ = arrived_in_may[case_id]
        visit = make_visit(
            nimes,
            channel=VisitChannel.REGULATION,
            at=arrival + timedelta(minutes=5),
            outcome=Outcome.EMERGENCY,
            acts=2,
            case_id=case_id,
        )
        assert (await store.add_visit(visit, None))[1]
    for i in range(24):
        day = date(2026, 5, rng.randint(1, 31))
        at = datetime(day.year, day.month, day.day, rng.randint(0, 23), 30, tzinfo=PARIS)
        given = rng.choice(["home", "emergency", "hospitalised", "other", None])
        n = 0 if given is None else rng.randint(1, 2)
        visit = make_visit(
            nimes,
            channel=VisitChannel.REGULATION,
            at=at,
            outcome=Outcome(given) if given else None,
            acts=n,
            case_id=f"LRM{i:04d}" if i % 2 else None,  # half come without a case number
        )
        assert (await store.add_visit(visit, None))[1]
        kind = expected_day_type(day)
        persons["total"] += 1
        persons["via_regulation"] += 1
        persons[
            {
                "holiday": "holiday",
                "bridge": "holiday",
                "saturday": "weekend",
                "sunday": "weekend",
            }.get(kind, "weekday")
        ] += 1
        persons[{"holiday": "public_holiday", "bridge": "bridge"}.get(kind, "-")] += 1
        if given is None:
            outcomes["missing"] += 1
        else:
            outcomes[given] += 1
        acts += n
    outcomes["missing"] += sum(1 for _, o in arrived_in_may.values() if o is None)

    # ---- the report
    data = await report(client, "nimes", "2026-05")
    assert data["calls_received"] == 300
    assert data["calls_by_route"] == {r: calls_by_route[r] for r in data["calls_by_route"]}
    assert data["calls_by_day_type"] == {d: calls_by_day_type[d] for d in data["calls_by_day_type"]}
    assert data["calls_by_hour"] == [calls_by_hour[h] for h in range(24)]
    for key in (
        "total",
        "weekday",
        "weekend",
        "holiday",
        "public_holiday",
        "bridge",
        "via_regulation",
        "direct_access",
        "emergency_reorientation",
        "other",
    ):
        assert data["persons_seen"][key] == persons[key], key
    assert persons["bridge"] > 0 and persons["public_holiday"] > 0
    assert data["persons_seen"]["holiday"] == persons["public_holiday"] + persons["bridge"]
    assert data["returned_home"] == outcomes["home"]
    assert data["reoriented_to_emergency"] == outcomes["emergency"]
    assert data["hospitalised"] == outcomes["hospitalised"]
    assert data["outcome_other"] == outcomes["other"]
    assert data["outcome_missing"] == outcomes["missing"] > 0
    assert data["acts"] == acts
    # Every person seen has exactly one outcome row, "issue non renseignée" included.
    assert sum(outcomes.values()) == persons["total"]
    assert data["share_regulated"] == pytest.approx(persons["via_regulation"] / persons["total"])
    assert 0 < data["share_regulated"] < 1
    # CSV has the same figures, in French spreadsheet conventions.
    resp = await client.get(
        "/api/v1/reports/nimes/2026-05?format=csv", headers=bearer("coordinator")
    )
    raw = await resp.read()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads the accents right
    lines = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert lines[0] == ["Indicateur", "Valeur", "Clé"]
    rows = {key: value for _, value, key in lines[1:]}
    assert rows["month"] == "mai 2026"
    assert rows["calls_received"] == "300"
    assert rows["persons_seen.total"] == str(persons["total"])
    assert rows["outcome_missing"] == str(outcomes["missing"])
    percent = float(rows["share_regulated"].replace(",", "."))
    assert "," in rows["share_regulated"]
    assert percent == pytest.approx(100 * data["share_regulated"], abs=0.01)
    # The workbook, read back with openpyxl, cell by cell against the JSON.
    resp = await client.get(
        "/api/v1/reports/nimes/2026-05?format=xlsx", headers=bearer("coordinator")
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"] == XLSX_MEDIA_TYPE
    assert 'filename="nimes-2026-05.xlsx"' in resp.headers["Content-Disposition"]
    assert_month_workbook(await resp.read(), data)


def dotted(report: Mapping[str, Any], key: str) -> Any:
    """The JSON value of a row key (``persons_seen.total``, ``calls_by_hour.07``)."""
    value: Any = report
    for part in key.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def share_cell(value: float | None) -> Any:
    return "non calculable" if value is None else value


def expected_cell(report: Mapping[str, Any], key: str) -> Any:
    """What a workbook cell of ``key`` must hold for this JSON report (month or totals)."""
    if key == "share_regulated":
        return share_cell(report["share_regulated"])
    if key.startswith("answer_quality."):  # no call offered (answered): not computable
        return share_cell(dotted(report, key))
    if key.startswith("entered."):
        _, kind, name = key.split(".")
        block = report["entered"][kind]
        return "non renseigné" if block is None or block[name] is None else block[name]
    return dotted(report, key)


def expected_total(totals: Mapping[str, Any], key: str) -> Any:
    value = totals[key]
    if key == "share_regulated" or key.startswith("answer_quality."):
        return share_cell(value)
    return "non renseigné" if value is None else value


def assert_month_workbook(body: bytes, data: Mapping[str, Any]) -> None:
    """Every keyed row of sheet "Indicateurs" holds the JSON's figure; every figure of
    the JSON (its circular rows and call breakdowns) has its row; peaks likewise."""
    book = openpyxl.load_workbook(io.BytesIO(body))
    assert book.sheetnames == ["Indicateurs", "Pics d'activité", "Qualité de décroché"]
    sheet = book["Indicateurs"]
    assert (
        sheet["A1"].value == "Indicateurs de suivi — Maison médicale de garde de Nîmes — mai 2026"
    )
    keyed: dict[str, Any] = {}
    for label, value, key in sheet.iter_rows(min_row=4, values_only=True):
        if key is None:
            assert value is None and label  # a section heading
            continue
        keyed[str(key)] = value
        assert value == expected_cell(data, str(key)), key
    expected_keys = {
        "calls_received",
        "acts",
        "share_regulated",
        "outcome_missing",
        *(f"persons_seen.{k}" for k in data["persons_seen"]),
        *(f"calls_by_route.{k}" for k in data["calls_by_route"]),
        *(f"calls_by_ground.{k}" for k in data["calls_by_ground"]),
        *(f"calls_by_day_type.{k}" for k in data["calls_by_day_type"]),
        "calls_failsafe",
        "entered.ed_passages.before_midnight",
        "entered.ed_passages.after_midnight",
        "entered.ed_passages.source",
    }
    assert expected_keys <= set(keyed)
    hours = {f"calls_by_hour.{h:02d}": n for h, n in enumerate(data["calls_by_hour"])}
    assert {k: keyed[k] for k in hours} == hours
    peaks = book["Pics d'activité"]
    for offset, kind in ((0, "calls"), (27, "visits")):
        header = [c.value for c in peaks[offset + 2]]
        assert header[0] == "Heure"
        for hour in range(24):
            row = [c.value for c in peaks[offset + 3 + hour]]
            assert row[0] == f"{hour:02d} h"
            assert row[1:] == [data["peaks"][kind][d][hour] for d in data["peaks"][kind]]


async def test_annual_export_has_12_rows_per_mmg_and_the_monthly_totals(
    app_client: tuple[AppClient, FixedClock],
) -> None:
    client, clock = app_client
    rng = random.Random(2026)
    for month in range(1, 13):
        for i in range(rng.randint(1, 5)):
            clock.set(datetime(2026, month, 10, 21, i, tzinfo=PARIS))
            status, _ = await post_twilio(
                client,
                "/hooks/twilio/voice",
                {"CallSid": f"CA{month}-{i}", "From": "+33600000001", "To": NIMES},
            )
            assert status == 200
        resp = await client.post(
            "/api/v1/visits",
            json={"mmg": "nimes", "channel": "direct", "outcome": "home", "acts": 1},
            headers=bearer("desk"),
        )
        assert resp.status == 201
    await client.app[keys.WRITER].flush()
    # Figures from elsewhere: ED passages for every month but December, the year's costs.
    for month in range(1, 12):
        resp = await client.put(
            f"/api/v1/figures/nimes/2026-{month:02d}",
            json={"before_midnight": 100 + month, "after_midnight": month, "source": "RPU CHU"},
            headers=bearer("coordinator"),
        )
        assert resp.status == 201, await resp.text()
    costs = {
        "equipment": 1500.0,
        "operation": 9800.5,
        "staff": 52000.0,
        "services": 3100.0,
        "communication": 450.0,
        "compensation": 61000.0,
    }
    resp = await client.put("/api/v1/figures/nimes/2026", json=costs, headers=bearer("coordinator"))
    assert resp.status == 201, await resp.text()
    store = client.app[keys.STORE]
    export = await annual_export(
        store, client.app[keys.PROTOCOLS].current, 2026, short_abandon_s=15
    )
    nimes: dict[str, Any] = export["mmgs"]["nimes"]
    assert len(nimes["months"]) == 12
    monthly = [await report(client, "nimes", f"2026-{m:02d}") for m in range(1, 13)]
    assert nimes["totals"]["calls_received"] == sum(r["calls_received"] for r in monthly)
    assert (
        nimes["totals"]["persons_seen.total"]
        == sum(r["persons_seen"]["total"] for r in monthly)
        == 12
    )
    # One direct walk-in a month, nobody regulated: share 0 each month and for the year;
    # Metz saw nobody: no share at all (null, never 0).
    assert [m["share_regulated"] for m in nimes["months"]] == [0.0] * 12
    assert nimes["totals"]["share_regulated"] == 0.0
    assert export["mmgs"]["metz"]["totals"]["share_regulated"] is None
    # Entered figures: December missing, so no yearly ED total (never a partial sum).
    totals = nimes["totals"]
    assert nimes["months"][0]["entered"]["ed_passages"]["before_midnight"] == 101
    assert nimes["months"][11]["entered"]["ed_passages"] is None
    assert totals["entered.ed_passages.before_midnight"] is None
    assert totals["entered.costs.operation"] == 9800.5
    assert export["mmgs"]["metz"]["totals"]["entered.costs.staff"] is None
    # Through the API (coordinators only), as JSON with labels, CSV and XLSX.
    url = "/api/v1/exports/2026"
    assert (await client.get(url, headers=bearer("desk"))).status == 403
    assert (await client.get(url + "?format=pdf", headers=bearer("coordinator"))).status == 400
    resp = await client.get(url, headers=bearer("coordinator"))
    assert resp.status == 200
    data: dict[str, Any] = await resp.json()
    assert data["mmgs"]["nimes"]["totals"] == nimes["totals"]
    assert data["labels"]["persons_seen.via_regulation"] == (
        "Nombre de personnes venues à la MMG via la régulation de la PDS"
    )
    assert set(data["labels"]) == set(nimes["totals"])

    resp = await client.get(url + "?format=csv", headers=bearer("coordinator"))
    raw = await resp.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    header, *rows = csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";")
    assert header[:3] == ["MMG", "Mois", "Nombre d'appels reçus à la MMG par mois"]
    assert len(rows) == 13 * len(data["mmgs"])  # 12 months and the yearly total, per MMG
    nimes_rows = [r for r in rows if r[0] == "nimes"]
    assert [r[1] for r in nimes_rows] == [
        "janvier 2026", "février 2026", "mars 2026", "avril 2026", "mai 2026", "juin 2026",
        "juillet 2026", "août 2026", "septembre 2026", "octobre 2026", "novembre 2026",
        "décembre 2026", "Total 2026",
    ]  # fmt: skip
    share_column = header.index("Part des personnes vues venues via la régulation de la PDS (%)")
    calls_column = header.index("Nombre d'appels reçus à la MMG par mois")
    assert nimes_rows[-1][calls_column] == str(nimes["totals"]["calls_received"])
    assert nimes_rows[-1][share_column] == "0,00"
    metz_total = next(r for r in rows if r[0] == "metz" and r[1] == "Total 2026")
    assert metz_total[share_column] == ""  # nobody seen: no share, never 0
    ed_column = header.index(
        "Nombre de passages aux urgences avant minuit dans les établissements implantés"
    )
    staff_column = header.index("Personnel (€)")
    assert [r[ed_column] for r in nimes_rows] == [
        *(str(100 + m) for m in range(1, 12)),
        "non renseigné",  # December
        "non renseigné",  # so no yearly total
    ]
    assert nimes_rows[-1][staff_column] == "52000,00"
    assert nimes_rows[0][staff_column] == ""  # the costs are the year's
    assert metz_total[staff_column] == "non renseigné"

    resp = await client.get(url + "?format=xlsx", headers=bearer("coordinator"))
    assert resp.status == 200
    assert 'filename="export-2026.xlsx"' in resp.headers["Content-Disposition"]
    assert_export_workbook(await resp.read(), data)


def assert_export_workbook(body: bytes, data: Mapping[str, Any]) -> None:
    """Summary row per MMG = its totals; each MMG sheet: row per key, 12 months and
    the year's total, every cell equal to the JSON's."""
    book = openpyxl.load_workbook(io.BytesIO(body))
    assert book.sheetnames == ["Synthèse", *data["mmgs"]]
    summary = book["Synthèse"]
    header = [c.value for c in summary[3]]
    assert header[:3] == ["MMG", "Nom", "Feuille"]
    labels = {v: k for k, v in data["labels"].items()}
    keys = [labels[str(label)] for label in header[3:]]
    assert set(keys) == set(data["labels"])
    for line in summary.iter_rows(min_row=4, values_only=True):
        mmg = data["mmgs"][line[0]]
        assert line[1] == mmg["name"]
        for key, value in zip(keys, line[3:], strict=True):
            assert value == expected_total(mmg["totals"], key), key
    for mmg_id, mmg in data["mmgs"].items():
        sheet = book[mmg_id]
        assert [c.value for c in sheet[3]][-2:] == ["Total 2026", "Clé"]
        seen = set()
        for label, *values, total, key in sheet.iter_rows(min_row=4, values_only=True):
            seen.add(key)
            assert label == data["labels"][key] or key == "share_regulated"
            for month, value in zip(mmg["months"], values, strict=True):
                if str(key).startswith("entered.costs."):
                    assert value is None  # the cost table is the year's, not a month's
                else:
                    assert value == expected_cell(month, str(key)), (key, month["month"])
            assert total == expected_total(mmg["totals"], str(key)), key
        assert seen == set(data["labels"])
