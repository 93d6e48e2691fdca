"""The process itself dies or is stopped under load: kill -9 and SIGTERM.

A call answered to the platform is never lost: the platform will not send it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import aiohttp

from regulator.storage.sqlite import SqliteStore
from tests.faults.conftest import (
    TOKENS,
    Answer,
    FaultCounts,
    Service,
    ServiceFactory,
    check_answers,
    paris_month,
    spool_lines,
    twilio_calls,
    wait_for,
)


async def recorded(db: Path, call_ids: list[str]) -> set[str]:
    """The call ids that have a record in the SQLite store."""
    store = SqliteStore(db)
    await store.open()
    try:
        return {c for c in call_ids if await store.get_call(c) is not None}
    finally:
        await store.close()


def journal_files(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob("journal.*"))


async def test_kill_9_mid_load_loses_no_answered_call(
    service_factory: ServiceFactory, fault_counts: FaultCounts
) -> None:
    service: Service = service_factory()
    service.start()
    months = {paris_month()}
    call_ids = [f"CAkill{n:05d}" for n in range(600)]
    # Triggered by the answers the load received, not by regulator_calls_total: that
    # moves once the write path settled a record (replay-proof counting), behind the
    # answers, and the whole load could be answered first (CI printed "600 < 600").
    answered = [0]

    load = asyncio.create_task(
        twilio_calls(service.base_url, call_ids, concurrency=16, answered=answered)
    )
    # Kill once a good part of the load has been answered (while calls are in flight).
    await wait_for(lambda: answered[0] >= 250, timeout_s=30, interval_s=0.005)
    service.kill()
    fault_counts.faults_injected += 1
    answers = await load
    months.add(paris_month())
    acknowledged = [a.call_id for a in answers if a.acknowledged]
    refused = [a for a in answers if not a.acknowledged]
    assert 0 < len(acknowledged) < len(call_ids), "the kill must land mid-load"
    assert all(a.status is None for a in refused), "a call got an HTTP error, not a dead peer"
    left = spool_lines(service.data_dir) + sum(
        p.read_bytes().count(b"\n") for p in journal_files(service.data_dir)
    )
    fault_counts.notes.append(f"{left} items in spool+journal after the kill")

    service.start()  # same data dir: the journal and spool are replayed
    await wait_for(
        lambda: (
            spool_lines(service.data_dir) == 0 and service.metric("regulator_spool_pending") == 0
        ),
        what="spool replayed",
    )
    assert journal_files(service.data_dir) == [] or all(
        p.stat().st_size == 0 for p in journal_files(service.data_dir)
    )
    db = service.data_dir / "regulator.sqlite3"
    present = await recorded(db, call_ids)
    lost = [c for c in acknowledged if c not in present]
    report = service.calls_received(months)
    fault_counts.requests_sent = len(call_ids)
    fault_counts.records_checked = len(acknowledged)
    fault_counts.records_lost = len(lost)
    assert lost == [], f"{len(lost)} answered calls lost, e.g. {lost[:5]}"
    # Exactly once: the report counts each recorded call one time (none twice after
    # the journal and spool replays).
    assert report == len(present)
    service.stop()


async def _sse_reader(base_url: str, events: list[str], ended: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {TOKENS['regulator']}"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"{base_url}/api/v1/events", headers=headers) as resp,
    ):
        assert resp.status == 200
        with contextlib.suppress(aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
            async for line in resp.content:
                if line.startswith(b"event:"):
                    events.append(line.decode().strip())
    ended.set()


async def test_sigterm_under_load_turns_unready_first_and_loses_nothing(
    service_factory: ServiceFactory, fault_counts: FaultCounts
) -> None:
    service: Service = service_factory({"REGULATOR_SHUTDOWN_GRACE_S": "1.0"})
    service.start()
    months = {paris_month()}
    events: list[str] = []
    sse_ended = asyncio.Event()
    sse = asyncio.create_task(_sse_reader(service.base_url, events, sse_ended))
    call_ids = [f"CAterm{n:05d}" for n in range(500)]
    # About 200 calls a second for 2.5 s: the load outlasts the 1 s grace period.
    load = asyncio.create_task(twilio_calls(service.base_url, call_ids, concurrency=4, pace_s=0.02))
    await wait_for(
        lambda: service.metric("regulator_calls_total") >= 100, timeout_s=30, interval_s=0.01
    )
    service.signal(signal.SIGTERM)
    fault_counts.faults_injected += 1
    sent_at = time.monotonic()
    # Readiness turns false at once, while webhooks are still answered (grace period).
    readiness: list[int | None] = []
    while time.monotonic() - sent_at < 0.8:
        readiness.append(await asyncio.to_thread(service.get_status, "/readyz"))
        await asyncio.sleep(0.05)
    # (The signal is asynchronous: a probe or two may still see the old state.)
    assert 503 in readiness[:5], readiness
    first = readiness.index(503)
    assert all(status == 503 for status in readiness[first:]), readiness
    answers: list[Answer] = await load
    code = await asyncio.to_thread(service.wait, 30.0)
    assert code == 0, service.log()[-3000:]
    await asyncio.wait_for(sse_ended.wait(), 5)  # the SSE stream was ended by the server
    await sse
    months.add(paris_month())

    acknowledged = [a for a in answers if a.acknowledged]
    late = [a for a in answers if a.acknowledged and a.latency_s > 5]
    assert not late
    check_answers(acknowledged)
    assert all(a.status in (200, None) for a in answers)
    assert 100 < len(acknowledged) < len(call_ids), "the listener must close mid-load"
    # Calls kept being answered during the grace period, after readiness turned false.
    log = [e.get("event") for e in service.log_events()]
    answered_after = log[log.index("shutting_down") :].count("webhook")
    fault_counts.notes.append(f"{answered_after} webhooks answered after SIGTERM")
    assert answered_after > 0
    # Everything the writer held went to the store: nothing left in spool or journal.
    assert spool_lines(service.data_dir) == 0
    assert all(p.stat().st_size == 0 for p in journal_files(service.data_dir))
    ids = [a.call_id for a in acknowledged]
    present = await recorded(service.data_dir / "regulator.sqlite3", call_ids)
    lost = [c for c in ids if c not in present]
    fault_counts.requests_sent = len(call_ids)
    fault_counts.records_checked = len(ids)
    fault_counts.records_lost = len(lost)
    fault_counts.notes.append(f"{len(events)} SSE events before the stream closed")
    assert lost == []
    assert len(events) > 0
    stopping = [e for e in service.log_events() if e.get("event") in ("shutting_down", "stopped")]
    assert [e["event"] for e in stopping] == ["shutting_down", "stopped"]
