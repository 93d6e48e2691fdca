"""Kamailio's dial-leg notifications, as deploy/kamailio/kamailio.cfg posts them, through
the real hook (``POST /hooks/kamailio/event``, shared secret) into a real SQLite store.

Each case is the sequence the script posts for one call (after the route hook the call
began with): ``offered`` when the branch's INVITE leaves, ``ringing`` on its first
180/183, ``answered`` on the 200, ``failed`` with the SIP code, ``cancel`` when the
caller hangs up first, ``bye`` at the end of an answered call; ``at`` is Kamailio's
``$TV(Sn)``. The stored leg and the answer-quality figures must be exactly the
issue's, whatever the order or repetition of the notifications.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from regulator.core.answer_quality import quality
from regulator.core.legs import Leg, LegOutcome
from regulator.core.models import Route
from regulator.ports import Store
from regulator.web import keys
from tests.support.app import KAMAILIO_SECRET, NIMES, AppClient
from tests.support.figures import ISSUE_BLOCK

CALLER = "+33611223344"
HEADERS = {"X-Regulator-Secret": KAMAILIO_SECRET}
#: Kamailio's clock when the branch left: a whole second, two minutes ago (a time the
#: hook accepts: near the receipt time).
T0 = float(int(time.time()) - 120)

Event = tuple[str, float, dict[str, Any]]  # (event, seconds after T0, other fields)

#: The issue's recorded cases, each one call to the regulation line.
CASES: dict[str, list[Event]] = {
    "answered_25s": [
        ("offered", 0.0, {}),
        ("ringing", 0.35, {"code": 180}),
        ("answered", 25.0, {"code": 200}),
        ("bye", 205.0, {}),
    ],
    "answered_75s": [
        ("offered", 0.0, {}),
        ("ringing", 0.2, {"code": 183}),
        ("answered", 75.0, {"code": 200}),
        ("bye", 300.0, {}),
    ],
    "hangs_up_40s_ringing": [
        ("offered", 0.0, {}),
        ("ringing", 0.4, {"code": 180}),
        ("cancel", 40.0, {}),
    ],
    "hangs_up_8s": [
        ("offered", 0.0, {}),
        ("ringing", 0.4, {"code": 180}),
        ("cancel", 8.0, {}),
    ],
    "busy": [
        ("offered", 0.0, {}),
        ("failed", 0.9, {"code": 486}),
    ],
    "no_answer": [
        ("offered", 0.0, {}),
        ("ringing", 0.3, {"code": 180}),
        # tm's ring timer (fr_inv_timer) ended the branch.
        ("failed", 30.0, {"code": 408, "timeout": True}),
    ],
}

#: What each case stores: outcome, wait (s), end (s after T0).
EXPECTED: dict[str, tuple[LegOutcome, float | None, float]] = {
    "answered_25s": (LegOutcome.ANSWERED, 25.0, 205.0),
    "answered_75s": (LegOutcome.ANSWERED, 75.0, 300.0),
    "hangs_up_40s_ringing": (LegOutcome.ABANDONED, None, 40.0),
    "hangs_up_8s": (LegOutcome.ABANDONED, None, 8.0),
    "busy": (LegOutcome.BUSY, None, 0.9),
    "no_answer": (LegOutcome.NO_ANSWER, None, 30.0),
}


def at(seconds: float) -> str:
    """Kamailio's ``$TV(Sn)``: Unix seconds, a dot, six digits of microseconds."""
    whole = int(T0 + seconds)
    micros = round((T0 + seconds - whole) * 1_000_000)
    return f"{whole}.{micros:06d}"


def instant(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0, UTC) + timedelta(seconds=seconds)


async def routed(client: AppClient, call_id: str) -> None:
    """The route hook for the call, as Kamailio posts it for the INVITE."""
    resp = await client.post(
        "/hooks/kamailio/route",
        json={"call_id": call_id, "from": CALLER, "to": NIMES, "source_ip": "127.0.0.1"},
        headers=HEADERS,
    )
    assert resp.status == 200, await resp.text()


async def notify(client: AppClient, call_id: str, event: Event) -> None:
    name, seconds, fields = event
    body = {
        "call_id": call_id,
        "target": "regulation",
        "event": name,
        "timeout": False,
        **fields,
        "at": at(seconds),
    }
    resp = await client.post("/hooks/kamailio/event", json=body, headers=HEADERS)
    assert resp.status == 204, await resp.text()


async def legs(client: AppClient, store: Store) -> dict[str, Leg]:
    await client.app[keys.WRITER].flush()
    found = await store.legs("nimes", instant(-3600), instant(3600))
    return {leg.call_id: leg for leg in found}


async def play(client: AppClient, call_id: str, events: list[Event]) -> None:
    await routed(client, call_id)
    for event in events:
        await notify(client, call_id, event)


def assert_case(leg: Leg, case: str) -> None:
    outcome, wait, end = EXPECTED[case]
    assert (leg.target, leg.mmg, leg.platform) == (Route.REGULATION, "nimes", "kamailio")
    assert leg.offered_at == instant(0)
    assert leg.outcome is outcome
    assert leg.wait_s == wait
    assert leg.ended_at == instant(end)


@pytest.mark.parametrize("case", list(CASES))
async def test_each_recorded_sequence_gives_its_leg(
    client: AppClient, store: Store, case: str
) -> None:
    await play(client, f"k-{case}", CASES[case])

    stored = await legs(client, store)

    assert list(stored) == [f"k-{case}"]
    assert_case(stored[f"k-{case}"], case)


async def test_the_recorded_sequences_give_the_issue_s_figures(
    client: AppClient, store: Store
) -> None:
    for case, events in CASES.items():
        await play(client, f"k-{case}", events)

    stored = await legs(client, store)

    assert quality(stored.values(), 15) == ISSUE_BLOCK


@pytest.mark.parametrize("case", list(CASES))
async def test_any_order_and_any_repetition_give_the_same_leg(
    client: AppClient, store: Store, case: str
) -> None:
    events = CASES[case]
    shuffled = events + events[:1] + events[-1:]  # a retried notification, a retransmission
    random.Random(case).shuffle(shuffled)
    await play(client, f"k-{case}", shuffled)

    stored = await legs(client, store)

    assert_case(stored[f"k-{case}"], case)


def _metric(text: str, name: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("target") == "regulation":
                total += sample.value
    return total


async def _counted(client: AppClient, store: Store, call_id: str, events: list[Event]) -> str:
    await play(client, call_id, events)
    await legs(client, store)
    return await (await client.get("/metrics")).text()


async def test_a_leg_notified_twice_counts_once(client: AppClient, store: Store) -> None:
    # The script's queue is posted in order by one process: a repeat is a retry.
    events = CASES["answered_25s"]
    text = await _counted(client, store, "k-twice", [e for e in events for _ in (1, 2)])

    assert _metric(text, "regulator_legs_offered_total") == 1
    assert _metric(text, "regulator_answer_delay_seconds_count") == 1
    assert _metric(text, "regulator_answer_delay_seconds_sum") == 25.0
    assert _metric(text, "regulator_legs_abandoned_total") == 0


async def test_an_end_notified_before_the_answer_still_observes_the_answer_delay(
    client: AppClient, store: Store
) -> None:
    events = CASES["answered_25s"]
    text = await _counted(client, store, "k-reversed", list(reversed(events)))

    assert _metric(text, "regulator_legs_offered_total") == 1
    assert _metric(text, "regulator_answer_delay_seconds_count") == 1


async def test_the_front_desk_leg_before_the_failover_is_its_own_leg(
    client: AppClient, store: Store
) -> None:
    # A professional's call: the front desk rings out (tm's ring timer), the
    # regulation line answers 12 s after it was offered.
    await routed(client, "k-failover")
    for target, event in (
        ("direct_access", ("offered", 0.0, {})),
        ("direct_access", ("ringing", 0.3, {"code": 180})),
        ("direct_access", ("failed", 20.0, {"code": 408, "timeout": True})),
        ("regulation", ("offered", 20.01, {})),
        ("regulation", ("answered", 32.01, {"code": 200})),
    ):
        name, seconds, fields = event
        body = {"call_id": "k-failover", "target": target, "event": name, **fields}
        body["at"] = at(seconds)
        resp = await client.post("/hooks/kamailio/event", json=body, headers=HEADERS)
        assert resp.status == 204

    await client.app[keys.WRITER].flush()
    found = await store.legs("nimes", instant(-3600), instant(3600))

    by_line = {leg.line: leg for leg in found}
    assert set(by_line) == {"front_desk", "regulation"}
    assert by_line["front_desk"].outcome is LegOutcome.NO_ANSWER
    assert by_line["regulation"].outcome is LegOutcome.ANSWERED
    assert by_line["regulation"].wait_s == pytest.approx(12.0)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"call_id": "k-bad", "target": "regulation", "event": "ringing", "at": "\xd9\xa1"}',
        b'{"call_id": "k-bad", "target": "regulation", "event": "teleport"}',
        b'{"call_id": "k-bad", "target": "menu", "event": "ringing"}',
    ],
)
async def test_an_unusable_notification_is_answered_and_stores_nothing(
    client: AppClient, store: Store, body: bytes
) -> None:
    resp = await client.post(
        "/hooks/kamailio/event",
        data=body,
        headers={**HEADERS, "Content-Type": "application/json"},
    )

    assert resp.status == 204
    assert await legs(client, store) == {}


async def test_a_notification_without_the_secret_is_refused(
    client: AppClient, store: Store
) -> None:
    resp = await client.post(
        "/hooks/kamailio/event",
        json={"call_id": "k-x", "target": "regulation", "event": "offered"},
        headers={"X-Regulator-Secret": "guess"},
    )

    assert resp.status == 403
    assert await legs(client, store) == {}
