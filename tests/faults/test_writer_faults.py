"""The call writer when the store AND the local disk fail: nothing is dropped.

Items the spool can't take stay in memory (in order) and in the write-ahead journal;
they reach the store when either comes back; ``stop()`` never hangs, and what it
could not save is recovered from the journal at the next start.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path

from regulator.core.models import CallRecord, CallUpdate
from regulator.ports import StoreError
from regulator.storage.batch import CallWriter
from regulator.storage.spool import Spool, encode
from regulator.storage.sqlite import SqliteStore
from tests.faults.conftest import FaultCounts
from tests.support.disk import fill, small_disk
from tests.support.store import call


class Flaky:
    """A real SQLite store that can be switched off."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.down = False

    async def record_calls(self, records: Sequence[CallRecord]) -> list[bool]:
        if self.down:
            raise StoreError("store down (test)")
        return await self.store.record_calls(records)

    async def update_calls(self, updates: Sequence[CallUpdate]) -> None:
        if self.down:
            raise StoreError("store down (test)")
        await self.store.update_calls(updates)


#: tmpfs allocates whole pages: a write into a full one is short, then ENOSPC.
PAGE = os.sysconf("SC_PAGE_SIZE")


def journal_segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("journal.*"))


async def until(predicate: object, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


async def test_store_and_spool_down_keeps_calls_in_memory_then_writes_them(
    tmp_path: Path, fault_counts: FaultCounts
) -> None:
    sqlite = SqliteStore(tmp_path / "regulator.sqlite3")
    await sqlite.open()
    store = Flaky(sqlite)
    spool_dir = tmp_path / "spool"  # absent: every spool write fails (like a full disk)
    writer = CallWriter(
        store,  # type: ignore[arg-type]
        Spool(spool_dir / "spool.jsonl"),
        retry_initial_s=0.02,
        retry_max_s=0.1,
        journal=tmp_path / "journal",
    )
    await writer.start()
    store.down = True
    ids = [f"CAmem{n:04d}" for n in range(300)]
    for call_id in ids:
        writer.submit_record(call(call_id))
        await asyncio.sleep(0)
    fault_counts.faults_injected = 2
    await asyncio.sleep(0.3)
    assert writer.queued == len(ids)  # all kept, none dropped
    spool_dir.mkdir()  # the disk has room again: the spool takes them
    await until(lambda: writer.spooled == len(ids) or writer.queued == 0)
    store.down = False  # and the store comes back: replayed
    await until(lambda: writer.spooled == 0 and writer.queued == 0)
    await writer.stop()
    found = [c for c in ids if await sqlite.get_call(c) is not None]
    await sqlite.close()
    fault_counts.requests_sent = len(ids)
    fault_counts.records_checked = len(ids)
    fault_counts.records_lost = len(ids) - len(found)
    assert found == ids


async def test_stop_is_bounded_and_the_journal_keeps_what_was_not_saved(
    tmp_path: Path, fault_counts: FaultCounts
) -> None:
    sqlite = SqliteStore(tmp_path / "regulator.sqlite3")
    await sqlite.open()
    store = Flaky(sqlite)
    store.down = True
    spool_dir = tmp_path / "spool"
    writer = CallWriter(
        store,  # type: ignore[arg-type]
        Spool(spool_dir / "spool.jsonl"),
        retry_initial_s=0.02,
        retry_max_s=0.1,
        journal=tmp_path / "journal",
        stop_timeout_s=0.5,
    )
    await writer.start()
    ids = [f"CAstop{n:04d}" for n in range(50)]
    for call_id in ids:
        writer.submit_record(call(call_id))
    started = time.monotonic()
    await writer.stop()  # neither store nor spool: gives up, does not hang
    assert time.monotonic() - started < 3
    assert journal_segments(tmp_path), "the journal keeps them"
    # Next start, disk and store fine: the journal goes to the spool and is replayed.
    spool_dir.mkdir()
    store.down = False
    spool = Spool(spool_dir / "spool.jsonl")
    writer = CallWriter(store, spool, journal=tmp_path / "journal")  # type: ignore[arg-type]
    await writer.start()
    await until(lambda: writer.spooled == 0)
    await writer.stop()
    found = [c for c in ids if await sqlite.get_call(c) is not None]
    await sqlite.close()
    fault_counts.faults_injected = 2
    fault_counts.requests_sent = len(ids)
    fault_counts.records_checked = len(ids)
    fault_counts.records_lost = len(ids) - len(found)
    assert found == ids


async def test_disk_full_in_the_middle_of_a_spool_append_loses_no_call(
    tmp_path: Path, fault_counts: FaultCounts
) -> None:
    """The spool's disk fills up while an append is half written (a short ``write(2)``,
    then ENOSPC): the items wait in memory, and once there is room again they start on
    a fresh line, so the torn half line is the only thing the replay sets aside."""
    sqlite = SqliteStore(tmp_path / "regulator.sqlite3")
    await sqlite.open()
    store = Flaky(sqlite)
    store.down = True
    spool_dir = tmp_path / "spool"
    line = len(encode(call("CAtorn0000")))
    # As many calls before the fault as leave less than one line free in the spool's
    # last page: the first call of the next append is the one torn in half.
    first = next(n for n in range(20, 200) if (n * line) % PAGE > PAGE - line)
    ids = [f"CAtorn{n:04d}" for n in range(first + 40)]
    with small_disk(spool_dir, "1m"):
        spool = Spool(spool_dir / "spool.jsonl")
        writer = CallWriter(
            store,  # type: ignore[arg-type]
            spool,
            retry_initial_s=0.02,
            retry_max_s=0.1,
        )
        await writer.start()
        for call_id in ids[:first]:
            writer.submit_record(call(call_id))
        await until(lambda: writer.spooled == first)
        filler = fill(spool_dir)
        fault_counts.faults_injected += 1
        for call_id in ids[first:]:
            writer.submit_record(call(call_id))
        await until(lambda: not spool.path.read_bytes().endswith(b"\n"))  # torn mid-line
        await asyncio.sleep(0.3)  # retries meet a full disk
        assert writer.queued == len(ids) - first
        filler.unlink()
        await until(lambda: writer.queued == 0)
        store.down = False
        await until(lambda: writer.spooled == 0 and writer.queued == 0)
        await writer.stop()
        rejected = spool.rejected_path.read_bytes().count(b"\n")
    found = [c for c in ids if await sqlite.get_call(c) is not None]
    await sqlite.close()
    fault_counts.requests_sent = len(ids)
    fault_counts.records_checked = len(ids)
    fault_counts.records_lost = len(ids) - len(found)
    fault_counts.notes.append(f"{rejected} torn fragment set aside")
    assert found == ids
    assert rejected == 1
