"""``/api/v1/figures``: a coordinator enters ED passages and costs; audited; shown as
"non renseigné" in the report until entered, never as 0."""

from __future__ import annotations

from typing import Any

import pytest

from regulator.ports import FixedClock
from tests.support.app import AppClient, bearer, paris

ED = {"before_midnight": 412, "after_midnight": 97, "source": "RPU du CHU de Nîmes"}
COSTS = {
    "equipment": 1200,
    "operation": 8400.5,
    "staff": 51000,
    "services": 2300,
    "communication": 300,
    "compensation": 64000,
}


async def put(client: AppClient, path: str, body: Any, role: str = "coordinator") -> Any:
    return await client.put(f"/api/v1/figures/{path}", json=body, headers=bearer(role))


async def test_report_says_not_entered_until_a_coordinator_enters_the_ed_passages(
    client: AppClient, clock: FixedClock
) -> None:
    resp = await client.get("/api/v1/reports/nimes/2026-11", headers=bearer("coordinator"))
    assert (await resp.json())["entered"] == {"ed_passages": None}
    md = await client.get("/api/v1/reports/nimes/2026-11?format=md", headers=bearer("desk"))
    text = await md.text()
    assert (
        "| Nombre de passages aux urgences avant minuit dans les établissements implantés "
        "| non renseigné |" in text
    )
    page = await client.get("/console/reports/nimes?month=2026-11", headers=bearer("coordinator"))
    assert "non renseigné" in await page.text()

    first = await put(client, "nimes/2026-11", ED)
    assert first.status == 201
    body = await first.json()
    assert body["previous"] is None
    assert body["figures"]["entered_by"] == "ars"
    assert body["figures"]["entered_at"] == clock.now().isoformat()

    clock.set(paris("2026-12-02T10:15"))
    corrected = await put(client, "nimes/2026-11", ED | {"before_midnight": 415})
    assert corrected.status == 200
    body = await corrected.json()
    assert body["previous"]["values"]["before_midnight"] == 412  # the audit: previous value
    assert body["figures"]["values"] == {"before_midnight": 415, "after_midnight": 97}

    history = await client.get("/api/v1/figures/nimes/2026-11", headers=bearer("admin"))
    data = await history.json()
    assert [h["values"]["before_midnight"] for h in data["history"]] == [412, 415]
    assert [h["entered_by"] for h in data["history"]] == ["ars", "ars"]  # who entered each
    assert data["history"][1]["entered_at"] == "2026-12-02T10:15:00+01:00"

    report = await (
        await client.get("/api/v1/reports/nimes/2026-11", headers=bearer("coordinator"))
    ).json()
    ed = report["entered"]["ed_passages"]
    assert (ed["before_midnight"], ed["after_midnight"], ed["source"]) == (
        415,
        97,
        "RPU du CHU de Nîmes",
    )
    other = await (
        await client.get("/api/v1/reports/nimes/2026-10", headers=bearer("coordinator"))
    ).json()
    assert other["entered"]["ed_passages"] is None  # another month: still not entered
    page = await client.get("/console/reports/nimes?month=2026-11", headers=bearer("coordinator"))
    assert "RPU du CHU de Nîmes" in await page.text()


async def test_costs_are_entered_for_a_year(client: AppClient) -> None:
    resp = await put(client, "nimes/2026", COSTS | {"source": "comptes 2026"})
    assert resp.status == 201, await resp.text()
    got = await (await client.get("/api/v1/figures/nimes/2026", headers=bearer("admin"))).json()
    assert got["kind"] == "costs"
    assert got["figures"]["values"]["operation"] == 8400.5
    assert got["figures"]["source"] == "comptes 2026"


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("nimes/2026-11", {k: v for k, v in ED.items() if k != "source"}, 422, "source"),
        ("nimes/2026-11", ED | {"after_midnight": -1}, 422, "after_midnight"),
        ("nimes/2026-11", COSTS, 422, "before_midnight"),  # a month takes ED passages
        ("nimes/2026", ED, 422, "equipment"),  # a year takes the cost table
        ("nimes/2026", COSTS | {"staff": "beaucoup"}, 422, "staff"),
        ("nimes/2026-13", ED, 400, "period"),
        ("nimes/novembre", ED, 400, "period"),
        ("lyon/2026-11", ED, 404, "mmg"),
    ],
)
async def test_bad_entries_are_refused_in_french(
    client: AppClient, path: str, body: Any, status: int, field: str
) -> None:
    resp = await put(client, path, body)
    assert resp.status == status
    data = await resp.json()
    fields = [e["field"] for e in data.get("errors", [])] or [data.get("field")]
    assert field in fields


async def test_the_entry_forms_are_on_the_reports_page_of_coordinators_only(
    client: AppClient,
) -> None:
    await put(client, "nimes/2026", COSTS)
    page = await client.get("/console/reports/nimes?month=2026-11", headers=bearer("coordinator"))
    text = await page.text()
    assert 'data-figures="/api/v1/figures/nimes/2026-11"' in text
    assert 'data-figures="/api/v1/figures/nimes/2026"' in text
    assert 'id="cost-operation" name="operation"' in text and 'value="8400.5"' in text
    assert '<script src="/console/static/reports.js" defer>' in text
    desk = await client.get("/console/reports/nimes?month=2026-11", headers=bearer("desk"))
    assert desk.status == 200
    assert "data-figures" not in await desk.text()


async def test_only_coordinators_enter_or_read_the_figures(client: AppClient) -> None:
    for role in ("desk", "regulator"):
        assert (await put(client, "nimes/2026-11", ED, role)).status == 403
        resp = await client.get("/api/v1/figures/nimes/2026-11", headers=bearer(role))
        assert resp.status == 403
    assert (await client.put("/api/v1/figures/nimes/2026-11", json=ED)).status == 401
