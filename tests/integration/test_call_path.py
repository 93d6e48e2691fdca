"""Every platform end to end through the app: signed request → the right answer."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from regulator.platforms import twilio
from regulator.ports import FixedClock
from regulator.settings import Settings
from regulator.storage.redis import RedisStore
from regulator.storage.sqlite import SqliteStore
from regulator.web import keys
from regulator.web.app import create_app
from tests.support.app import (
    FRONT_DESK_NIMES,
    KAMAILIO_SECRET,
    METZ,
    NIMES,
    PROFESSIONAL_NIMES,
    PUBLIC,
    REGULATION_NIMES,
    REUNION,
    TWILIO_TOKEN,
    AppClient,
    ClientFactory,
    bearer,
    callback,
    make_settings,
    paris,
    post_generic,
    post_twilio,
    post_vonage,
    report,
)

CALLER = "+33611223344"


def twiml(text: str) -> ET.Element:
    root = ET.fromstring(text.encode())
    assert root.tag == "Response"
    return root


def dialled(text: str) -> str | None:
    """The number (or SIP URI) a TwiML answer dials, or None."""
    root = twiml(text)
    dial = root.find("Dial")
    if dial is None:
        return None
    target = dial.find("Number")
    if target is None:
        target = dial.find("Sip")
    assert target is not None and target.text
    return target.text


def said(text: str) -> str:
    return " ".join(s.text or "" for s in twiml(text).iter("Say"))


# ------------------------------------------------------------------------ Twilio


async def test_twilio_open_hours_offer_the_menu_with_a_gather(client: AppClient) -> None:
    status, body = await post_twilio(
        client, "/hooks/twilio/voice", {"CallSid": "CA1", "From": CALLER, "To": NIMES}
    )
    assert status == 200
    gather = twiml(body).find("Gather")
    assert gather is not None
    assert gather.get("action") == f"{PUBLIC}/hooks/twilio/gather"
    assert gather.get("numDigits") == "1"
    assert "tapez 1" in said(body)
    assert twiml(body).find("Redirect") is not None


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        ("1", REGULATION_NIMES),
        ("2", "+33466333333"),
        ("9", REGULATION_NIMES),
        ("", REGULATION_NIMES),
    ],
)
async def test_twilio_menu_digit_routes_to_regulation_or_pharmacy_on_duty(
    client: AppClient, digits: str, expected: str
) -> None:
    await post_twilio(
        client, "/hooks/twilio/voice", {"CallSid": "CA2", "From": CALLER, "To": NIMES}
    )
    params = {"CallSid": "CA2", "From": CALLER, "To": NIMES}
    if digits:
        params["Digits"] = digits
    status, body = await post_twilio(client, "/hooks/twilio/gather", params)
    assert status == 200
    assert dialled(body) == expected
    data = await report(client)
    route = "pharmacy" if expected == "+33466333333" else "regulation"
    assert data["calls_received"] == 1
    assert data["calls_by_route"][route] == 1
    assert data["calls_by_route"]["menu"] == 0


async def test_twilio_professional_gets_direct_access_to_front_desk(client: AppClient) -> None:
    _, body = await post_twilio(
        client, "/hooks/twilio/voice", {"CallSid": "CA3", "From": "06 12 34 56 78", "To": NIMES}
    )
    assert dialled(body) == FRONT_DESK_NIMES
    data = await report(client)
    assert data["calls_by_ground"]["professional"] == 1


async def test_twilio_pending_referral_caller_gets_direct_access(client: AppClient) -> None:
    resp = await client.post(
        "/api/v1/referrals",
        json={
            "mmg": "nimes",
            "case_id": "DRFR1503000001",
            "patient": {"display_name": "M. D.", "age_band": "18-64"},
            "callback_number": "06 11 22 33 44",
            "reason": "fièvre",
            "urgency": "P2",
        },
        headers=bearer("regulator"),
    )
    assert resp.status == 201, await resp.text()
    _, body = await post_twilio(
        client, "/hooks/twilio/voice", {"CallSid": "CA4", "From": CALLER, "To": NIMES}
    )
    assert dialled(body) == FRONT_DESK_NIMES
    assert (await report(client))["calls_by_ground"]["pending_referral"] == 1


async def test_twilio_unanswered_regulation_overflows_to_front_desk(client: AppClient) -> None:
    await post_twilio(
        client, "/hooks/twilio/voice", {"CallSid": "CA5", "From": CALLER, "To": NIMES}
    )
    _, body = await post_twilio(
        client,
        "/hooks/twilio/gather",
        {"CallSid": "CA5", "From": CALLER, "To": NIMES, "Digits": "1"},
    )
    dial = twiml(body).find("Dial")
    assert dial is not None and dial.get("timeout") == "90"
    action = dial.get("action") or ""
    path = action.removeprefix(PUBLIC)
    status, body = await post_twilio(
        client,
        path,
        {"CallSid": "CA5", "From": CALLER, "To": NIMES, "DialCallStatus": "no-answer"},
    )
    assert status == 200
    assert dialled(body) == FRONT_DESK_NIMES
    data = await report(client)
    assert data["calls_by_route"]["direct_access"] == 1
    assert data["calls_by_ground"]["regulation_overflow"] == 1
    assert data["calls_received"] == 1


async def test_twilio_answered_dial_ends_the_call(client: AppClient) -> None:
    status, body = await post_twilio(
        client,
        callback("/hooks/twilio/dial-status?mmg=nimes&target=regulation"),
        {"CallSid": "CA6", "From": CALLER, "To": NIMES, "DialCallStatus": "completed"},
    )
    assert status == 200
    assert twiml(body).find("Hangup") is not None


async def test_twilio_overflow_not_allowed_asks_to_dial_15_not_the_same_line_again(
    client: AppClient, clock: FixedClock
) -> None:
    clock.set(paris("2026-11-24T21:00"))
    status, body = await post_twilio(
        client,
        callback("/hooks/twilio/dial-status?mmg=metz&target=regulation"),
        {"CallSid": "CA7", "From": CALLER, "To": METZ, "DialCallStatus": "busy"},
    )
    assert status == 200
    assert dialled(body) is None
    assert twiml(body).find("Hangup") is not None
    assert "Raccrochez et composez le 15" in said(body)


async def test_twilio_closed_hours_route_to_regulation(
    client: AppClient, clock: FixedClock
) -> None:
    clock.set(paris("2026-11-24T10:00"))  # Tuesday morning: closed
    _, body = await post_twilio(
        client, "/hooks/twilio/voice", {"CallSid": "CA8", "From": PROFESSIONAL_NIMES, "To": NIMES}
    )
    assert dialled(body) == REGULATION_NIMES


async def test_twilio_closed_message_announces_15_and_hangs_up(
    client: AppClient, clock: FixedClock
) -> None:
    clock.set(paris("2026-11-24T10:00"))  # 13:00 in La Réunion on a Tuesday: closed
    _, body = await post_twilio(
        client, "/hooks/twilio/voice", {"CallSid": "CA9", "From": CALLER, "To": REUNION}
    )
    assert dialled(body) is None
    assert twiml(body).find("Hangup") is not None
    assert "composez le 15" in said(body)


async def test_twilio_status_callback_completes_the_call_record(client: AppClient) -> None:
    await post_twilio(
        client, "/hooks/twilio/voice", {"CallSid": "CA10", "From": CALLER, "To": NIMES}
    )
    status, _ = await post_twilio(
        client,
        "/hooks/twilio/status",
        {
            "CallSid": "CA10",
            "From": CALLER,
            "To": NIMES,
            "CallStatus": "completed",
            "CallDuration": "42",
        },
    )
    assert status in (200, 204)
    await client.app[keys.WRITER].flush()
    record = await client.app[keys.STORE].get_call("CA10")
    assert record is not None
    assert record.status == "completed"
    assert record.duration_s == 42


async def test_twilio_unknown_called_number_fails_safe_to_configured_centre_15(
    client: AppClient,
) -> None:
    _, body = await post_twilio(
        client, "/hooks/twilio/voice", {"CallSid": "CA11", "From": CALLER, "To": "+33499999999"}
    )
    assert dialled(body) == "+33466000099"
    metrics = await (await client.get("/metrics")).text()
    assert 'regulator_failsafe_total{reason="unknown_number"} 1.0' in metrics


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Twilio-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="},
        {"X-Twilio-Signature": ""},
    ],
)
async def test_twilio_forged_or_missing_signature_gets_403_and_no_call_record(
    client: AppClient, headers: dict[str, str]
) -> None:
    resp = await client.post(
        "/hooks/twilio/voice",
        data={"CallSid": "CAforged", "From": CALLER, "To": NIMES},
        headers=headers,
    )
    assert resp.status == 403
    assert (await report(client))["calls_received"] == 0
    assert await client.app[keys.STORE].get_call("CAforged") is None


async def test_twilio_signature_with_wrong_token_is_rejected(client: AppClient) -> None:
    status, _ = await post_twilio(
        client,
        "/hooks/twilio/voice",
        {"CallSid": "CA12", "From": CALLER, "To": NIMES},
        token="not-the-token",
    )
    assert status == 403


async def test_twilio_signature_covers_query_string_and_public_url_behind_proxy(
    client: AppClient,
) -> None:
    # The platform calls https://regulator.example/hooks/twilio/voice?site=nimes through
    # a TLS-terminating proxy; we see plain http on another host: REGULATOR_PUBLIC_URL
    # rebuilds the URL Twilio signed, query string included.
    params = {"CallSid": "CA13", "From": CALLER, "To": NIMES}
    path = "/hooks/twilio/voice?site=nimes&x=1"
    good = twilio.compute_signature(TWILIO_TOKEN, PUBLIC + path, params)
    resp = await client.post(path, data=params, headers={"X-Twilio-Signature": good})
    assert resp.status == 200
    # Explicit :443 in the signed URL is accepted too (Twilio's own validator does).
    with_port = twilio.compute_signature(
        TWILIO_TOKEN, "https://regulator.example:443" + path, params | {"CallSid": "CA14"}
    )
    resp = await client.post(
        path, data=params | {"CallSid": "CA14"}, headers={"X-Twilio-Signature": with_port}
    )
    assert resp.status == 200
    # Signing without the query string is not the same request.
    bad = twilio.compute_signature(TWILIO_TOKEN, PUBLIC + "/hooks/twilio/voice", params)
    resp = await client.post(path, data=params, headers={"X-Twilio-Signature": bad})
    assert resp.status == 403


async def test_twilio_retry_gets_the_same_answer_and_counts_once(
    client: AppClient, clock: FixedClock
) -> None:
    params = {"CallSid": "CA15", "From": CALLER, "To": NIMES}
    _, first = await post_twilio(client, "/hooks/twilio/voice", params)
    clock.set(paris("2026-11-25T02:00"))  # closed now, but a retry must not change its answer
    _, again = await post_twilio(client, "/hooks/twilio/voice", params)
    assert first == again
    assert (await report(client))["calls_received"] == 1


# ------------------------------------------------------------------------ Vonage


async def test_vonage_answer_menu_input_and_connect(client: AppClient) -> None:
    status, ncco = await post_vonage(
        client,
        "/hooks/vonage/answer",
        {"uuid": "leg-1", "conversation_uuid": "CON-1", "from": "33611223344", "to": "33466123456"},
    )
    assert status == 200
    assert [a["action"] for a in ncco][-1] == "input"
    status, ncco = await post_vonage(
        client,
        "/hooks/vonage/input",
        {
            "uuid": "leg-1",
            "conversation_uuid": "CON-1",
            "from": "33611223344",
            "to": "33466123456",
            "dtmf": {"digits": "2", "timed_out": False},
        },
    )
    assert status == 200
    connect = ncco[-1]
    assert connect["action"] == "connect"
    assert connect["endpoint"][0] == {"type": "phone", "number": "33466333333"}
    assert connect["eventType"] == "synchronous"


async def test_vonage_unanswered_regulation_overflows_via_synchronous_event(
    client: AppClient,
) -> None:
    await post_vonage(
        client,
        "/hooks/vonage/answer",
        {"uuid": "leg-2", "conversation_uuid": "CON-2", "from": "33611223344", "to": "33466123456"},
    )
    _, ncco = await post_vonage(
        client,
        "/hooks/vonage/input",
        {
            "uuid": "leg-2",
            "conversation_uuid": "CON-2",
            "from": "33611223344",
            "to": "33466123456",
            "dtmf": {"digits": "1", "timed_out": False},
        },
    )
    event_url: str = ncco[-1]["eventUrl"][0]
    path = event_url.removeprefix(PUBLIC)
    # The failed leg reports the dialled number as "to": the MMG comes from our URL.
    status, ncco = await post_vonage(
        client,
        path,
        {
            "uuid": "leg-3",
            "conversation_uuid": "CON-2",
            "from": "33466123456",
            "to": "33466000015",
            "status": "timeout",
        },
    )
    assert status == 200
    assert ncco[-1]["endpoint"][0]["number"] == FRONT_DESK_NIMES.lstrip("+")


async def test_vonage_completed_event_updates_the_record(client: AppClient) -> None:
    await post_vonage(
        client,
        "/hooks/vonage/answer",
        {"uuid": "leg-4", "conversation_uuid": "CON-4", "from": "33611223344", "to": "33466123456"},
    )
    status, _ = await post_vonage(
        client,
        "/hooks/vonage/event",
        {
            "uuid": "leg-4",
            "conversation_uuid": "CON-4",
            "from": "33611223344",
            "to": "33466123456",
            "status": "completed",
            "duration": "61",
        },
    )
    assert status in (200, 204)
    await client.app[keys.WRITER].flush()
    record = await client.app[keys.STORE].get_call("CON-4")
    assert record is not None and record.status == "completed" and record.duration_s == 61


async def test_vonage_bad_jwt_is_rejected(client: AppClient) -> None:
    body = orjson.dumps({"uuid": "x", "conversation_uuid": "y", "from": "1", "to": "33466123456"})
    resp = await client.post(
        "/hooks/vonage/answer",
        data=body,
        headers={"Authorization": "Bearer not.a.jwt", "Content-Type": "application/json"},
    )
    assert resp.status == 403


# ------------------------------------------------------------------------ Kamailio


async def _kamailio_routes(client: AppClient, call_id: str) -> list[str]:
    resp = await client.post(
        "/hooks/kamailio/route",
        json={
            "call_id": call_id,
            "from": PROFESSIONAL_NIMES,
            "to": "0466123456",
            "source_ip": "127.0.0.1",
        },
        headers={"X-Regulator-Secret": KAMAILIO_SECRET},
    )
    assert resp.status == 200
    doc: dict[str, Any] = await resp.json(content_type=None)
    assert doc["version"] == "1.0" and doc["routing"] == "serial"
    return [r["uri"] for r in doc["routes"]]


async def test_kamailio_routes_with_rtjson_and_regulation_failover(
    aiohttp_client: ClientFactory, tmp_path: Path, clock: FixedClock
) -> None:
    settings = make_settings(tmp_path, sip_gateway="trunk.operator.example")
    client = await aiohttp_client(create_app(settings, SqliteStore(tmp_path / "k.db"), clock))
    uris = await _kamailio_routes(client, "k-1")
    assert uris[0] == f"sip:{FRONT_DESK_NIMES}@trunk.operator.example"
    # Failover: the regulation line, its SIP URI first, then its number via the gateway.
    assert uris[1:] == [
        "sip:sas30@regulation.example",
        f"sip:{REGULATION_NIMES}@trunk.operator.example",
    ]


async def test_kamailio_without_a_gateway_gives_no_number_routes(client: AppClient) -> None:
    # The Nîmes front desk is known only by number: no route Kamailio cannot relay.
    assert await _kamailio_routes(client, "k-3") == ["sip:sas30@regulation.example"]


async def test_kamailio_wrong_secret_is_rejected(client: AppClient) -> None:
    resp = await client.post(
        "/hooks/kamailio/route",
        json={"call_id": "k-2", "from": CALLER, "to": NIMES},
        headers={"X-Regulator-Secret": "guess"},
    )
    assert resp.status == 403


# ------------------------------------------------------------------------ generic


async def test_generic_call_returns_plain_json_decision(client: AppClient) -> None:
    status, data = await post_generic(
        client,
        "/hooks/generic/call",
        {"call_id": "g-1", "from": CALLER, "to": NIMES, "digits": "2"},
    )
    assert status == 200
    assert data["route"] == "pharmacy"
    assert data["destination"]["number"] == "+33466333333"


async def test_generic_replayed_signature_outside_window_is_rejected(client: AppClient) -> None:
    status, _ = await post_generic(
        client,
        "/hooks/generic/call",
        {"call_id": "g-2", "from": CALLER, "to": NIMES},
        t=int(time.time()) - 301,
    )
    assert status == 403
    assert (await report(client))["calls_received"] == 0


async def test_generic_garbage_body_fails_safe_with_a_valid_answer(client: AppClient) -> None:
    import hmac

    body = b"\xff\xfe not json"
    t = int(time.time())
    from regulator.platforms import generic

    header = generic.sign(
        "generic-shared-secret", body, t, method="POST", path="/hooks/generic/call"
    )
    resp = await client.post(
        "/hooks/generic/call", data=body, headers={"X-Regulator-Signature": header}
    )
    assert resp.status == 200
    data = await resp.json()
    assert data["failsafe"] is True and data["route"] == "regulation"
    assert hmac.compare_digest("a", "a")


# ------------------------------------------------------------------ volume and fail-safe


async def test_1000_calls_with_20_percent_retries_count_1000(client: AppClient) -> None:
    for i in range(1000):
        params = {"CallSid": f"CAvol{i:04d}", "From": f"+3361100{i:04d}", "To": NIMES}
        status, _ = await post_twilio(client, "/hooks/twilio/voice", params)
        assert status == 200
        if i % 5 == 0:  # 20 % retried by the platform
            status, _ = await post_twilio(client, "/hooks/twilio/voice", params)
            assert status == 200
    data = await report(client)
    assert data["calls_received"] == 1000
    metrics = await (await client.get("/metrics")).text()
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("regulator_calls_total{")
    )
    assert total == 1000


async def test_store_down_every_webhook_still_routes_to_centre_15(
    aiohttp_client: ClientFactory, tmp_path: Path, clock: FixedClock
) -> None:
    # A real Redis store pointed at a socket where no server listens.
    dead = RedisStore(f"unix://{tmp_path}/no-redis.sock", prefix="dead")
    settings = make_settings(tmp_path)
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings, dead, clock))
    for i in range(20):
        status, body = await post_twilio(
            client, "/hooks/twilio/voice", {"CallSid": f"CAdown{i}", "From": CALLER, "To": NIMES}
        )
        assert status == 200
        assert dialled(body) == REGULATION_NIMES
    # Still ready: answering fail-safe beats dropping out of the load balancer.
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["store"].startswith("erreur")
    metrics = await (await client.get("/metrics")).text()
    assert 'regulator_failsafe_total{reason="storage_error"} 20.0' in metrics
    # Nothing lost: the records wait in the local spool.
    writer = client.app[keys.WRITER]
    await writer.flush()
    assert writer.spooled == 20


async def test_platform_without_secret_answers_404_unless_insecure_dev(
    aiohttp_client: ClientFactory, tmp_path: Path, clock: FixedClock
) -> None:
    settings = make_settings(tmp_path, twilio_auth_token=None)
    client = await aiohttp_client(create_app(settings, SqliteStore(tmp_path / "s.db"), clock))
    resp = await client.post("/hooks/twilio/voice", data={"CallSid": "x", "To": NIMES})
    assert resp.status == 404
    dev = Settings(
        protocols_dir=settings.protocols_dir,
        data_dir=tmp_path / "dev",
        insecure_dev=True,
        watch_protocols=False,
    )
    client = await aiohttp_client(create_app(dev, SqliteStore(tmp_path / "d.db"), clock))
    resp = await client.post(
        "/hooks/twilio/voice", data={"CallSid": "x", "From": CALLER, "To": NIMES}
    )
    assert resp.status == 200


async def test_health_ready_and_metrics_endpoints(client: AppClient) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    text = await (await client.get("/metrics")).text()
    assert 'regulator_mmg_open{mmg="nimes"} 1.0' in text
    assert 'regulator_mmg_open{mmg="metz"} 1.0' in text
