"""Twilio's flow end to end, signed by Twilio's own ``RequestValidator`` (dev
dependency ``twilio``): a call to Metz, the callback URLs read from the TwiML the
service returned (``<Dial action>``, ``<Number statusCallback>``, ``<Number url>``),
the whisper the regulation line hears, the leg's progress, the dial's end and the
whole call's status — then the stored leg and the call record. The whisper on Vonage
(``onAnswer``) and Telnyx goes through the real app too."""

from __future__ import annotations

import math
import shutil
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from regulator.core.legs import LegOutcome
from regulator.core.models import Route
from regulator.ports import FixedClock
from regulator.storage.sqlite import SqliteStore
from regulator.web import keys
from regulator.web.app import create_app
from tests.integration.test_dial_legs import post_telnyx
from tests.support.app import (
    FRONT_DESK_NIMES,
    METZ,
    NIMES,
    PROFESSIONAL_NIMES,
    PROTOCOLS,
    PUBLIC,
    TWILIO_TOKEN,
    AppClient,
    ClientFactory,
    callback,
    make_settings,
    paris,
    vonage_headers,
)

CALLER = "+33611223344"
REGULATION_METZ = "+33387000015"
VALIDATOR = RequestValidator(TWILIO_TOKEN)


async def twilio_post(client: AppClient, url: str, params: dict[str, str]) -> tuple[int, str]:
    """POST ``params`` to one of our absolute URLs, signed by Twilio's library."""
    assert url.startswith(PUBLIC), url
    signature = VALIDATOR.compute_signature(url, params)
    assert VALIDATOR.validate(url, params, signature)
    resp = await client.post(
        url.removeprefix(PUBLIC),
        data=urlencode(params),
        headers={
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    return resp.status, await resp.text()


def rfc2822(at: datetime) -> str:
    return at.strftime("%a, %d %b %Y %H:%M:%S +0000")


async def test_twilio_call_legs_and_whisper_end_to_end(client: AppClient) -> None:
    parent = "CAe2e0001"
    child = "CAe2e0001leg"
    call = {
        "AccountSid": "AC0000",
        "CallSid": parent,
        "From": CALLER,
        "To": METZ,
        "CallStatus": "ringing",
        "Direction": "inbound",
    }
    code, twiml = await twilio_post(client, f"{PUBLIC}/hooks/twilio/voice", call)
    assert code == 200
    dial = ET.fromstring(twiml.encode()).find("Dial")
    assert dial is not None
    (number,) = list(dial)
    assert (number.tag, number.text) == ("Number", REGULATION_METZ)
    action, status_callback, whisper = (
        dial.get("action") or "",
        number.get("statusCallback") or "",
        number.get("url") or "",
    )
    assert number.get("statusCallbackMethod") == "POST" and number.get("method") == "POST"
    assert "target=regulation" in action and "target=regulation" in status_callback
    assert "target=" not in whisper and f"call_id={parent}" in whisper

    offered = datetime.fromtimestamp(math.floor(time.time()) - 100, UTC)

    def progress(status: str, after_s: int, **extra: str) -> dict[str, str]:
        return {
            "AccountSid": "AC0000",
            "CallSid": child,
            "ParentCallSid": parent,
            "From": CALLER,
            "To": REGULATION_METZ,
            "Direction": "outbound-dial",
            "CallStatus": status,
            "CallbackSource": "call-progress-events",
            "Timestamp": rfc2822(offered + timedelta(seconds=after_s)),
            **extra,
        }

    for status, after_s in (("initiated", 0), ("ringing", 2), ("in-progress", 18)):
        code, body = await twilio_post(client, status_callback, progress(status, after_s))
        assert (code, body) == (204, "")

    # The regulation line picked up: Twilio fetches <Number url> on the child call.
    code, heard = await twilio_post(
        client,
        whisper,
        {
            "CallSid": child,
            "ParentCallSid": parent,
            "From": CALLER,
            "To": REGULATION_METZ,
            "CallStatus": "in-progress",
        },
    )
    assert code == 200
    root = ET.fromstring(heard.encode())
    assert [(el.tag, el.text) for el in root] == [
        ("Say", "Appel transmis par la maison médicale de garde de Metz.")
    ]  # Metz does not allow the caller's number to be spoken (whisper_caller: false)

    code, _ = await twilio_post(
        client, status_callback, progress("completed", 100, CallDuration="82")
    )
    assert code == 204
    dial_done = {
        **call,
        "CallStatus": "in-progress",
        "DialCallStatus": "completed",
        "DialCallSid": child,
        "DialCallDuration": "82",
    }
    code, body = await twilio_post(client, action, dial_done)
    assert code == 200 and "<Hangup/>" in body
    ended = {**call, "CallStatus": "completed", "CallDuration": "105"}
    code, _ = await twilio_post(client, f"{PUBLIC}/hooks/twilio/status", ended)
    assert code == 204

    await client.app[keys.WRITER].flush()
    store = client.app[keys.STORE]
    now = datetime.now(UTC)
    (leg,) = [
        leg
        for leg in await store.legs("metz", now - timedelta(hours=1), now)
        if leg.call_id == parent
    ]
    assert leg.target is Route.REGULATION and leg.platform == "twilio"
    assert leg.offered_at == offered
    assert leg.answered_at == offered + timedelta(seconds=18)
    assert leg.wait_s == 18.0 and leg.outcome is LegOutcome.ANSWERED
    assert leg.ended_at is not None and leg.ended_at >= offered + timedelta(seconds=100)
    record = await store.get_call(parent)
    assert record is not None and record.status == "completed" and record.duration_s == 105


async def test_a_leg_callback_signed_for_another_url_is_refused(client: AppClient) -> None:
    call = {"CallSid": "CAe2e0002", "From": CALLER, "To": METZ}
    _, twiml = await twilio_post(client, f"{PUBLIC}/hooks/twilio/voice", call)
    number = ET.fromstring(twiml.encode()).find("Dial/Number")
    assert number is not None
    callback = number.get("statusCallback") or ""
    params = {"CallSid": "CAleg", "CallStatus": "ringing"}
    # Signed for target=direct_access, sent to target=regulation: the query is signed.
    forged = VALIDATOR.compute_signature(callback.replace("regulation", "direct_access"), params)
    resp = await client.post(
        callback.removeprefix(PUBLIC),
        data=urlencode(params),
        headers={"X-Twilio-Signature": forged, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 403


@pytest.fixture
def speaking_protocols(tmp_path: Path) -> Path:
    """The example protocols, Metz allowing the whisper to speak the caller's number."""
    target = tmp_path / "protocols"
    shutil.copytree(PROTOCOLS, target)
    metz = target / "metz.yaml"
    text = metz.read_text(encoding="utf-8")
    metz.write_text(text.replace("messages:\n", "messages:\n  whisper_caller: true\n", 1))
    return target


async def test_the_whisper_speaks_the_callers_number_where_the_protocol_allows(
    aiohttp_client: ClientFactory, tmp_path: Path, speaking_protocols: Path
) -> None:
    settings = make_settings(tmp_path, protocols_dir=speaking_protocols)
    app = create_app(
        settings, SqliteStore(tmp_path / "s.sqlite3"), FixedClock(paris("2026-11-24T21:00"))
    )
    client = await aiohttp_client(app)
    call = {"CallSid": "CAspeak", "From": CALLER, "To": METZ}
    _, twiml = await twilio_post(client, f"{PUBLIC}/hooks/twilio/voice", call)
    number = ET.fromstring(twiml.encode()).find("Dial/Number")
    assert number is not None
    _, heard = await twilio_post(client, number.get("url") or "", {"CallSid": "CAspeak-leg"})
    assert [el.text for el in ET.fromstring(heard.encode())] == [
        "Appel transmis par la maison médicale de garde de Metz.",
        "Numéro de l'appelant : 06 11 22 33 44.",
    ]
    # Another replica, that never saw the call: the number comes from the store.
    await client.app[keys.WRITER].flush()
    client.app[keys.ROUTER]._recent.clear()
    _, heard = await twilio_post(client, number.get("url") or "", {"CallSid": "CAspeak-leg"})
    assert "06 11 22 33 44" in heard


async def test_the_whisper_of_an_unknown_mmg_still_connects_the_line(client: AppClient) -> None:
    url = f"{PUBLIC}/hooks/twilio/whisper?mmg=gone&call_id=CAx"
    code, heard = await twilio_post(client, url, {"CallSid": "CAx-leg"})
    root = ET.fromstring(heard.encode())
    assert code == 200 and root.find("Dial") is None
    assert [el.text for el in root] == ["Appel transmis par une maison médicale de garde."]


async def test_vonage_onanswer_whisper_through_the_app(client: AppClient) -> None:
    payload = {
        "from": CALLER.lstrip("+"),
        "to": METZ.lstrip("+"),
        "uuid": "u1",
        "conversation_uuid": "CON-whisper",
    }
    body = orjson.dumps(payload)
    resp = await client.post("/hooks/vonage/answer", data=body, headers=vonage_headers(body))
    ncco: list[dict[str, Any]] = orjson.loads(await resp.text())
    connect = next(a for a in ncco if a["action"] == "connect")
    on_answer = connect["endpoint"][0]["onAnswer"]["url"]
    assert on_answer == PUBLIC + callback("/hooks/vonage/whisper?mmg=metz&call_id=CON-whisper")
    resp = await client.get(on_answer.removeprefix(PUBLIC), headers=vonage_headers(b""))
    assert resp.status == 200
    assert orjson.loads(await resp.text()) == [
        {
            "action": "talk",
            "text": "Appel transmis par la maison médicale de garde de Metz.",
            "language": "fr-FR",
        }
    ]


async def test_telnyx_whisper_and_leg_callback_urls(client: AppClient) -> None:
    code, twiml = await post_telnyx(
        client, "/hooks/telnyx/voice", {"CallSid": "v3:w", "From": CALLER, "To": METZ}
    )
    number = ET.fromstring(twiml.encode()).find("Dial/Number")
    assert code == 200 and number is not None
    assert (number.get("statusCallback") or "").startswith(f"{PUBLIC}/hooks/telnyx/leg?")
    code, heard = await post_telnyx(
        client, (number.get("url") or "").removeprefix(PUBLIC), {"CallSid": "v3:w-leg"}
    )
    assert code == 200 and "de garde de Metz" in heard


async def test_only_the_regulation_line_hears_a_whisper(client: AppClient) -> None:
    # A professional calling Nîmes goes to the front desk: its leg is followed, unwhispered.
    call = {"CallSid": "CAdesk", "From": PROFESSIONAL_NIMES, "To": NIMES}
    _, twiml = await twilio_post(client, f"{PUBLIC}/hooks/twilio/voice", call)
    number = ET.fromstring(twiml.encode()).find("Dial/Number")
    assert number is not None and number.text == FRONT_DESK_NIMES
    assert "target=direct_access" in (number.get("statusCallback") or "")
    assert number.get("url") is None
