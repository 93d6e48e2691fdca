"""The caller id each platform presents to the line it dials, through the real webhooks.

Vonage accepts only one of the application's own numbers as a connect's ``from``: the
MMG's number (the number the caller dialled), on every leg, the overflow included.
Twilio accepts the caller's own number on a forwarded call, or the number called;
anything else (withheld, not a phone number) gets the MMG's number.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import orjson

from tests.support.app import (
    FRONT_DESK_NIMES,
    NIMES,
    PUBLIC,
    AppClient,
    post_twilio,
    post_vonage,
)
from tests.support.vonage_ncco import check_ncco

#: The second number of the Nîmes MMG (``04 66 12 34 57`` in protocols/nimes.yaml).
NIMES_2 = "+33466123457"
CALLER = "+33611223344"


async def vonage(client: AppClient, path: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    status, ncco = await post_vonage(client, path, payload)
    assert status == 200
    # Every NCCO the service answers must be one Vonage's own SDK accepts.
    check_ncco(orjson.dumps(ncco))
    assert isinstance(ncco, list)
    return ncco


def answer(conversation: str, to: str, caller: str | None) -> dict[str, Any]:
    payload = {"uuid": f"leg-{conversation}", "conversation_uuid": conversation, "to": to}
    if caller is not None:
        payload["from"] = caller
    return payload


async def test_vonage_regulation_leg_presents_the_number_the_caller_dialled(
    client: AppClient,
) -> None:
    await vonage(client, "/hooks/vonage/answer", answer("CON-A", NIMES_2[1:], CALLER[1:]))
    ncco = await vonage(
        client,
        "/hooks/vonage/input",
        {**answer("CON-A", NIMES_2[1:], CALLER[1:]), "dtmf": {"digits": "1", "timed_out": False}},
    )
    connect = ncco[-1]
    assert connect["action"] == "connect"
    assert connect["from"] == NIMES_2[1:]


async def test_vonage_withheld_caller_still_gets_a_connect_with_the_mmg_number(
    client: AppClient,
) -> None:
    await vonage(client, "/hooks/vonage/answer", answer("CON-B", NIMES[1:], None))
    ncco = await vonage(
        client,
        "/hooks/vonage/input",
        {**answer("CON-B", NIMES[1:], None), "dtmf": {"digits": "1", "timed_out": False}},
    )
    assert ncco[-1]["from"] == NIMES[1:]


async def test_vonage_overflow_leg_presents_the_mmg_number_not_the_dialled_line(
    client: AppClient,
) -> None:
    await vonage(client, "/hooks/vonage/answer", answer("CON-C", NIMES[1:], CALLER[1:]))
    ncco = await vonage(
        client,
        "/hooks/vonage/input",
        {**answer("CON-C", NIMES[1:], CALLER[1:]), "dtmf": {"digits": "1", "timed_out": False}},
    )
    path = ncco[-1]["eventUrl"][0].removeprefix(PUBLIC)
    # The failed leg: ``from`` is what we presented, ``to`` the regulation line.
    ncco = await vonage(
        client,
        path,
        {
            "uuid": "leg-C2",
            "conversation_uuid": "CON-C",
            "from": NIMES[1:],
            "to": "33466000015",
            "status": "timeout",
        },
    )
    assert ncco[-1]["endpoint"][0]["number"] == FRONT_DESK_NIMES[1:]
    assert ncco[-1]["from"] == NIMES[1:]


async def test_vonage_unknown_number_failsafe_presents_the_number_called(
    client: AppClient,
) -> None:
    ncco = await vonage(client, "/hooks/vonage/answer", answer("CON-D", "33499999999", CALLER[1:]))
    assert ncco[-1]["endpoint"][0]["number"] == "33466000099"  # the configured fail-safe
    assert ncco[-1]["from"] == "33499999999"


async def test_vonage_unreadable_webhook_failsafe_uses_a_number_of_the_application(
    client: AppClient,
) -> None:
    ncco = await vonage(client, "/hooks/vonage/answer", {"uuid": "leg-E"})  # no "to"
    assert ncco[-1]["endpoint"][0]["number"] == "33466000099"
    assert ncco[-1]["randomFromNumber"] is True
    assert "from" not in ncco[-1]


def dial(text: str) -> ET.Element:
    root = ET.fromstring(text.encode())
    element = root.find("Dial")
    assert element is not None, text
    return element


async def twilio_regulation(client: AppClient, sid: str, caller: str, to: str = NIMES) -> str:
    params = {"CallSid": sid, "From": caller, "To": to}
    await post_twilio(client, "/hooks/twilio/voice", params)
    status, text = await post_twilio(client, "/hooks/twilio/gather", {**params, "Digits": "1"})
    assert status == 200
    return text


async def test_twilio_forwards_the_callers_own_number(client: AppClient) -> None:
    assert dial(await twilio_regulation(client, "CA-A", CALLER)).get("callerId") == CALLER


async def test_twilio_withheld_or_invalid_caller_gets_the_mmg_number(client: AppClient) -> None:
    for sid, caller in (("CA-B", "anonymous"), ("CA-C", "+266696687"), ("CA-D", "client:desk")):
        text = await twilio_regulation(client, sid, caller, NIMES_2)
        assert dial(text).get("callerId") == NIMES_2, caller


async def test_twilio_overflow_keeps_the_callers_number(client: AppClient) -> None:
    text = await twilio_regulation(client, "CA-E", CALLER)
    action = dial(text).get("action")
    assert action
    status, text = await post_twilio(
        client,
        action.removeprefix(PUBLIC),
        {"CallSid": "CA-E", "From": CALLER, "To": NIMES, "DialCallStatus": "no-answer"},
    )
    assert status == 200
    overflow = dial(text)
    assert overflow.findtext("Number") == FRONT_DESK_NIMES
    assert overflow.get("callerId") == CALLER


async def test_vonage_overflow_keeps_the_patients_number_in_the_call_seen_by_centre_15(
    client: AppClient,
) -> None:
    # The failed leg's ``from`` is the MMG's number (what we presented): the routed
    # call that the consoles and the outbox learn of must still name the patient.
    from regulator.core.models import CallRecord
    from regulator.events import CallRouted
    from regulator.web import keys

    seen: list[CallRecord] = []

    def listen(event: CallRouted) -> None:
        seen.append(event.record)

    client.app[keys.EVENTS].subscribe(CallRouted, listen)
    await vonage(client, "/hooks/vonage/answer", answer("CON-P", NIMES[1:], CALLER[1:]))
    ncco = await vonage(
        client,
        "/hooks/vonage/input",
        {**answer("CON-P", NIMES[1:], CALLER[1:]), "dtmf": {"digits": "1", "timed_out": False}},
    )
    await client.app[keys.WRITER].flush()  # the record is stored, as on another replica
    path = ncco[-1]["eventUrl"][0].removeprefix(PUBLIC)
    failed_leg = {
        "uuid": "leg-P2",
        "conversation_uuid": "CON-P",
        "from": NIMES[1:],
        "to": "33466000015",
        "status": "timeout",
    }
    await vonage(client, path, failed_leg)
    overflow = seen[-1]
    assert overflow.route.value == "direct_access"
    assert overflow.caller == CALLER, f"overflow record names {overflow.caller}, not the patient"
