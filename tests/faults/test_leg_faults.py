"""kill -9 of a process writing dial-leg events: every event it acknowledged is in the
store after the restart (write-ahead journal, spool), and each leg is counted once.

The writer runs in a child process exactly as ``regulator serve`` wires it (a real
SQLite store, the journal and spool in the data directory); the child prints a leg
event's id once ``submit_leg`` returned — the moment the hook handler answers the
platform, which will not send that callback again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

from regulator.core.legs import LegChange, LegOutcome, settled
from regulator.storage.batch import CallWriter
from regulator.storage.spool import Spool
from regulator.storage.sqlite import SqliteStore
from tests.faults.conftest import FaultCounts
from tests.support.paths import ROOT
from tests.support.store import MMG, T0

LEGS = 300

CHILD = textwrap.dedent(
    f"""
    import asyncio, sys
    from datetime import datetime, timedelta
    from pathlib import Path
    from regulator.core.legs import LegEvent, LegStatus
    from regulator.core.models import Route
    from regulator.storage.batch import CallWriter
    from regulator.storage.spool import Spool
    from regulator.storage.sqlite import SqliteStore

    T0 = datetime.fromisoformat({T0.isoformat()!r})

    async def main(data: Path) -> None:
        store = SqliteStore(data / "regulator.sqlite3")
        await store.open()
        writer = CallWriter(store, Spool(data / "spool.jsonl"), journal=data / "journal")
        await writer.start()
        for n in range({LEGS}):
            call_id = f"CAleg{{n:04d}}"
            for status, s, duration in (
                (LegStatus.RINGING, 0, None),
                (LegStatus.ANSWERED, 25, None),
                (LegStatus.COMPLETED, 85, 60),
            ):
                writer.submit_leg(LegEvent(call_id, Route.REGULATION, status,
                    T0 + timedelta(seconds=n + s), {MMG!r}, "twilio", duration))
            sys.stdout.write(call_id + "\\n")
            sys.stdout.flush()
            await asyncio.sleep(0.002 if n % 10 else 0.01)
        await asyncio.sleep(3600)  # killed before this ends

    asyncio.run(main(Path(sys.argv[1])))
    """
)


async def test_kill_9_loses_no_acknowledged_leg_event(
    tmp_path: Path, fault_counts: FaultCounts
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(data), stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT
    )
    assert child.stdout is not None
    acknowledged: list[str] = []
    async with asyncio.timeout(30):  # the child gets going
        while len(acknowledged) < LEGS // 2:  # kill mid-stream
            line = await child.stdout.readline()
            assert line, f"the child exited early ({child.returncode})"
            acknowledged.append(line.decode().strip())
    child.send_signal(signal.SIGKILL)
    await child.wait()
    acknowledged += [line.decode().strip() for line in (await child.stdout.read()).splitlines()]
    fault_counts.faults_injected += 1
    assert len(acknowledged) < LEGS, "the kill must land mid-stream"
    journal = sum(p.read_bytes().count(b"\n") for p in data.glob("journal.*"))
    fault_counts.notes.append(f"{journal} journal lines after the kill")

    # Restart on the same data directory: the journal goes to the spool, replayed.
    store = SqliteStore(data / "regulator.sqlite3")
    await store.open()
    window = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    # What the dead process had written (and counted) before the kill.
    settled_before = {leg.call_id for leg in await store.legs(MMG, *window) if leg.outcome}
    counted: list[LegChange] = []
    spool = Spool(data / "spool.jsonl")
    writer = CallWriter(store, spool, journal=data / "journal", on_legs=counted.extend)
    await writer.start()
    deadline = time.monotonic() + 15
    while spool.pending or writer.queued:
        assert time.monotonic() < deadline, "the spool was not replayed"
        await asyncio.sleep(0.01)
    await writer.stop()
    legs = {leg.call_id: leg for leg in await store.legs(MMG, *window)}
    await store.close()

    lost = [c for c in acknowledged if c not in legs]
    incomplete = [
        c
        for c in acknowledged
        if c in legs and (legs[c].outcome, legs[c].wait_s) != (LegOutcome.ANSWERED, 25.0)
    ]
    fault_counts.requests_sent = len(acknowledged)
    fault_counts.records_checked = len(acknowledged)
    fault_counts.records_lost = len(lost) + len(incomplete)
    assert lost == [], f"{len(lost)} acknowledged legs lost, e.g. {lost[:5]}"
    assert incomplete == [], f"legs missing events, e.g. {incomplete[:5]}"
    # The restarted process counts only what the dead one had not settled (replaying
    # what it had written settles nothing): across the kill, every leg once.
    newly = {c.after.call_id for c in counted if settled(c, 15.0).offered}
    assert sum(settled(c, 15.0).offered for c in counted) == len(newly)
    assert newly.isdisjoint(settled_before)
    assert newly | settled_before == {c for c, leg in legs.items() if leg.outcome}
    fault_counts.notes.append(
        f"{len(settled_before)} legs settled before the kill, {len(newly)} after"
    )
