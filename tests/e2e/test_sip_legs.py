"""Dial legs over the real SIP path: SIPp caller → Kamailio (deploy/kamailio/kamailio.cfg)
→ ``regulator serve``, whose answer sends the call to a SIPp regulation line; the
script posts what the line does to ``/hooks/kamailio/event``, the service stores the
leg and counts it.

Two regulation lines: one that rings and answers after a set delay, one that rings
and never answers (the caller hangs up while it rings). After each call, the stored
leg (``Store.legs``), its answer-quality block (``core/answer_quality.quality``, the
report's figures) and the ``/metrics`` counters must say what the SIP traces show.

Every time bound is causal, from what the processes on this machine stamped on the
same clock as Kamailio's ``$TV(Sn)``: sipp stamps a message just *after* writing or
reading it (``gettimeofday`` to the microsecond), the service stamps its route hook's
log line before answering. So Kamailio offered the line after the route hook's log
line and before the line's stamp of the INVITE; it saw the answer (or the CANCEL)
before the next hop's stamp of it, and no sooner than the scenario's pause after the
previous message (sipp counts pauses in whole milliseconds of its own clock: one
tick of slack).
"""

from __future__ import annotations

import asyncio
import http.client
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from regulator.core.answer_quality import quality
from regulator.core.legs import Leg, LegOutcome
from regulator.core.models import Route
from regulator.storage import SQLITE_FILENAME
from regulator.storage.sqlite import SqliteStore
from tests.e2e.sip import (
    LOCALHOST,
    SCENARIOS,
    Destination,
    free_port,
    place_call,
    sipp_binary,
    trace_time,
)
from tests.e2e.test_sip_kamailio import CLOSED_MMG, PATIENT, SipLab, start_lab

pytestmark = pytest.mark.e2e

MMG = "e2e-closed"  # closed: every caller goes to the regulation line
ANSWER_AFTER_MS = 3000
HANG_UP_AFTER_MS = 4000
#: Below the hang-up delay, so that the abandon counts (QRAARM's 15 s would make the
#: test wait 15 s for the same check).
SHORT_ABANDON_S = 2
#: sipp's pause clock ticks in milliseconds.
SIPP_TICK = timedelta(milliseconds=1)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SipLab]:
    started = start_lab(
        tmp_path_factory.mktemp("sip-legs"),
        extra_env={"REGULATOR_SHORT_ABANDON_S": str(SHORT_ABANDON_S)},
    )
    yield started
    started.stop()


def regulation_line(lab: SipLab, scenario: str, pause_ms: int) -> Destination:
    """The lab's regulation line (the port its protocol names) with ``scenario``."""
    line = next(d for d in lab.destinations if d.name == "regulation")
    return Destination(
        line.name, line.port, lab.root, scenario=scenario, args=("-d", str(pause_ms))
    )


def stored_leg(lab: SipLab, call_id: str, *, ended: bool, timeout_s: float = 10.0) -> Leg:
    """The regulation leg of ``call_id`` as the service stored it, once it has ended
    (``ended``) or at least has an outcome. Read from the service's own SQLite file."""

    async def read() -> list[Leg]:
        store = SqliteStore(lab.root / "var" / SQLITE_FILENAME)
        await store.open()
        try:
            now = datetime.now(UTC)
            return await store.legs(MMG, now - timedelta(hours=1), now + timedelta(hours=1))
        finally:
            await store.close()

    deadline = time.monotonic() + timeout_s
    while True:
        legs = [leg for leg in asyncio.run(read()) if leg.call_id == call_id]
        done = [
            leg
            for leg in legs
            if leg.target is Route.REGULATION
            and leg.outcome is not None
            and (leg.ended_at is not None or not ended)
        ]
        if done:
            assert len(legs) == 1, legs  # one line offered: one leg
            return done[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no settled leg for {call_id}: {legs}\n{lab.diagnostics()}")
        time.sleep(0.1)


def metrics(lab: SipLab) -> dict[str, float]:
    """The leg metrics of the MMG's regulation line, from GET /metrics."""
    connection = http.client.HTTPConnection(LOCALHOST, lab.service.port, timeout=5)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.status == 200
        text = response.read().decode()
    finally:
        connection.close()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("mmg") != MMG or sample.labels.get("target") != "regulation":
                continue
            key = sample.name
            if "le" in sample.labels:
                key += f"[le={sample.labels['le']}]"
            values[key] = sample.value
    return values


def delta(before: dict[str, float], after: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def stamp(path: Path, direction: str, starts: str) -> datetime:
    """A sipp trace stamp (local wall clock) as an aware instant."""
    return trace_time(path, direction, starts).astimezone(UTC)


def routed_at(lab: SipLab, call_id: str) -> datetime:
    """When the service logged its route hook for ``call_id`` (before answering it)."""
    line = lab.service.webhook_line(call_id)
    assert line is not None, lab.service.log()[-3000:]
    return datetime.fromisoformat(str(line["timestamp"]))


def test_a_regulation_line_answering_after_a_delay_gives_an_answered_leg_and_its_wait(
    lab: SipLab,
) -> None:
    before = metrics(lab)
    line = regulation_line(lab, "uas-answer-late.xml", ANSWER_AFTER_MS)

    landing = place_call(
        proxy_port=lab.kamailio.port,
        caller=PATIENT,
        called=CLOSED_MMG,
        destinations=[line],
        workdir=lab.root,
    )

    assert landing.name == "regulation", lab.diagnostics()
    leg = stored_leg(lab, landing.call_id, ended=True)
    caller = lab.root / f"uac-{landing.call_id.rsplit('-', 1)[0]}.msg"
    assert (leg.mmg, leg.platform, leg.outcome) == (MMG, "kamailio", LegOutcome.ANSWERED)
    assert leg.answered_at is not None and leg.ended_at is not None
    # Offered after the route hook, before the line read the INVITE.
    assert routed_at(lab, landing.call_id) <= leg.offered_at
    assert leg.offered_at <= stamp(line.trace, "received", "INVITE")
    # Answered no sooner than the line's pause after its 180, before the caller read it.
    pause = timedelta(milliseconds=ANSWER_AFTER_MS)
    assert stamp(line.trace, "sent", "SIP/2.0 180") + pause - SIPP_TICK <= leg.answered_at
    assert leg.answered_at <= stamp(caller, "received", "SIP/2.0 200")
    assert leg.wait_s is not None and leg.wait_s >= ANSWER_AFTER_MS / 1000 - 0.001
    # The BYE ended it after the answer (the caller talks 200 ms, uac.xml), before the
    # line read it.
    assert leg.answered_at < leg.ended_at <= stamp(line.trace, "received", "BYE")

    figures = quality([leg], SHORT_ABANDON_S)
    assert figures["offered"] == figures["answered"] == figures["answered_within_60s"] == 1
    assert (figures["answer_rate"], figures["qs60"], figures["qs30"]) == (1.0, 1.0, 1.0)
    assert figures["abandoned"] == figures["short_abandons"] == 0
    assert figures["wait_median_s"] == figures["wait_p90_s"] == round(leg.wait_s, 1)

    deadline = time.monotonic() + 5
    while (after := metrics(lab)) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert delta(before, after, "regulator_legs_offered_total") == 1
    assert delta(before, after, "regulator_legs_abandoned_total") == 0
    assert delta(before, after, "regulator_answer_delay_seconds_count") == 1
    assert delta(before, after, "regulator_answer_delay_seconds_sum") == pytest.approx(leg.wait_s)
    # 3 s and a little: in the 5 s bucket and every one above, not below.
    assert delta(before, after, "regulator_answer_delay_seconds_bucket[le=5.0]") == 1
    assert delta(before, after, "regulator_answer_delay_seconds_bucket[le=300.0]") == 1


def test_a_regulation_line_that_never_answers_gives_an_abandoned_leg_when_the_caller_hangs_up(
    lab: SipLab,
) -> None:
    before = metrics(lab)
    line = regulation_line(lab, "uas-ring-forever.xml", 0)
    call_id = f"e2e-cancel-{uuid.uuid4().hex[:10]}"
    caller = lab.root / f"uac-{call_id}.msg"
    line.start()
    try:
        uac = subprocess.run(
            [
                sipp_binary(),
                "-sf",
                str(SCENARIOS / "uac-cancel.xml"),
                "-key",
                "caller",
                PATIENT,
                "-s",
                CLOSED_MMG,
                f"{LOCALHOST}:{lab.kamailio.port}",
                "-i",
                LOCALHOST,
                "-p",
                str(free_port()),
                "-m",
                "1",
                "-d",
                str(HANG_UP_AFTER_MS),
                "-nostdin",
                "-cid_str",
                call_id,
                "-timeout",
                "30s",
                "-timeout_error",
                "-trace_msg",
                "-message_file",
                str(caller),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=lab.root,
            timeout=40,
            check=False,
        )
        assert uac.returncode == 0, caller.read_text(errors="replace")[-3000:]
        assert line.finished(), line.trace.read_text(errors="replace")[-3000:]
    finally:
        line.stop()

    leg = stored_leg(lab, call_id, ended=True)
    assert (leg.mmg, leg.platform, leg.outcome) == (MMG, "kamailio", LegOutcome.ABANDONED)
    assert leg.answered_at is None
    assert leg.ended_at is not None
    # Offered after the route hook, before the line read the INVITE.
    assert routed_at(lab, call_id) <= leg.offered_at
    assert leg.offered_at <= stamp(line.trace, "received", "INVITE")
    # The caller's CANCEL left the caller's pause after it read the 180; Kamailio saw
    # it before the line read it.
    pause = timedelta(milliseconds=HANG_UP_AFTER_MS)
    assert stamp(caller, "received", "SIP/2.0 180") + pause - SIPP_TICK <= leg.ended_at
    assert leg.ended_at <= stamp(line.trace, "received", "CANCEL")
    assert leg.abandon_s is not None and leg.abandon_s >= HANG_UP_AFTER_MS / 1000 - 0.001

    figures = quality([leg], SHORT_ABANDON_S)
    assert (figures["offered"], figures["answered"], figures["abandoned"]) == (1, 0, 1)
    assert (figures["answer_rate"], figures["qs60"]) == (0.0, 0.0)
    assert figures["short_abandons"] == 0
    assert figures["wait_median_s"] is None

    deadline = time.monotonic() + 5
    while (after := metrics(lab)) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert delta(before, after, "regulator_legs_offered_total") == 1
    assert delta(before, after, "regulator_legs_abandoned_total") == 1
    assert delta(before, after, "regulator_answer_delay_seconds_count") == 0


def test_the_month_report_gives_the_answer_quality_of_the_legs_the_calls_left(
    lab: SipLab,
) -> None:
    """The report's ``answer_quality.regulation`` (what the API and the CLI serve) is
    that of the legs the two calls above left: one answered after 3 s, one abandoned
    after 4 s (``REGULATOR_SHORT_ABANDON_S`` = 2 s in this lab)."""
    from regulator.protocols import load_protocols
    from regulator.reporting import month_report

    protocol = load_protocols(lab.root / "protocols").get(MMG)
    assert protocol is not None

    async def read() -> tuple[list[Leg], dict[str, object]]:
        store = SqliteStore(lab.root / "var" / SQLITE_FILENAME)
        await store.open()
        try:
            now = datetime.now(UTC)
            month = now.astimezone(protocol.tz).strftime("%Y-%m")
            legs = await store.legs(MMG, now - timedelta(hours=1), now + timedelta(hours=1))
            report = await month_report(store, protocol, month, short_abandon_s=SHORT_ABANDON_S)
            return legs, report
        finally:
            await store.close()

    legs, report = asyncio.run(read())
    regulation = [leg for leg in legs if leg.target is Route.REGULATION]
    outcomes = sorted(str(leg.outcome) for leg in regulation)
    print("legs:", outcomes)
    assert outcomes == ["abandoned", "answered"]
    block = report["answer_quality"]["regulation"]  # type: ignore[index]
    print("report:", {k: v for k, v in block.items() if k != "by_hour"})
    assert {k: v for k, v in block.items() if k != "by_hour"} == quality(
        regulation, SHORT_ABANDON_S
    )
    assert (block["offered"], block["answered"], block["abandoned"]) == (2, 1, 1)
    assert (block["answer_rate"], block["qs60"]) == (0.5, 0.5)
