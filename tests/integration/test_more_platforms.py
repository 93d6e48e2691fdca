"""Asterisk, FreeSWITCH, jambonz and Telnyx through the real app: their routes are in
the hook table, their secrets guard them, and a failed dial on each comes back as the
next destination (the failed-dial contract), ending at centre 15."""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from regulator.platforms import jambonz
from tests.support.app import (
    ASTERISK_SECRET,
    FREESWITCH_SECRET,
    JAMBONZ_SECRET,
    NIMES,
    PROFESSIONAL_NIMES,
    REGULATION_NIMES,
    AppClient,
    callback,
)

#: The Telnyx test key pair whose public half is TELNYX_PUBLIC_KEY in tests/support/app.py.
TELNYX_PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


async def asterisk(client: AppClient, path: str, fields: dict[str, str]) -> dict[str, str]:
    resp = await client.post(
        path,
        data=urlencode(fields),
        headers={
            "X-Regulator-Secret": ASTERISK_SECRET,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert resp.status == 200, await resp.text()
    return dict(parse_qsl((await resp.text()).strip(), keep_blank_values=True))


async def test_asterisk_professional_then_failed_desk_dial_goes_to_centre_15(
    client: AppClient,
) -> None:
    call = {"call_id": "ast-1", "from": PROFESSIONAL_NIMES, "to": NIMES}
    first = await asterisk(client, "/hooks/asterisk/call", call)
    assert (first["action"], first["route"]) == ("dial", "direct_access")
    after = await asterisk(
        client,
        "/hooks/asterisk/dial-status",
        {**call, "dialstatus": "NOANSWER", "target": "direct_access"},
    )
    assert (after["action"], after["route"], after["number"]) == (
        "dial",
        "regulation",
        REGULATION_NIMES,
    )


async def test_asterisk_without_the_secret_is_refused(client: AppClient) -> None:
    resp = await client.post(
        "/hooks/asterisk/call",
        data=urlencode({"call_id": "ast-2", "from": PROFESSIONAL_NIMES, "to": NIMES}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 403


async def test_jambonz_signed_call_gets_verbs_and_a_failed_leg_reaches_regulation(
    client: AppClient,
) -> None:
    async def post(path: str, payload: Mapping[str, object]) -> list[dict[str, object]]:
        body = orjson.dumps(payload)
        header = jambonz.sign(JAMBONZ_SECRET, body, int(time.time()))
        resp = await client.post(
            path,
            data=body,
            headers={"Jambonz-Signature": header, "Content-Type": "application/json"},
        )
        assert resp.status == 200, await resp.text()
        verbs = await resp.json()
        assert isinstance(verbs, list)
        return verbs

    call = {"call_sid": "jz-1", "from": PROFESSIONAL_NIMES, "to": NIMES}
    verbs = await post("/hooks/jambonz/call", call)
    dial = verbs[-1]
    assert dial["verb"] == "dial"
    hook = str(dial["actionHook"])
    assert "target=direct_access" in hook
    path = "/hooks/jambonz/dial-status?" + hook.split("?", 1)[1]
    verbs = await post(path, {**call, "dial_call_status": "no-answer"})
    assert verbs[-1]["verb"] == "dial"
    targets = verbs[-1]["target"]
    assert isinstance(targets, list) and len(targets) == 1
    assert (targets[0]["type"], targets[0]["number"]) == ("phone", REGULATION_NIMES)


async def test_freeswitch_basic_auth_call_gets_an_httapi_document(client: AppClient) -> None:
    auth = base64.b64encode(f"regulator:{FREESWITCH_SECRET}".encode()).decode()
    resp = await client.post(
        "/hooks/freeswitch/voice",
        data=urlencode(
            {
                "session_id": "fs-1",
                "Caller-Caller-ID-Number": PROFESSIONAL_NIMES,
                "Caller-Destination-Number": NIMES,
            }
        ),
        headers={
            "Authorization": f"Basic {auth}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert resp.status == 200
    text = await resp.text()
    assert 'type="xml/freeswitch-httapi"' in text
    # httapi's <dial> bridges the caller; <continue> posts the result back to us.
    assert "sofia/gateway/regulator/+33466123400</dial>" in text
    assert "/hooks/freeswitch/dial-status?" in text and "target=direct_access" in text


async def test_telnyx_signed_webhook_gets_texml(client: AppClient) -> None:
    body = urlencode({"CallSid": "tx-1", "From": PROFESSIONAL_NIMES, "To": NIMES}).encode()
    stamp = str(int(time.time()))
    signature = base64.b64encode(TELNYX_PRIVATE.sign(f"{stamp}|".encode() + body)).decode()
    resp = await client.post(
        "/hooks/telnyx/voice",
        data=body,
        headers={
            "Telnyx-Signature-Ed25519": signature,
            "Telnyx-Timestamp": stamp,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert resp.status == 200, await resp.text()
    text = await resp.text()
    assert "<Dial" in text and "+33466123400" in text


def freeswitch_headers() -> dict[str, str]:
    auth = base64.b64encode(f"regulator:{FREESWITCH_SECRET}".encode()).decode()
    return {
        "Authorization": f"Basic {auth}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


async def test_freeswitch_answered_bridge_that_ends_is_not_taken_for_a_failed_dial(
    client: AppClient,
) -> None:
    """After an answered bridge the callee hung up first: httapi posts the dial-status
    with what FreeSWITCH's originate sets on the caller's channel when the peer
    answered (switch_ivr_originate.c: ``originate_disposition=call accepted``,
    ``DIALSTATUS=EARLY`` for an answered peer). The call is over: hang up, never ring
    the next line."""
    call = {
        "session_id": "fs-done",
        "Caller-Caller-ID-Number": PROFESSIONAL_NIMES,
        "Caller-Destination-Number": NIMES,
    }
    resp = await client.post(
        "/hooks/freeswitch/voice", data=urlencode(call), headers=freeswitch_headers()
    )
    assert resp.status == 200
    after = {
        **call,
        "variable_originate_disposition": "call accepted",
        "variable_DIALSTATUS": "EARLY",
        "variable_bridge_hangup_cause": "NORMAL_CLEARING",
    }
    resp = await client.post(
        callback("/hooks/freeswitch/dial-status?mmg=nimes&call_id=fs-done&target=direct_access"),
        data=urlencode(after),
        headers=freeswitch_headers(),
    )
    assert resp.status == 200
    text = await resp.text()
    assert "<dial>" not in text, text
    assert "<hangup/>" in text, text
