"""Dial legs from Asterisk, FreeSWITCH and jambonz through the real hooks, on a real
SQLite store: recorded report sequences (what each PBX posts, in the order and with the
repeats it really sends them) give the stored legs and the leg metrics.

Each sequence dials the front desk of Nîmes (a professional's call) at ``T0``:
answered after 25 s and 75 s, the caller hanging up after 40 s and 8 s while it rings,
busy, unanswered; then duplicates and out-of-order reports. Asterisk and FreeSWITCH
post their own stamps (``${EPOCH}``, ``*_uepoch``); jambonz sends none, so its
reports are timed by their receipt (the hook's clock is set for each post).
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from regulator.core.answer_quality import quality
from regulator.core.legs import Leg, LegOutcome
from regulator.core.models import Route
from regulator.platforms import jambonz
from regulator.web import keys
from regulator.web.hooks import wire
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
from tests.support.figures import ISSUE_BLOCK

#: When each leg is dialled: the evening of the app's fixed clock (tests/integration).
T0 = datetime(2026, 11, 24, 20, 0, 5, tzinfo=UTC)
DESK = "direct_access"


@dataclass(frozen=True)
class Case:
    """One leg: how it ends, seconds after T0 (answered_s None: never answered)."""

    name: str
    answered_s: int | None
    ended_s: int
    outcome: LegOutcome


CASES = [
    Case("answered_25s", 25, 85, LegOutcome.ANSWERED),
    Case("answered_75s", 75, 200, LegOutcome.ANSWERED),
    Case("abandoned_40s", None, 40, LegOutcome.ABANDONED),
    Case("abandoned_8s", None, 8, LegOutcome.ABANDONED),
    Case("busy", None, 5, LegOutcome.BUSY),
    Case("no_answer", None, 30, LegOutcome.NO_ANSWER),
]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def epoch(seconds: float) -> str:
    return str(int(at(seconds).timestamp()))


def uepoch(seconds: float) -> str:
    return str(int(at(seconds).timestamp() * 1_000_000))


@pytest.fixture
def hook_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The hooks' receipt clock (``req.now``), set by each test before a post."""
    now = [at(0).timestamp()]
    fake = SimpleNamespace(time=lambda: now[0], monotonic=time.monotonic)
    monkeypatch.setattr(wire, "time", fake)
    return now


async def stored_legs(client: AppClient) -> dict[str, Leg]:
    await client.app[keys.WRITER].flush()
    legs = await client.app[keys.STORE].legs("nimes", at(-3600), at(3600))
    return {leg.call_id: leg for leg in legs}


async def leg_metrics(client: AppClient) -> dict[str, float]:
    text = await (await client.get("/metrics")).text()
    found: dict[str, float] = {}
    for name, labels, value in re.findall(
        r"^(regulator_(?:legs_\w+_total|answer_delay_seconds_\w+))\{([^}]*)\} (\S+)$",
        text,
        re.M,
    ):
        if 'mmg="nimes"' in labels and 'target="front_desk"' in labels:
            le = re.search(r'le="([^"]+)"', labels)
            found[name + (f"[{le.group(1)}]" if le else "")] = float(value)
    return found


def check(legs: dict[str, Leg], prefix: str) -> None:
    for case in CASES:
        leg = legs[f"{prefix}-{case.name}"]
        assert leg.target is Route.DIRECT_ACCESS
        assert leg.mmg == "nimes"
        assert leg.offered_at == T0, case.name
        assert leg.answered_at == (at(case.answered_s) if case.answered_s is not None else None)
        assert leg.ended_at == at(case.ended_s), case.name
        assert leg.outcome is case.outcome, case.name
    # The issue's figures, from these six legs (the report's block, core/answer_quality).
    mine = [legs[f"{prefix}-{case.name}"] for case in CASES]
    assert quality(mine, 15) == ISSUE_BLOCK


async def check_metrics(client: AppClient) -> None:
    found = await leg_metrics(client)
    # Offered: everything settled but the 8 s abandon (QRAARM: under 15 s is noise).
    assert found["regulator_legs_offered_total"] == 5
    assert found["regulator_legs_abandoned_total"] == 1
    assert found["regulator_answer_delay_seconds_count"] == 2
    assert found["regulator_answer_delay_seconds_bucket[30.0]"] == 1
    assert found["regulator_answer_delay_seconds_bucket[60.0]"] == 1
    assert found["regulator_answer_delay_seconds_bucket[90.0]"] == 2


# ------------------------------------------------------------------ Asterisk


async def asterisk_post(client: AppClient, path: str, fields: dict[str, str]) -> str:
    resp = await client.post(
        path,
        data=urlencode(fields),
        headers={
            "X-Regulator-Secret": ASTERISK_SECRET,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert resp.status in (200, 204), await resp.text()
    return await resp.text()


def asterisk_dial_status(call: dict[str, str], case: Case, dialstatus: str) -> dict[str, str]:
    """What [regulator-apply] posts after Dial() returned."""
    return {
        **call,
        "dialstatus": dialstatus,
        "target": DESK,
        "duration": "123",  # ${ANSWEREDTIME}: counts from the caller's own answer
        "dial_at": epoch(0),
        "answered_at": epoch(case.answered_s) if case.answered_s is not None else "",
        "ended_at": epoch(case.ended_s),
    }


def asterisk_hangup(call: dict[str, str], leg: dict[str, str] | None) -> dict[str, str]:
    """What [regulator-hangup] posts: the leg only if Dial() never returned."""
    return {**call, "status": "completed", "duration": "90", "cause": "16", **(leg or {})}


async def test_asterisk_sequences_give_the_legs_and_the_metrics(client: AppClient) -> None:
    statuses = {"answered_25s": "ANSWER", "answered_75s": "ANSWER", "busy": "BUSY"}
    statuses |= {"no_answer": "NOANSWER"}
    for case in CASES:
        call = {"call_id": f"ast-{case.name}", "from": PROFESSIONAL_NIMES, "to": NIMES}
        first = await asterisk_post(client, "/hooks/asterisk/call", call)
        assert "action=dial&route=direct_access" in first
        if case.name.startswith("abandoned"):
            # The caller hung up during Dial(): only the hangup handler reports it.
            leg = {
                "leg_status": "CANCEL",
                "leg_target": DESK,
                "dial_at": epoch(0),
                "answered_at": "",
                "ended_at": epoch(case.ended_s),
            }
            await asterisk_post(client, "/hooks/asterisk/status", asterisk_hangup(call, leg))
            continue
        report = asterisk_dial_status(call, case, statuses[case.name])
        await asterisk_post(client, "/hooks/asterisk/dial-status", report)
        if case.outcome is LegOutcome.ANSWERED:
            # CURL() retried by a site's proxy: the same report again, then the
            # hangup handler with empty leg fields (Dial() had returned).
            await asterisk_post(client, "/hooks/asterisk/dial-status", report)
            empty = {k: "" for k in ("leg_status", "leg_target", "dial_at", "answered_at")}
            await asterisk_post(client, "/hooks/asterisk/status", asterisk_hangup(call, empty))
    check(await stored_legs(client), "ast")
    await check_metrics(client)


async def test_asterisk_caller_hanging_up_while_talking_is_an_answered_leg(
    client: AppClient,
) -> None:
    call = {"call_id": "ast-talk", "from": PROFESSIONAL_NIMES, "to": NIMES}
    await asterisk_post(client, "/hooks/asterisk/call", call)
    leg = {
        "leg_status": "ANSWER",
        "leg_target": DESK,
        "dial_at": epoch(0),
        "answered_at": epoch(12),
        "ended_at": epoch(300),
    }
    await asterisk_post(client, "/hooks/asterisk/status", asterisk_hangup(call, leg))
    stored = (await stored_legs(client))["ast-talk"]
    assert (stored.wait_s, stored.ended_at, stored.outcome) == (12.0, at(300), LegOutcome.ANSWERED)


# ------------------------------------------------------------------ FreeSWITCH


def fs_headers() -> dict[str, str]:
    auth = base64.b64encode(f"regulator:{FREESWITCH_SECRET}".encode()).decode()
    return {"Authorization": f"Basic {auth}", "Content-Type": "application/x-www-form-urlencoded"}


async def fs_post(client: AppClient, path: str, fields: dict[str, str]) -> str:
    resp = await client.post(path, data=urlencode(fields), headers=fs_headers())
    assert resp.status == 200, await resp.text()
    return await resp.text()


async def test_freeswitch_sequences_give_the_legs_and_the_metrics(client: AppClient) -> None:
    dispositions = {
        "answered_25s": "call accepted",
        "answered_75s": "call accepted",
        "abandoned_40s": "ORIGINATOR_CANCEL",
        "abandoned_8s": "ORIGINATOR_CANCEL",
        "busy": "USER_BUSY",
        "no_answer": "NO_ANSWER",
    }
    for case in CASES:
        call = {
            "session_id": f"fs-{case.name}",
            "Caller-Caller-ID-Number": PROFESSIONAL_NIMES,
            "Caller-Destination-Number": NIMES,
        }
        document = await fs_post(client, "/hooks/freeswitch/voice", call)
        action = re.search(r'<dial action="([^"]+)"', document)
        assert action is not None, document
        path = action.group(1).replace("&amp;", "&").removeprefix("https://regulator.example")
        stamps = {
            "variable_originate_disposition": dispositions[case.name],
            "variable_regulator_dial_uepoch": uepoch(0),
        }
        if case.answered_s is not None:
            stamps |= {
                "variable_DIALSTATUS": "EARLY",
                "variable_regulator_originate_end_uepoch": uepoch(case.answered_s),
                "variable_regulator_answer_uepoch": uepoch(case.answered_s),
                "variable_regulator_bridge_end_uepoch": uepoch(case.ended_s),
            }
            # The callee hung up: <continue> posts; then the last post, same URL.
            answer = await fs_post(client, path, {**call, **stamps})
            assert "<hangup/>" in answer and "<dial" not in answer
            exiting = {"exiting": "true", "variable_end_uepoch": uepoch(case.ended_s + 1)}
            await fs_post(client, path, {**call, **stamps, **exiting})
        elif case.outcome is LegOutcome.ABANDONED:
            # The caller hung up while it rang: only httapi's last post, to <dial action>.
            stamps["variable_regulator_originate_end_uepoch"] = uepoch(case.ended_s)
            exiting = {"exiting": "true", "variable_end_uepoch": uepoch(case.ended_s)}
            await fs_post(client, path, {**call, **stamps, **exiting})
        else:
            stamps["variable_regulator_originate_end_uepoch"] = uepoch(case.ended_s)
            answer = await fs_post(client, path, {**call, **stamps})
            assert "<dial" in answer  # a failed dial: the next line (the overflow)
    check(await stored_legs(client), "fs")
    await check_metrics(client)


async def test_freeswitch_stamps_of_an_earlier_dial_are_not_this_legs(client: AppClient) -> None:
    """The same call's second bridge: the first one's answer/end stamps are older than
    this dial's start, so this leg (unanswered) gets neither."""
    call = {
        "session_id": "fs-second",
        "Caller-Caller-ID-Number": PROFESSIONAL_NIMES,
        "Caller-Destination-Number": NIMES,
    }
    await fs_post(client, "/hooks/freeswitch/voice", call)
    stale = {
        "variable_regulator_answer_uepoch": uepoch(-50),
        "variable_regulator_bridge_end_uepoch": uepoch(-20),
        "variable_regulator_originate_end_uepoch": uepoch(-50),
    }
    fields = {
        **call,
        **stale,
        "variable_originate_disposition": "NO_ANSWER",
        "variable_regulator_dial_uepoch": uepoch(0),
    }
    await fs_post(
        client,
        callback("/hooks/freeswitch/dial-status?mmg=nimes&call_id=fs-second&target=direct_access"),
        fields,
    )
    leg = (await stored_legs(client))["fs-second"]
    assert (leg.offered_at, leg.answered_at, leg.outcome) == (T0, None, LegOutcome.NO_ANSWER)
    assert leg.ended_at is not None and leg.ended_at >= T0


# ------------------------------------------------------------------ jambonz


async def jambonz_post(
    client: AppClient, now: list[float], seconds: float, path: str, payload: dict[str, Any]
) -> Any:
    now[0] = at(seconds).timestamp()
    body = orjson.dumps(payload)
    header = jambonz.sign(JAMBONZ_SECRET, body, int(now[0]))
    resp = await client.post(
        path, data=body, headers={"Jambonz-Signature": header, "Content-Type": "application/json"}
    )
    assert resp.status in (200, 204), await resp.text()
    return await resp.json() if resp.status == 200 else None


def child(parent: str, status: str, target: str = DESK, **extra: Any) -> dict[str, Any]:
    """A dialled call's call status webhook (jambonz's outbound child event)."""
    return {
        "call_sid": f"{parent}-child",
        "parent_call_sid": parent,
        "direction": "outbound",
        "from": PROFESSIONAL_NIMES,
        "to": "+33466123400",
        "call_status": status,
        "sip_status": 200,
        "customerData": {"regulator_target": target},
        **extra,
    }


async def test_jambonz_sequences_give_the_legs_and_the_metrics(
    client: AppClient, hook_clock: list[float]
) -> None:
    results = {"busy": "busy", "no_answer": "no-answer"}
    for case in CASES:
        sid = f"jz-{case.name}"
        call = {"call_sid": sid, "from": PROFESSIONAL_NIMES, "to": NIMES, "call_status": "trying"}
        verbs = await jambonz_post(client, hook_clock, -2, "/hooks/jambonz/call", call)
        dial = verbs[-1]
        assert dial["tag"] == {"regulator_target": DESK}
        action = str(dial["actionHook"]).removeprefix("https://regulator.example")
        await jambonz_post(client, hook_clock, 0, "/hooks/jambonz/status", child(sid, "trying"))
        await jambonz_post(client, hook_clock, 1, "/hooks/jambonz/status", child(sid, "ringing"))
        if case.answered_s is not None:
            answered = child(sid, "in-progress")
            await jambonz_post(
                client, hook_clock, case.answered_s, "/hooks/jambonz/status", answered
            )
            done = child(sid, "completed", duration=case.ended_s - case.answered_s)
            await jambonz_post(client, hook_clock, case.ended_s, "/hooks/jambonz/status", done)
            # Retried by jambonz (a slow answer): the same report again.
            await jambonz_post(client, hook_clock, case.ended_s, "/hooks/jambonz/status", done)
            result = {**call, "call_status": "in-progress", "dial_call_status": "completed"}
            await jambonz_post(client, hook_clock, case.ended_s, action, result)
        elif case.outcome is LegOutcome.ABANDONED:
            # jambonz ends the caller's call, then the dial, whose outdial it cancels
            # (487 → no-answer): the actionHook carries the caller's call completed.
            gone = child(sid, "no-answer", sip_status=487)
            await jambonz_post(client, hook_clock, case.ended_s, "/hooks/jambonz/status", gone)
            result = {**call, "call_status": "completed", "dial_call_status": "no-answer"}
            await jambonz_post(client, hook_clock, case.ended_s, action, result)
        else:
            status = results[case.name]
            await jambonz_post(
                client, hook_clock, case.ended_s, "/hooks/jambonz/status", child(sid, status)
            )
            result = {**call, "call_status": "in-progress", "dial_call_status": status}
            verbs = await jambonz_post(client, hook_clock, case.ended_s, action, result)
            assert verbs[-1]["verb"] == "dial"  # the overflow
    check(await stored_legs(client), "jz")
    await check_metrics(client)


async def test_jambonz_out_of_order_reports_give_the_same_leg(
    client: AppClient, hook_clock: list[float]
) -> None:
    sid = "jz-shuffled"
    call = {"call_sid": sid, "from": PROFESSIONAL_NIMES, "to": NIMES, "call_status": "trying"}
    verbs = await jambonz_post(client, hook_clock, -2, "/hooks/jambonz/call", call)
    action = str(verbs[-1]["actionHook"]).removeprefix("https://regulator.example")
    result = {**call, "call_status": "in-progress", "dial_call_status": "completed"}
    # The end first, then the answer, then the start (each at its own instant).
    await jambonz_post(client, hook_clock, 90, action, result)
    await jambonz_post(client, hook_clock, 20, "/hooks/jambonz/status", child(sid, "in-progress"))
    await jambonz_post(client, hook_clock, 0, "/hooks/jambonz/status", child(sid, "trying"))
    await jambonz_post(client, hook_clock, 20, "/hooks/jambonz/status", child(sid, "in-progress"))
    leg = (await stored_legs(client))[sid]
    assert (leg.offered_at, leg.answered_at, leg.ended_at) == (T0, at(20), at(90))
    assert leg.outcome is LegOutcome.ANSWERED
    # Counted once, as offered (the live counters follow the first settlement).
    assert (await leg_metrics(client))["regulator_legs_offered_total"] == 1


async def test_jambonz_regulation_line_hears_the_whisper_and_the_answer_is_recorded(
    client: AppClient, hook_clock: list[float]
) -> None:
    sid = "jz-whisper"
    call = {"call_sid": sid, "from": PROFESSIONAL_NIMES, "to": NIMES, "call_status": "trying"}
    verbs = await jambonz_post(client, hook_clock, -5, "/hooks/jambonz/call", call)
    desk_action = str(verbs[-1]["actionHook"]).removeprefix("https://regulator.example")
    assert "confirmHook" not in verbs[-1]["target"][0]  # no whisper for the desk
    failed = {**call, "call_status": "in-progress", "dial_call_status": "no-answer"}
    verbs = await jambonz_post(client, hook_clock, -2, desk_action, failed)
    (target,) = verbs[-1]["target"]
    assert target["number"] == REGULATION_NIMES
    confirm = str(target["confirmHook"]).removeprefix("https://regulator.example")
    assert confirm.startswith("/hooks/jambonz/confirm?") and "target=regulation" in confirm
    await jambonz_post(
        client, hook_clock, 0, "/hooks/jambonz/status", child(sid, "trying", "regulation")
    )
    # The regulator answers: jambonz runs the confirmHook on that leg (the child's info).
    whisper = await jambonz_post(
        client, hook_clock, 14, confirm, child(sid, "in-progress", "regulation")
    )
    assert whisper == [
        {"verb": "say", "text": "Appel transmis par la maison médicale de garde de Nîmes."}
    ]
    leg = {leg.target: leg for leg in (await stored_legs(client)).values() if leg.call_id == sid}
    assert leg[Route.REGULATION].wait_s == 14.0
