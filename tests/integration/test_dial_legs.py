"""Dial legs through the real app on a real SQLite store, platform by platform.

Each platform gets the same recorded sequences of callbacks about the regulation leg
of a call to Metz (no menu: every call goes to the SAMU 57) — answered at 25 s, at
75 s, the caller hanging up at 40 s while it rang and at 8 s, busy, no answer,
callbacks out of order and callbacks sent twice — as the platform words them, signed
as it signs them, to the callback URLs the service's own answer gave. Then the stored
legs (``Store.legs``) and the ``regulator_legs_*`` / ``regulator_answer_delay_seconds``
series of ``/metrics`` must be the exact figures each sequence means.

Timestamps are the platform's own (RFC 2822 for Twilio, ISO 8601 for Telnyx, Vonage
and the PBX), anchored so that the last event of a sequence is "now": a ``<Dial
action>`` (dated on receipt) then comes just after it, as it does on Twilio.
"""

from __future__ import annotations

import base64
import itertools
import math
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from regulator.core.answer_quality import quality
from regulator.core.legs import Leg, LegOutcome
from regulator.web import keys
from tests.support.app import (
    METZ,
    PUBLIC,
    AppClient,
    post_generic,
    post_twilio,
    post_vonage,
)

CALLER = "+33611223344"
REGULATION_METZ = "+33387000015"
SHORT_ABANDON_S = 15.0
_ids = itertools.count()

#: The Telnyx test key pair whose public half is TELNYX_PUBLIC_KEY in tests/support/app.py.
TELNYX_PRIVATE = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


@dataclass(frozen=True)
class Step:
    """One callback about the leg: ``at_s`` seconds after the leg was offered."""

    at_s: int
    status: str  # offered, ringing, answered, completed, abandoned, busy, no_answer
    talk_s: int | None = None  # with completed: the talk time the platform reports


@dataclass(frozen=True)
class Sequence:
    steps: tuple[Step, ...]  # in the order they are sent
    wait_s: float | None  # offered → answered, None: not answered
    outcome: LegOutcome
    short_abandon: bool = False

    @property
    def last_s(self) -> int:
        return max(step.at_s for step in self.steps)


def _twice(steps: tuple[Step, ...]) -> tuple[Step, ...]:
    return tuple(s for step in steps for s in (step, step)) + steps  # retried, then replayed


ANSWERED_25 = (Step(0, "offered"), Step(1, "ringing"), Step(25, "answered"))
SEQUENCES: dict[str, Sequence] = {
    "answered_25s": Sequence((*ANSWERED_25, Step(85, "completed", 60)), 25.0, LegOutcome.ANSWERED),
    "answered_75s": Sequence(
        (Step(0, "offered"), Step(2, "ringing"), Step(75, "answered"), Step(135, "completed", 60)),
        75.0,
        LegOutcome.ANSWERED,
    ),
    "hangup_40s_ringing": Sequence(
        (Step(0, "offered"), Step(1, "ringing"), Step(40, "abandoned")), None, LegOutcome.ABANDONED
    ),
    "hangup_8s": Sequence(
        (Step(0, "offered"), Step(1, "ringing"), Step(8, "abandoned")),
        None,
        LegOutcome.ABANDONED,
        short_abandon=True,
    ),
    "busy": Sequence((Step(0, "offered"), Step(3, "busy")), None, LegOutcome.BUSY),
    "no_answer": Sequence(
        (Step(0, "offered"), Step(1, "ringing"), Step(30, "no_answer")), None, LegOutcome.NO_ANSWER
    ),
    # Answered before ringing; ringing reported last of all.
    "out_of_order": Sequence(
        (Step(0, "offered"), Step(20, "answered"), Step(80, "completed", 60), Step(1, "ringing")),
        20.0,
        LegOutcome.ANSWERED,
    ),
    # The answer itself never reported: dated by the completion minus the talk time.
    "completed_without_answered": Sequence(
        (Step(0, "offered"), Step(1, "ringing"), Step(90, "completed", 60)),
        30.0,
        LegOutcome.ANSWERED,
    ),
    "duplicates": Sequence(
        _twice((*ANSWERED_25, Step(85, "completed", 60))), 25.0, LegOutcome.ANSWERED
    ),
}

#: What the sequences above add up to on /metrics, for mmg="metz", target="regulation".
OFFERED = 8  # every leg but the 8 s hang-up (a short abandon: noise, QRAARM)
ABANDONED = 1  # the 40 s hang-up
DELAYS = sorted([25.0, 75.0, 20.0, 30.0, 25.0])


@dataclass
class Played:
    """One sequence as sent: the call and the instant its leg was offered."""

    call_id: str
    offered_at: datetime
    sequence: Sequence


def _anchor(seq: Sequence) -> datetime:
    """The offer instant that puts the sequence's last event at the current second."""
    return datetime.fromtimestamp(math.floor(time.time()) - seq.last_s, UTC)


# ----------------------------------------------------------------------- platforms

TWILIO_STATUS = {
    "offered": "initiated",
    "ringing": "ringing",
    "answered": "in-progress",
    "completed": "completed",
    "abandoned": "canceled",
    "busy": "busy",
    "no_answer": "no-answer",
}
TWILIO_DIAL_STATUS = {"answered": "completed", "busy": "busy", "no_answer": "no-answer"}


def _path(url: str) -> str:
    assert url.startswith(PUBLIC), url
    return url.removeprefix(PUBLIC)


def twiml_dial(body: str) -> tuple[str, str, ET.Element]:
    """The Dial's action and its noun's statusCallback (paths), and the noun."""
    dial = ET.fromstring(body.encode()).find("Dial")
    assert dial is not None, body
    (noun,) = list(dial)
    assert noun.text == REGULATION_METZ
    assert noun.get("statusCallbackEvent") == "initiated ringing answered completed"
    return _path(dial.get("action") or ""), _path(noun.get("statusCallback") or ""), noun


def leg_form(call_id: str, offered: datetime, step: Step, iso: bool) -> dict[str, str]:
    at = offered + timedelta(seconds=step.at_s)
    form = {
        "AccountSid": "AC0000",
        "CallSid": f"{call_id}-leg",
        "ParentCallSid": call_id,
        "From": CALLER,
        "To": REGULATION_METZ,
        "Direction": "outbound-dial",
        "CallStatus": TWILIO_STATUS[step.status],
        "CallbackSource": "call-progress-events",
        "Timestamp": (
            at.strftime("%Y-%m-%d %H:%M:%S.000000Z")
            if iso
            else at.strftime("%a, %d %b %Y %H:%M:%S +0000")
        ),
    }
    if step.talk_s is not None:
        form["CallDuration"] = str(step.talk_s)
    return form


def dial_result(seq: Sequence) -> dict[str, str] | None:
    """The <Dial action> once the leg is over (none when the caller hung up first)."""
    outcome = seq.outcome.value
    if outcome not in TWILIO_DIAL_STATUS:
        return None
    result = {"DialCallStatus": TWILIO_DIAL_STATUS[outcome]}
    talk = [s.talk_s for s in seq.steps if s.talk_s is not None]
    if talk:
        result["DialCallDuration"] = str(talk[0])
    return result


async def play_twilio(client: AppClient, seq: Sequence) -> Played:
    call_id = f"CAleg{next(_ids)}"
    params = {"CallSid": call_id, "From": CALLER, "To": METZ}
    code, body = await post_twilio(client, "/hooks/twilio/voice", params)
    assert code == 200
    action, callback, _ = twiml_dial(body)
    offered = _anchor(seq)
    for step in seq.steps:
        code, _ = await post_twilio(client, callback, leg_form(call_id, offered, step, iso=False))
        assert code == 204
    result = dial_result(seq)
    if result is not None:
        code, _ = await post_twilio(client, action, {**params, **result})
        assert code == 200
    return Played(call_id, offered, seq)


async def post_telnyx(client: AppClient, path: str, form: dict[str, str]) -> tuple[int, str]:
    body = urlencode(form).encode()
    stamp = str(int(time.time()))
    signature = base64.b64encode(TELNYX_PRIVATE.sign(f"{stamp}|".encode() + body)).decode()
    resp = await client.post(
        path,
        data=body,
        headers={
            "Telnyx-Signature-Ed25519": signature,
            "Telnyx-Timestamp": stamp,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    return resp.status, await resp.text()


async def play_telnyx(client: AppClient, seq: Sequence) -> Played:
    call_id = f"v3:leg{next(_ids)}"
    params = {"CallSid": call_id, "From": CALLER, "To": METZ}
    code, body = await post_telnyx(client, "/hooks/telnyx/voice", params)
    assert code == 200
    action, callback, _ = twiml_dial(body)
    assert callback.startswith("/hooks/telnyx/leg?")
    offered = _anchor(seq)
    for step in seq.steps:
        code, _ = await post_telnyx(client, callback, leg_form(call_id, offered, step, iso=True))
        assert code == 204
    result = dial_result(seq)
    if result is not None:
        code, _ = await post_telnyx(client, action, {**params, **result})
        assert code == 200
    return Played(call_id, offered, seq)


VONAGE_STATUS = {
    "offered": "started",
    "ringing": "ringing",
    "answered": "answered",
    "completed": "completed",
    "abandoned": "cancelled",
    "busy": "busy",
    "no_answer": "timeout",
}


async def play_vonage(client: AppClient, seq: Sequence) -> Played:
    conversation = f"CON-leg-{next(_ids)}"
    code, ncco = await post_vonage(
        client,
        "/hooks/vonage/answer",
        {
            "from": CALLER.lstrip("+"),
            "to": METZ.lstrip("+"),
            "uuid": "in-1",
            "conversation_uuid": conversation,
        },
    )
    assert code == 200
    connect = next(a for a in ncco if a["action"] == "connect")
    assert connect["endpoint"][0]["number"] == REGULATION_METZ.lstrip("+")
    event_url = _path(connect["eventUrl"][0])
    offered = _anchor(seq)
    for step in seq.steps:
        at = offered + timedelta(seconds=step.at_s)
        payload: dict[str, Any] = {
            "from": METZ.lstrip("+"),
            "to": REGULATION_METZ.lstrip("+"),
            "uuid": f"{conversation}-leg",
            "conversation_uuid": conversation,
            "status": VONAGE_STATUS[step.status],
            "direction": "outbound",
            "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }
        if step.talk_s is not None:
            payload["duration"] = str(step.talk_s)
        code, _ = await post_vonage(client, event_url, payload)
        assert code in (200, 204)
    return Played(conversation, offered, seq)


GENERIC_STATUS = {**{s: s for s in VONAGE_STATUS}, "no_answer": "no-answer"}


async def play_generic(client: AppClient, seq: Sequence) -> Played:
    call_id = f"pbx-leg-{next(_ids)}"
    code, answer = await post_generic(
        client, "/hooks/generic/call", {"call_id": call_id, "from": CALLER, "to": METZ}
    )
    assert code == 200 and answer["route"] == "regulation"
    offered = _anchor(seq)
    paris = timedelta(hours=1)  # the PBX writes its local time with its offset
    for step in seq.steps:
        at = offered + timedelta(seconds=step.at_s) + paris
        event: dict[str, Any] = {
            "call_id": call_id,
            "target": answer["route"],
            "status": GENERIC_STATUS[step.status],
            "at": at.strftime("%Y-%m-%dT%H:%M:%S+01:00"),
        }
        if step.talk_s is not None:
            event["duration_s"] = step.talk_s
        code, _ = await post_generic(client, "/hooks/generic/event", event)
        assert code == 200
    return Played(call_id, offered, seq)


PLAYERS: dict[str, Callable[[AppClient, Sequence], Awaitable[Played]]] = {
    "twilio": play_twilio,
    "telnyx": play_telnyx,
    "vonage": play_vonage,
    "generic": play_generic,
}


# ----------------------------------------------------------------------- figures


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one series of a Prometheus text exposition (0 when absent)."""
    wanted = {"mmg": "metz", "target": "regulation", **labels}
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)\{(.*)\} (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        if found == wanted:
            return float(match.group(3))
    return 0.0


def check_leg(leg: Leg, played: Played) -> None:
    seq = played.sequence
    assert leg.line == "regulation" and leg.mmg == "metz"
    assert leg.offered_at == played.offered_at
    assert leg.outcome is seq.outcome
    assert leg.wait_s == seq.wait_s
    if seq.wait_s is None:
        assert leg.answered_at is None
    else:
        assert leg.answered_at == played.offered_at + timedelta(seconds=seq.wait_s)
    assert leg.is_short_abandon(SHORT_ABANDON_S) is seq.short_abandon
    # The end: the platform's last report, or a <Dial action> received just after it.
    assert leg.ended_at is not None
    ended_s = (leg.ended_at - played.offered_at).total_seconds()
    assert seq.last_s <= ended_s < seq.last_s + 5, ended_s


@pytest.mark.parametrize("platform", PLAYERS)
async def test_recorded_callback_sequences_give_the_exact_figures(
    client: AppClient, platform: str
) -> None:
    played = {name: await PLAYERS[platform](client, seq) for name, seq in SEQUENCES.items()}
    await client.app[keys.WRITER].flush()
    now = datetime.now(UTC)
    legs = await client.app[keys.STORE].legs("metz", now - timedelta(hours=1), now)
    by_call = {leg.call_id: leg for leg in legs}
    assert set(by_call) == {p.call_id for p in played.values()}, "one leg per call, no more"
    for name, p in played.items():
        leg = by_call[p.call_id]
        assert leg.platform == platform, name
        check_leg(leg, p)

    # The report's block of these legs (core/answer_quality): waits 20, 25, 25, 30, 75 s.
    assert quality(legs, SHORT_ABANDON_S) == {
        "offered": OFFERED,
        "answered": 5,
        "answer_rate": 0.625,
        "answered_within_60s": 4,
        "qs60": 0.5,
        "qs60_of_answered": 0.8,
        "qs30": 0.5,
        "abandoned": ABANDONED,
        "short_abandons": 1,
        "wait_median_s": 25.0,
        "wait_p90_s": 75.0,
    }

    text = await (await client.get("/metrics")).text()
    assert metric(text, "regulator_legs_offered_total") == OFFERED
    assert metric(text, "regulator_legs_abandoned_total") == ABANDONED
    assert metric(text, "regulator_answer_delay_seconds_count") == len(DELAYS)
    assert metric(text, "regulator_answer_delay_seconds_sum") == sum(DELAYS)
    for le in ("5.0", "10.0", "15.0", "20.0", "30.0", "60.0", "90.0", "120.0", "300.0", "+Inf"):
        bound = math.inf if le == "+Inf" else float(le)
        expected = sum(1 for d in DELAYS if d <= bound)
        assert metric(text, "regulator_answer_delay_seconds_bucket", le=le) == expected, le


async def test_a_leg_callback_with_a_forged_signature_is_refused(client: AppClient) -> None:
    code, body = await post_twilio(
        client, "/hooks/twilio/voice", {"CallSid": "CAforged", "From": CALLER, "To": METZ}
    )
    _, callback, _ = twiml_dial(body)
    form = leg_form("CAforged", _anchor(SEQUENCES["busy"]), Step(0, "busy"), iso=False)
    code, _ = await post_twilio(client, callback, form, token="not-the-token")
    assert code == 403
    await client.app[keys.WRITER].flush()
    now = datetime.now(UTC)
    legs = await client.app[keys.STORE].legs("metz", now - timedelta(hours=1), now)
    assert [leg for leg in legs if leg.call_id == "CAforged"] == []


async def test_an_unreadable_leg_report_changes_nothing_of_the_answer(client: AppClient) -> None:
    # A Vonage connect event whose timestamp has no offset: the leg report is dropped
    # (and logged), the event is still answered as before (busy → next destination).
    conversation = "CON-naive"
    _, ncco = await post_vonage(
        client,
        "/hooks/vonage/answer",
        {
            "from": CALLER.lstrip("+"),
            "to": METZ.lstrip("+"),
            "uuid": "u",
            "conversation_uuid": conversation,
        },
    )
    connect = next(a for a in ncco if a["action"] == "connect")
    event = {
        "status": "busy",
        "timestamp": "2026-11-24T20:00:00",
        "uuid": "l",
        "conversation_uuid": conversation,
    }
    code, answer = await post_vonage(client, _path(connect["eventUrl"][0]), event)
    assert code == 200 and answer[-1]["action"] == "talk"  # Metz: hang up and dial 15
    assert "15" in answer[-1]["text"]
    await client.app[keys.WRITER].flush()
    now = datetime.now(UTC)
    legs = await client.app[keys.STORE].legs("metz", now - timedelta(days=30), now)
    assert [leg for leg in legs if leg.call_id == conversation] == []
    assert urlsplit(connect["eventUrl"][0]).path == "/hooks/vonage/event"
