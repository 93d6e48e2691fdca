"""Referrals and visits through the API: roles, state machine, validation, idempotency."""

from __future__ import annotations

from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest

from regulator.auth import hash_token
from regulator.core.models import ReferralStatus
from regulator.ports import FixedClock, Store
from regulator.web import keys
from regulator.web.app import create_app
from tests.support.app import AppClient, ClientFactory, bearer, make_settings, paris

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


# ------------------------------------------------------------------- scopes (issue 18)


def _scoped_tokens(path: Path) -> Path:
    lines = [
        f'- {{name: samu30-nimes, sha256: "{hash_token("tok-nimes-only")}", '
        "roles: [regulator], mmgs: [nimes]}",
        f'- {{name: samu57, sha256: "{hash_token("tok-metz")}", roles: [regulator], mmgs: [metz]}}',
        f'- {{name: ars-gard, sha256: "{hash_token("tok-ars-gard")}", '
        "roles: [coordinator], mmgs: [nimes]}",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_a_regulator_limited_to_one_mmg_lists_its_referrals_however_many_others_exist(
    aiohttp_client: ClientFactory, tmp_path: Path, store: Store, clock: FixedClock
) -> None:
    settings = make_settings(tmp_path, tokens_file=_scoped_tokens(tmp_path / "scoped.yaml"))
    client = await aiohttp_client(create_app(settings, store, clock))
    nimes = {"Authorization": "Bearer tok-nimes-only"}
    metz = {"Authorization": "Bearer tok-metz"}
    resp = await client.post("/api/v1/referrals", json=REFERRAL, headers=nimes)
    assert resp.status == 201, await resp.text()
    for i in range(100):
        clock.set(paris("2026-11-24T21:00") + timedelta(seconds=i + 1))
        body = REFERRAL | {"mmg": "metz", "case_id": f"DRFR57{i:09}"}
        resp = await client.post("/api/v1/referrals", json=body, headers=metz)
        assert resp.status == 201, await resp.text()
    listing = await (await client.get("/api/v1/referrals?limit=50", headers=nimes)).json()
    print(
        "1 nimes referral + 100 newer metz referrals, regulator limited to nimes: "
        f"count={listing['count']}"
    )
    assert listing["count"] == 1
    assert listing["referrals"][0]["mmg"] == "nimes"


async def test_a_coordinator_limited_to_one_mmg_reads_only_its_reports_and_visits(
    aiohttp_client: ClientFactory, tmp_path: Path, store: Store, clock: FixedClock
) -> None:
    settings = make_settings(tmp_path, tokens_file=_scoped_tokens(tmp_path / "scoped.yaml"))
    client = await aiohttp_client(create_app(settings, store, clock))
    ars = {"Authorization": "Bearer tok-ars-gard"}
    statuses = {
        path: (await client.get(path, headers=ars)).status
        for path in (
            "/api/v1/reports/nimes/2026-11",
            "/api/v1/reports/metz/2026-11",
            "/api/v1/visits?mmg=nimes&month=2026-11",
            "/api/v1/visits?mmg=metz&month=2026-11",
        )
    }
    print(f"coordinator limited to nimes: {statuses}")
    assert list(statuses.values()) == [200, 403, 200, 403]


async def test_the_sweeper_closes_overdue_referrals_older_than_the_newest_thousand(
    client: AppClient, clock: FixedClock
) -> None:
    from regulator.web.referrals import sweep_no_shows
    from tests.support.store import referral

    store = client.app[keys.STORE]
    start = paris("2026-11-24T10:00")
    for i in range(1200):  # the 200 oldest are long overdue, the 1,000 newest expected soon
        at = start + timedelta(hours=0 if i < 200 else 11, seconds=i)
        await store.create_referral(referral(f"ref_{i:04}", mmg="nimes", created_at=at), None)
    closed = await sweep_no_shows(client.app)
    still_open = await store.list_referrals(
        statuses=frozenset({ReferralStatus.PENDING}), limit=1000, mmg="nimes"
    )
    print(f"1,200 open referrals, the 200 oldest overdue: sweeper closed {closed}")
    assert closed == 200
    assert len(still_open) == 1000


# -------------------------------------------------------------- inputs (issue 18, point 7)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/referrals?limit=²", "limit"),
        ("/api/v1/referrals?limit=١٠", "limit"),
        ("/api/v1/reports/nimes/²²²²-01", "month"),
        ("/api/v1/reports/nimes/2026-¹²", "month"),
        ("/api/v1/visits?mmg=nimes&month=２０２６-11", "month"),
        ("/api/v1/events?last_event_id=²", "last_event_id"),
        ("/api/v1/events?last_event_id=-1", "last_event_id"),
    ],
)
async def test_unicode_digits_are_a_400_naming_the_field(
    client: AppClient, path: str, field: str
) -> None:
    resp = await client.get(path, headers=bearer("admin"))
    text = await resp.text()
    print(f"GET {path}: {resp.status} {text[:160]}")
    assert resp.status == 400
    body = await resp.json()
    assert body["field"] == field
    assert field in body["message"]


async def test_last_event_id_in_the_header_is_checked_too(client: AppClient) -> None:
    resp = await client.get("/api/v1/events", headers=bearer("admin") | {"Last-Event-ID": "٣"})
    assert resp.status == 400
    assert (await resp.json())["field"] == "Last-Event-ID"


async def test_a_retry_with_a_corrected_callback_number_or_urgency_is_409_naming_them(
    client: AppClient,
) -> None:
    headers = bearer("regulator") | {"Idempotency-Key": "k-corrected"}
    first = await client.post("/api/v1/referrals", json=REFERRAL, headers=headers)
    assert first.status == 201
    corrected = REFERRAL | {"callback_number": "06 99 88 77 66", "urgency": "P1"}
    again = await client.post("/api/v1/referrals", json=corrected, headers=headers)
    body = await again.json()
    print(
        "same Idempotency-Key, corrected callback number and urgency: "
        f"{again.status} {body.get('message', '')} fields={body.get('fields')} "
        f"urgency={body.get('urgency')}"
    )
    assert again.status == 409
    assert body["fields"] == ["callback_number", "urgency"]
    assert "callback_number, urgency" in body["message"]
    assert body["id"] == (await first.json())["id"]
    # The same request again (another notation of the same number) is still a retry.
    same = REFERRAL | {"callback_number": "+33611223344"}
    retry = await client.post("/api/v1/referrals", json=same, headers=headers)
    assert retry.status == 200


async def test_a_visit_retry_with_other_values_is_409_naming_them(client: AppClient) -> None:
    headers = bearer("desk") | {"Idempotency-Key": "v-1"}
    body = {"mmg": "nimes", "channel": "direct", "outcome": "home", "acts": 1}
    assert (await client.post("/api/v1/visits", json=body, headers=headers)).status == 201
    again = await client.post("/api/v1/visits", json=body | {"acts": 2}, headers=headers)
    assert again.status == 409
    assert (await again.json())["fields"] == ["acts"]
    assert (await client.post("/api/v1/visits", json=body, headers=headers)).status == 200


async def test_visits_default_to_the_mmg_local_month_not_the_utc_one(
    client: AppClient, clock: FixedClock
) -> None:
    # Still 30 November in UTC, and the clock says so (like the system clock).
    clock.set(paris("2026-12-01T00:30").astimezone(UTC))
    body = {"mmg": "nimes", "channel": "direct", "outcome": "home", "acts": 1}
    assert (await client.post("/api/v1/visits", json=body, headers=bearer("desk"))).status == 201
    listing = await (await client.get("/api/v1/visits?mmg=nimes", headers=bearer("desk"))).json()
    months = {v["month"] for v in listing["visits"]}
    print(f"visit at 00:30 on 1 December in Nîmes, listing without month: count={listing['count']}")
    assert listing["count"] == 1
    assert months == {"2026-12"}


@pytest.mark.parametrize(
    ("at", "role", "expected"),
    [
        ("2026-11-02T10:00:00+01:00", "desk", 201),  # this month
        ("2026-10-15T10:00:00+02:00", "desk", 201),  # the previous month: still open
        ("2026-09-30T10:00:00+02:00", "desk", 403),  # exported: closed to the desk
        ("2026-09-30T10:00:00+02:00", "coordinator", 201),  # the coordinator amends it
        ("2025-01-10T10:00:00+01:00", "admin", 201),
    ],
)
async def test_a_visit_dated_into_an_exported_month_needs_the_coordinator_and_is_audited(
    client: AppClient, at: str, role: str, expected: int
) -> None:
    from structlog.testing import capture_logs

    body = {"mmg": "nimes", "channel": "direct", "outcome": "home", "acts": 1, "at": at}
    with capture_logs() as logs:
        resp = await client.post("/api/v1/visits", json=body, headers=bearer(role))
    audit = [line for line in logs if line["event"] == "audit_visit_in_closed_month"]
    print(f"visit dated {at} by {role} on 24/11/2026: {resp.status}, audit lines={len(audit)}")
    assert resp.status == expected, await resp.text()
    if expected == 403:
        assert "coordinat" in (await resp.json())["message"]
    closed = at < "2026-10"
    assert len(audit) == (1 if closed and expected == 201 else 0)
    if audit:
        assert audit[0]["by"] in ("ars", "admin")
        assert audit[0]["mmg"] == "nimes"


async def test_an_age_band_in_non_ascii_digits_is_refused_naming_the_field(
    client: AppClient,
) -> None:
    body = {"mmg": "nimes", "channel": "direct", "outcome": "home", "age_band": "١٨-٦٤"}
    resp = await client.post("/api/v1/visits", json=body, headers=bearer("desk"))
    print(f"visit with age_band '١٨-٦٤': {resp.status}")
    assert resp.status == 422
    assert "age_band" in [e["field"] for e in (await resp.json())["errors"]]


async def test_an_outcome_for_an_arrival_in_an_exported_month_needs_the_coordinator(
    client: AppClient, clock: FixedClock
) -> None:
    from structlog.testing import capture_logs

    clock.set(paris("2026-09-10T21:00"))
    ref = await create(client, REFERRAL | {"expected_at": "2026-09-10T21:30:00+02:00"})
    assert (await act(client, ref["id"], "arrived"))[0] == 200
    clock.set(paris("2026-11-24T21:00"))
    outcome = {"outcome": "home", "acts": 1}
    desk_status, _ = await act(client, ref["id"], "outcome", body=outcome)
    with capture_logs() as logs:
        admin_status, _ = await act(client, ref["id"], "outcome", role="admin", body=outcome)
    audit = [line for line in logs if line["event"] == "audit_visit_in_closed_month"]
    print(
        f"outcome on 24/11 for an arrival on 10/09: desk {desk_status}, admin {admin_status}, "
        f"audit lines={len(audit)}"
    )
    assert (desk_status, admin_status, len(audit)) == (403, 200, 1)
