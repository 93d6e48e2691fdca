"""Referrals and visits through the API: roles, state machine, validation, idempotency."""

from __future__ import annotations

from typing import Any

import pytest

from regulator.ports import FixedClock
from regulator.web import keys
from tests.integration.conftest import AppClient, bearer, paris

REFERRAL: dict[str, Any] = {
    "mmg": "nimes",
    "case_id": "DRFR15030000042",
    "patient": {"display_name": "M. D.", "age_band": "18-64"},
    "callback_number": "06 11 22 33 44",
    "reason": "fièvre",
    "urgency": "P2",
    "expected_at": "2026-11-24T21:30:00+01:00",
    "tiers_payant": True,
    "note": "",
}


async def create(client: AppClient, body: dict[str, Any] | None = None, **headers: str) -> Any:
    resp = await client.post(
        "/api/v1/referrals", json=body or REFERRAL, headers=bearer("regulator") | headers
    )
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def act(
    client: AppClient, ref_id: str, action: str, role: str = "desk", body: Any = None
) -> tuple[int, Any]:
    resp = await client.post(
        f"/api/v1/referrals/{ref_id}/{action}", json=body or {}, headers=bearer(role)
    )
    return resp.status, await resp.json()


async def test_referral_is_created_pending_with_normalised_callback(client: AppClient) -> None:
    ref = await create(client)
    assert ref["status"] == "pending"
    assert ref["callback_number"] == "+33611223344"
    assert ref["created_by"] == "samu30"
    assert ref["id"].startswith("ref_")


async def test_same_idempotency_key_returns_the_same_referral(client: AppClient) -> None:
    headers = bearer("regulator") | {"Idempotency-Key": "k-1"}
    first = await client.post("/api/v1/referrals", json=REFERRAL, headers=headers)
    again = await client.post("/api/v1/referrals", json=REFERRAL, headers=headers)
    assert first.status == 201
    assert again.status == 200
    assert (await first.json())["id"] == (await again.json())["id"]
    listing = await client.get("/api/v1/referrals?mmg=nimes", headers=bearer("regulator"))
    assert (await listing.json())["count"] == 1


async def test_idempotency_key_reused_for_another_referral_is_409(client: AppClient) -> None:
    headers = bearer("regulator") | {"Idempotency-Key": "k-2"}
    first = await client.post("/api/v1/referrals", json=REFERRAL, headers=headers)
    assert first.status == 201
    other = REFERRAL | {"case_id": "DRFR15030000099"}
    again = await client.post("/api/v1/referrals", json=other, headers=headers)
    assert again.status == 409
    assert "Idempotency-Key" in (await again.json())["message"]


async def test_full_lifecycle_creates_a_regulated_visit_with_outcome(client: AppClient) -> None:
    ref = await create(client)
    status, body = await act(client, ref["id"], "ack")
    assert (status, body["status"]) == (200, "acknowledged")
    status, body = await act(client, ref["id"], "arrived")
    assert (status, body["status"]) == (200, "arrived")
    assert body["visit_id"]
    status, body = await act(client, ref["id"], "outcome", body={"outcome": "home", "acts": 2})
    assert (status, body["status"], body["acts"]) == (200, "completed", 2)
    visits = await client.get("/api/v1/visits?mmg=nimes&month=2026-11", headers=bearer("desk"))
    data = await visits.json()
    assert data["count"] == 1
    visit = data["visits"][0]
    assert visit["channel"] == "regulation"
    assert visit["outcome"] == "home"
    assert visit["acts"] == 2
    assert visit["referral_id"] == ref["id"]
    assert [h["status"] for h in body["history"]] == [
        "pending",
        "acknowledged",
        "arrived",
        "completed",
    ]


@pytest.mark.parametrize(
    ("path", "action"),
    [(("ack", "arrived", "outcome"), "cancel"), (("cancel",), "arrived"), (("ack",), "ack")],
)
async def test_impossible_transition_is_409_in_french(
    client: AppClient, path: tuple[str, ...], action: str
) -> None:
    ref = await create(client)
    for step in path:
        status, _ = await act(
            client, ref["id"], step, body={"outcome": "home"} if step == "outcome" else None
        )
        assert status == 200
    status, body = await act(client, ref["id"], action)
    assert status == 409
    assert body["error"] == "conflict"
    assert "Impossible de" in body["message"]


async def test_unknown_referral_is_404(client: AppClient) -> None:
    status, body = await act(client, "ref_doesnotexist", "ack")
    assert status == 404
    assert body["error"] == "not_found"


async def test_wrong_role_is_403(client: AppClient) -> None:
    resp = await client.post("/api/v1/referrals", json=REFERRAL, headers=bearer("desk"))
    assert resp.status == 403
    ref = await create(client)
    status, _ = await act(client, ref["id"], "ack", role="desk_metz")
    assert status == 403
    status, _ = await act(client, ref["id"], "ack", role="coordinator")
    assert status == 403
    resp = await client.get("/api/v1/referrals?mmg=nimes", headers=bearer("desk_metz"))
    assert resp.status == 403
    resp = await client.get("/api/v1/referrals")
    assert resp.status == 401


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"patient": {"age_band": "18-64"}}, "patient.display_name"),
        ({"callback_number": "pas un numéro"}, "callback_number"),
        ({"urgency": "P9"}, "urgency"),
        ({"expected_at": "2026-11-24T21:30:00"}, "expected_at"),
        ({"mmg": "lyon"}, "mmg"),
        ({"unexpected": 1}, "unexpected"),
        ({"patient": {"display_name": "M.\u0007D."}}, "patient.display_name"),
        ({"case_id": "DRFR\n1"}, "case_id"),
    ],
)
async def test_malformed_referral_is_422_naming_the_field_and_writes_nothing(
    client: AppClient, change: dict[str, Any], field: str
) -> None:
    resp = await client.post(
        "/api/v1/referrals", json=REFERRAL | change, headers=bearer("regulator")
    )
    assert resp.status == 422
    body = await resp.json()
    assert field in [e["field"] for e in body["errors"]]
    assert field in body["message"]
    listing = await client.get("/api/v1/referrals", headers=bearer("regulator"))
    assert (await listing.json())["count"] == 0


async def test_invalid_json_is_422(client: AppClient) -> None:
    resp = await client.post(
        "/api/v1/referrals",
        data=b"{not json",
        headers=bearer("regulator") | {"Content-Type": "application/json"},
    )
    assert resp.status == 422


async def test_no_show_only_after_the_configured_delay(
    client: AppClient, clock: FixedClock
) -> None:
    ref = await create(client)
    status, body = await act(client, ref["id"], "no_show")
    assert status == 409
    assert "Trop tôt" in body["message"]
    clock.set(paris("2026-11-25T01:00"))  # expected 21:30 + 180 min = 00:30
    status, body = await act(client, ref["id"], "no_show")
    assert (status, body["status"]) == (200, "no_show")


async def test_sweeper_marks_overdue_referrals_no_show(
    client: AppClient, clock: FixedClock
) -> None:
    from regulator.web.referrals import sweep_no_shows

    ref = await create(client)
    assert await sweep_no_shows(client.app) == 0
    clock.set(paris("2026-11-25T03:00"))
    assert await sweep_no_shows(client.app) == 1
    stored = await client.app[keys.STORE].get_referral(ref["id"])
    assert stored is not None and stored.status.value == "no_show"


async def test_visit_is_recorded_with_day_type_from_the_mmg_calendar(client: AppClient) -> None:
    resp = await client.post(
        "/api/v1/visits",
        json={
            "mmg": "nimes",
            "channel": "direct",
            "outcome": "home",
            "acts": 1,
            "at": "2026-11-11T10:00:00+01:00",  # Armistice: a public holiday
            "age_band": "65+",
            "reason": "douleur",
        },
        headers=bearer("desk"),
    )
    assert resp.status == 201, await resp.text()
    visit = await resp.json()
    assert visit["day_type"] == "holiday"
    assert visit["hour"] == 10


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"channel": "teleconsultation"}, "channel"),
        ({"case_id": "DRFR15030000042"}, "case_id"),  # a case number is regulation's only
        ({"tiers_payant": "peut-être"}, "tiers_payant"),
        ({"outcome": "maison"}, "outcome"),
        ({"acts": -1}, "acts"),
        ({"at": "2099-01-01T10:00:00+01:00"}, "at"),
    ],
)
async def test_malformed_visit_is_422(
    client: AppClient, change: dict[str, Any], field: str
) -> None:
    body = {"mmg": "nimes", "channel": "direct", "outcome": "home", "acts": 1} | change
    resp = await client.post("/api/v1/visits", json=body, headers=bearer("desk"))
    assert resp.status == 422
    assert field in [e["field"] for e in (await resp.json())["errors"]]


async def test_a_person_sent_by_the_regulation_without_a_referral_here_is_regulated(
    client: AppClient,
) -> None:
    body = {
        "mmg": "nimes",
        "channel": "regulation",
        "case_id": "LRM-2026-0042",
        "outcome": "home",
        "acts": 1,
    }
    resp = await client.post("/api/v1/visits", json=body, headers=bearer("desk"))
    assert resp.status == 201, await resp.text()
    visit = await resp.json()
    assert (visit["channel"], visit["case_id"], visit["tiers_payant"]) == (
        "regulation",
        "LRM-2026-0042",
        True,
    )
    assert visit["channel_label"] == "Adressé(e) par la régulation (15 / SAS)"
    assert visit["tiers_payant_reason"] == "accès régulé par le centre 15 / SAS : tiers payant"
    direct = await client.post(
        "/api/v1/visits",
        json={"mmg": "nimes", "channel": "direct", "outcome": "home"},
        headers=bearer("desk"),
    )
    assert (await direct.json())["tiers_payant"] is False
    report = await client.get("/api/v1/reports/nimes/2026-11", headers=bearer("coordinator"))
    data = await report.json()
    assert data["persons_seen"]["via_regulation"] == 1
    assert data["share_regulated"] == 0.5


async def test_tiers_payant_left_out_follows_the_rule_and_an_explicit_no_is_kept(
    client: AppClient,
) -> None:
    body = {k: v for k, v in REFERRAL.items() if k != "tiers_payant"}
    ref = await create(client, body)
    assert ref["tiers_payant"] is True
    assert ref["tiers_payant_reason"] == "accès régulé par le centre 15 / SAS : tiers payant"
    refused = await create(client, body | {"case_id": "DRFR15030000099", "tiers_payant": False})
    assert refused["tiers_payant"] is False
    assert refused["tiers_payant_reason"] == (
        "accès régulé, mais tiers payant écarté explicitement pour ce patient"
    )


async def test_referral_events_reach_the_live_bus(client: AppClient) -> None:
    bus = client.app[keys.BUS]
    sub = bus.subscribe(lambda e: e.kind == "referral")
    ref = await create(client)
    event = sub.queue.get_nowait()
    assert event is not None
    assert event.data["referral"]["id"] == ref["id"]
    assert event.data["event"] == "created"


async def test_openapi_document_lists_every_api_path(client: AppClient) -> None:
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    for path in (
        "/api/v1/referrals",
        "/api/v1/referrals/{id}/ack",
        "/api/v1/referrals/{id}/outcome",
        "/api/v1/visits",
        "/api/v1/reports/{mmg}/{month}",
    ):
        assert path in doc["paths"]
