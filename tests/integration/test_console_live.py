"""Issue 17's console pieces with the real app (SQLite store, real write path):
the regulation line's figures of the day (page, JSON, pushed on the live stream), the
calls put through to the desk, and the P0/P1 confirmation of the referral form."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC
from typing import Any

import orjson
import pytest

from regulator.core.legs import LegEvent, LegStatus
from regulator.core.models import Route
from regulator.web import keys
from regulator.web.console.quality import LIVE_QUALITY
from tests.integration.test_consoles import REFERRAL, origin
from tests.integration.test_sse import next_event, subscribed
from tests.support.app import NIMES, AppClient, Signed, bearer, paris, post_generic, sign_in_all


def leg(call_id: str, status: LegStatus, at: str, mmg: str = "nimes", **kw: Any) -> LegEvent:
    """One platform report about one leg, ``at`` in Nîmes' local time."""
    return LegEvent(
        call_id=call_id,
        target=kw.pop("target", Route.REGULATION),
        status=status,
        at=paris(at).astimezone(UTC),
        mmg=mmg,
        platform="generic",
        **kw,
    )


#: Tonight in Nîmes (the clock says 21:00 on Tuesday 24 November 2026), as the
#: platforms would report it: 4 calls offered to the regulation line (one still
#: ringing), 2 answered (25 s and 75 s), one abandoned at 40 s, one short abandon (8 s,
#: left out); plus what must not count: yesterday's call, the desk's line, Metz.
TONIGHT = (
    leg("c-25s", LegStatus.RINGING, "2026-11-24T20:50:00"),
    leg("c-25s", LegStatus.ANSWERED, "2026-11-24T20:50:25"),
    leg("c-25s", LegStatus.COMPLETED, "2026-11-24T20:55:00"),
    leg("c-75s", LegStatus.RINGING, "2026-11-24T20:40:00"),
    leg("c-75s", LegStatus.ANSWERED, "2026-11-24T20:41:15"),
    leg("c-40s", LegStatus.RINGING, "2026-11-24T20:30:00"),
    leg("c-40s", LegStatus.ABANDONED, "2026-11-24T20:30:40"),
    leg("c-8s", LegStatus.RINGING, "2026-11-24T20:20:00"),
    leg("c-8s", LegStatus.ABANDONED, "2026-11-24T20:20:08"),
    leg("c-ringing", LegStatus.RINGING, "2026-11-24T20:59:30"),
    leg("c-yesterday", LegStatus.RINGING, "2026-11-23T22:00:00"),
    leg("c-yesterday", LegStatus.ANSWERED, "2026-11-23T22:00:10"),
    leg("c-desk", LegStatus.RINGING, "2026-11-24T20:45:00", target=Route.DIRECT_ACCESS),
    leg("c-metz", LegStatus.RINGING, "2026-11-24T20:10:00", mmg="metz"),
    leg("c-metz", LegStatus.ANSWERED, "2026-11-24T20:10:05", mmg="metz"),
)


async def write_legs(client: AppClient, events: tuple[LegEvent, ...]) -> None:
    """Through the call router and the group-commit writer, as the hooks do."""
    router = client.app[keys.ROUTER]
    for event in events:
        await router.leg_event(event)
    await client.app[keys.WRITER].flush()


@pytest.fixture
async def signed(client: AppClient) -> Signed:
    """Every role signed in through the login form (server-side sessions)."""
    return await sign_in_all(client)


def console_write(role: str, client: AppClient, signed: Signed) -> dict[str, str]:
    """What the console's script sends with a write: cookie, CSRF header, own origin."""
    return signed.cookie(role) | signed.csrf(role) | {"Origin": origin(client)}


async def test_todays_figures_of_the_regulation_line_in_the_page_and_the_json(
    client: AppClient, signed: Signed
) -> None:
    await write_legs(client, TONIGHT)

    resp = await client.get("/console/regulation/quality.json", headers=signed.cookie("regulator"))
    assert resp.status == 200
    data = await resp.json()
    by_mmg = {row["mmg"]: row for row in data["mmgs"]}
    nimes = by_mmg["nimes"]
    assert nimes["day"] == "2026-11-24"
    assert (nimes["offered"], nimes["answered"], nimes["waiting"]) == (4, 2, 1)
    assert (nimes["answer_rate"], nimes["qs60"]) == (0.5, 0.25)
    assert (nimes["abandoned"], nimes["short_abandons"]) == (1, 1)
    assert nimes["display"] == {
        "offered": "4",
        "answer_rate": "50\u00a0%",
        "qs60": "25\u00a0%",
        "waiting": "1",
    }
    assert by_mmg["metz"]["display"] == {
        "offered": "1",
        "answer_rate": "100\u00a0%",
        "qs60": "100\u00a0%",
        "waiting": "0",
    }
    # Nothing offered at La Réunion: no share to show (null), not 0 %.
    reunion = by_mmg["saint-denis-reunion"]
    assert reunion["answer_rate"] is None
    assert reunion["display"]["answer_rate"] == "—"

    page = await (
        await client.get("/console/regulation", headers=signed.cookie("regulator"))
    ).text()
    assert "Ligne de régulation aujourd'hui" in page
    for header in ("Appels présentés", "Taux de décroché", "QS60", "En attente maintenant"):
        assert header in page
    cells = dict(re.findall(r'data-quality="(\w+)" data-mmg="nimes">([^<]*)<', page))
    assert cells == {
        "offered": "4",
        "answer_rate": "50\u00a0%",
        "qs60": "25\u00a0%",
        "waiting": "1",
    }
    assert "moins de 15 s" in page  # REGULATOR_SHORT_ABANDON_S, as set


async def test_the_figures_are_for_regulators_only(client: AppClient, signed: Signed) -> None:
    resp = await client.get("/console/regulation/quality.json", headers=signed.cookie("desk"))
    assert resp.status == 403
    body = await resp.json()
    assert "console de régulation" in body["message"]
    anonymous = await client.get("/console/regulation/quality.json")
    assert anonymous.status == 401
    assert (await anonymous.json())["error"] == "unauthorized"


async def test_a_leg_change_pushes_the_figures_live_at_most_once_a_second(
    client: AppClient,
) -> None:
    live = client.app[LIVE_QUALITY]
    stream = await client.get("/api/v1/events", headers=bearer("regulator"))
    await subscribed(client, 1)
    loop = asyncio.get_running_loop()

    await write_legs(client, (leg("p-1", LegStatus.RINGING, "2026-11-24T20:58:00"),))
    _, kind, data = await next_event(stream)
    first_at = loop.time()
    assert (kind, data["mmg"], data["line"]) == ("quality", "nimes", "regulation")
    assert data["quality"]["display"]["waiting"] == "1"
    assert data["quality"]["offered"] == 1

    # Three batches in quick succession: one more pass, a second after the first,
    # with all three in it.
    await write_legs(client, (leg("p-1", LegStatus.ANSWERED, "2026-11-24T20:58:20"),))
    await write_legs(client, (leg("p-2", LegStatus.RINGING, "2026-11-24T20:59:00"),))
    await write_legs(client, (leg("p-3", LegStatus.RINGING, "2026-11-24T20:59:10"),))
    _, kind, data = await next_event(stream)
    assert loop.time() - first_at >= 0.9
    assert kind == "quality"
    assert (data["quality"]["offered"], data["quality"]["answered"]) == (3, 1)
    assert data["quality"]["waiting"] == 2
    assert live.pushed == 2

    # A platform's retry changes no leg: nothing recomputed, nothing pushed.
    await write_legs(client, (leg("p-1", LegStatus.ANSWERED, "2026-11-24T20:58:20"),))
    # The desk's line is not shown in the regulation console: nothing pushed either.
    await write_legs(
        client, (leg("p-4", LegStatus.RINGING, "2026-11-24T20:59:20", target=Route.DIRECT_ACCESS),)
    )
    await asyncio.sleep(1.2)
    assert live.pushed == 2
    stream.close()


async def test_an_overflow_reaches_the_desk_with_its_ground_and_the_advice_card(
    client: AppClient, signed: Signed
) -> None:
    page = await (await client.get("/console/desk/nimes", headers=signed.cookie("desk"))).text()
    # Nîmes' protocol overflows after 90 s: the card's heading says so.
    assert (
        'data-ground="regulation_overflow">Débordement : la régulation (centre 15) '
        "n&#39;a pas répondu en 90 s<" in page
    )
    assert 'data-ground="professional">Professionnel de santé enregistré<' in page
    assert "Appel non régulé" in page
    assert "composer le 15 sans attendre" in page
    metz = await (await client.get("/console/desk/metz", headers=signed.cookie("desk_metz"))).text()
    assert "n&#39;a pas répondu<" in metz  # no overflow in Metz' protocol: no delay

    stream = await client.get("/api/v1/events?mmg=nimes", headers=signed.cookie("desk"))
    await subscribed(client, 1)
    call = {"call_id": "ovf-1", "to": NIMES, "from": "+33611000003"}
    status, answer = await post_generic(
        client, "/hooks/generic/call", call | {"stage": "dial_failed", "target": "regulation"}
    )
    assert status == 200
    assert answer["route"] == "direct_access"
    _, kind, data = await next_event(stream)
    assert kind == "call"
    assert (data["mmg"], data["route"], data["ground"]) == (
        "nimes",
        "direct_access",
        "regulation_overflow",
    )
    stream.close()


async def referrals_of(client: AppClient, case_id: str) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/referrals?mmg=nimes", headers=bearer("regulator"))
    return [r for r in (await resp.json())["referrals"] if r["case_id"] == case_id]


async def test_a_p0_referral_from_the_console_form_needs_the_confirmation(
    client: AppClient, signed: Signed
) -> None:
    body = REFERRAL | {"case_id": "DRFR15-P0", "urgency": "P0"}
    headers = console_write("regulator", client, signed) | {"Idempotency-Key": "draft-p0"}

    refused = await client.post("/console/regulation/referrals", json=body, headers=headers)
    assert refused.status == 422
    answer = await refused.json()
    assert answer["confirm_required"] is True
    assert answer["message"].startswith("Orientation non envoyée : une urgence P0")
    assert "vers « Maison médicale de garde de Nîmes »" in answer["message"]
    assert answer["errors"] == [
        {
            "field": "urgency",
            "value": "P0",
            "message": "urgence P0 : confirmation requise avant l'envoi",
        }
    ]
    assert await referrals_of(client, "DRFR15-P0") == []
    assert (
        await client.post(
            "/console/regulation/referrals", json=body | {"confirm_urgency": False}, headers=headers
        )
    ).status == 422

    confirmed = body | {"confirm_urgency": True}
    created = await client.post("/console/regulation/referrals", json=confirmed, headers=headers)
    assert created.status == 201, await created.text()
    ref = await created.json()
    assert (ref["urgency"], ref["created_by"], ref["status"]) == ("P0", "samu30", "pending")
    # The same draft sent again (a retry): the same referral, not a second one.
    again = await client.post("/console/regulation/referrals", json=confirmed, headers=headers)
    assert again.status == 200
    assert (await again.json())["id"] == ref["id"]
    assert len(await referrals_of(client, "DRFR15-P0")) == 1


async def test_other_urgencies_and_the_api_need_no_confirmation(
    client: AppClient, signed: Signed
) -> None:
    p2 = REFERRAL | {"case_id": "DRFR15-P2", "urgency": "P2"}
    resp = await client.post(
        "/console/regulation/referrals", json=p2, headers=console_write("regulator", client, signed)
    )
    assert resp.status == 201
    plain = REFERRAL | {"case_id": "DRFR15-none"}
    plain.pop("urgency")
    resp = await client.post(
        "/console/regulation/referrals",
        json=plain,
        headers=console_write("regulator", client, signed),
    )
    assert resp.status == 201
    # The API is unchanged: a regulation software's P1 is created as it comes.
    api = await client.post(
        "/api/v1/referrals",
        json=REFERRAL | {"case_id": "DRFR15-API-P1", "urgency": "P1"},
        headers=bearer("regulator"),
    )
    assert api.status == 201
    assert len(await referrals_of(client, "DRFR15-API-P1")) == 1


async def test_the_console_form_keeps_the_apis_checks(client: AppClient, signed: Signed) -> None:
    p1 = REFERRAL | {"case_id": "DRFR15-P1", "urgency": "P1", "confirm_urgency": True}
    # Another role: refused even when confirmed.
    desk = await client.post(
        "/console/regulation/referrals", json=p1, headers=console_write("desk", client, signed)
    )
    assert desk.status == 403
    # A cookie write without the CSRF header: refused.
    no_csrf = await client.post(
        "/console/regulation/referrals",
        json=p1,
        headers=signed.cookie("regulator") | {"Origin": origin(client)},
    )
    assert no_csrf.status == 403
    assert "X-CSRF-Token" in (await no_csrf.json())["message"]
    # A confirmation that is not a yes or a no, and the API's own field errors.
    odd = await client.post(
        "/console/regulation/referrals",
        json=p1 | {"confirm_urgency": "oui"},
        headers=console_write("regulator", client, signed),
    )
    assert odd.status == 422
    assert (await odd.json())["errors"][0]["field"] == "confirm_urgency"
    bad = await client.post(
        "/console/regulation/referrals",
        data=orjson.dumps(p1 | {"patient": {"display_name": ""}}),
        headers=console_write("regulator", client, signed) | {"Content-Type": "application/json"},
    )
    assert bad.status == 422
    assert (await bad.json())["errors"][0]["field"] == "patient.display_name"
    assert await referrals_of(client, "DRFR15-P1") == []
