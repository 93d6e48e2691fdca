"""The SQLite database turns read-only (``chattr +i``: even root can't write), or its
disk fills up under load.

Answers stay valid; records go to the local spool (read-only database) or wait in
memory (full disk: the spool is on it too) and reach the database once the fault is
removed; the report then counts every call exactly once.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from regulator.settings import Settings
from regulator.storage.sqlite import SqliteStore
from tests.faults.conftest import (
    FaultCounts,
    ServiceFactory,
    check_answers,
    paris_month,
    spool_lines,
    twilio_calls,
    wait_for,
)
from tests.support.disk import fill, small_disk
from tests.support.store import CALLER, MMG, T0, call, referral

#: The service gives the pending-referral look-up this long, then routes without it.
BUDGET_S = float(Settings.model_fields["store_budget_ms"].default) / 1000

# linux/fs.h: _IOR('f', 1, long) and _IOW('f', 2, long); FS_IMMUTABLE_FL.
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_IMMUTABLE_FL = 0x00000010


def set_immutable(path: Path, on: bool) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        flags[0] = flags[0] | FS_IMMUTABLE_FL if on else flags[0] & ~FS_IMMUTABLE_FL
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, flags)
    finally:
        os.close(fd)


@contextmanager
def read_only(paths: list[Path]) -> Iterator[None]:
    """The files can't be written, even by root, until the block ends."""
    done: list[Path] = []
    try:
        for path in paths:
            try:
                set_immutable(path, True)
            except OSError as exc:  # not root, or a file system without the flag
                pytest.skip(f"cannot make {path.name} immutable here: {exc}")
            done.append(path)
        yield
    finally:
        for path in done:
            set_immutable(path, False)


async def recorded(db: Path, call_ids: list[str]) -> set[str]:
    store = SqliteStore(db)
    await store.open()
    try:
        return {c for c in call_ids if await store.get_call(c) is not None}
    finally:
        await store.close()


async def test_read_only_database_spools_then_replays(
    service_factory: ServiceFactory, fault_counts: FaultCounts
) -> None:
    service = service_factory()
    service.start()
    months = {paris_month()}
    before = [f"CAro-a{n:04d}" for n in range(100)]
    during = [f"CAro-b{n:04d}" for n in range(200)]
    answers = await twilio_calls(service.base_url, before, concurrency=4)
    await wait_for(lambda: service.calls_received(months) == len(before), what="first calls")

    db = service.data_dir / "regulator.sqlite3"
    files = [p for p in (db, db.with_name(db.name + "-wal")) if p.exists()]
    with read_only(files):
        fault_counts.faults_injected += 1
        answers += await twilio_calls(service.base_url, during, concurrency=4, pace_s=0.005)
        await wait_for(
            lambda: spool_lines(service.data_dir) > 0, timeout_s=10, what="records spooled"
        )
        await asyncio.sleep(0.5)
        spooled = spool_lines(service.data_dir)
        assert service.metric("regulator_storage_errors_total") > 0
    # Writable again: the writer replays the spool (backoff ≤ 5 s).
    await wait_for(
        lambda: (
            spool_lines(service.data_dir) == 0
            and service.calls_received(months) == len(before) + len(during)
        ),
        timeout_s=30,
        what="spool replayed",
    )
    months.add(paris_month())
    check_answers(answers)
    call_ids = before + during
    present = await recorded(db, call_ids)
    fault_counts.requests_sent = len(answers)
    fault_counts.records_checked = len(call_ids)
    fault_counts.records_lost = len(call_ids) - len(present)
    fault_counts.notes.append(f"{spooled} items spooled while read-only")
    assert present == set(call_ids)
    assert service.calls_received(months) == len(call_ids)
    service.stop()


async def test_full_disk_keeps_calls_in_memory_then_writes_them(
    service_factory: ServiceFactory, fault_counts: FaultCounts
) -> None:
    """Store and spool share the full disk: answers stay valid, nothing is dropped."""
    service = service_factory()
    with small_disk(service.data_dir):
        service.start()
        months = {paris_month()}
        before = [f"CAfull-a{n:04d}" for n in range(50)]
        during = [f"CAfull-b{n:04d}" for n in range(200)]
        answers = await twilio_calls(service.base_url, before, concurrency=4)
        await wait_for(lambda: service.calls_received(months) == len(before), what="first calls")
        filler = fill(service.data_dir)
        fault_counts.faults_injected += 1
        answers += await twilio_calls(service.base_url, during, concurrency=4, pace_s=0.005)
        await wait_for(
            lambda: service.metric("regulator_storage_errors_total") > 0, what="store errors"
        )
        filler.unlink()  # room again: the writer gets everything through
        await wait_for(
            lambda: service.calls_received(months) == len(before) + len(during),
            timeout_s=30,
            what="calls written after the disk was freed",
        )
        months.add(paris_month())
        check_answers(answers)
        call_ids = before + during
        present = await recorded(service.data_dir / "regulator.sqlite3", call_ids)
        fault_counts.requests_sent = len(answers)
        fault_counts.records_checked = len(call_ids)
        fault_counts.records_lost = len(call_ids) - len(present)
        assert present == set(call_ids)
        assert service.calls_received(months) == len(call_ids)
        service.stop()


async def test_pending_lookup_does_not_wait_behind_a_blocked_batch_write(tmp_path: Path) -> None:
    """Another process (``regulator report``, a migration) holds the database's write
    lock: the writer's batch waits for it (busy_timeout), the caller's look-up does not."""
    db = tmp_path / "regulator.sqlite3"
    store = SqliteStore(db)
    await store.open()
    await store.create_referral(referral("R1"), None)
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        batch = asyncio.create_task(store.record_calls([call(f"CA{n}") for n in range(5000)]))
        await asyncio.sleep(0)  # the batch has the writer and waits for the lock
        async with asyncio.timeout(BUDGET_S):
            assert await store.has_pending_referral(MMG, CALLER)
        assert not batch.done(), "the look-up only answered once the batch was written"
        other.execute("COMMIT")
        assert all(await batch)
    finally:
        other.close()
        await store.close()


async def test_pending_lookup_answers_within_budget_while_the_daily_purge_runs(
    tmp_path: Path,
) -> None:
    """A year of calls of a busy MMG deleted in one transaction takes the writer for
    longer than the look-up's budget; the look-ups answer from their own connections."""
    store = SqliteStore(tmp_path / "regulator.sqlite3")
    await store.open()
    try:
        await store.create_referral(referral("R1"), None)
        old = T0 - timedelta(days=400)
        count = 200_000
        for start in range(0, count, 10_000):
            await store.record_calls(
                [call(f"OLD{n}", at=old) for n in range(start, start + 10_000)]
            )
        purge = asyncio.create_task(store.purge_calls(T0 - timedelta(days=30)))
        await asyncio.sleep(0)  # the purge has the writer
        answered_during_purge = 0
        while not purge.done():
            async with asyncio.timeout(BUDGET_S):
                assert await store.has_pending_referral(MMG, CALLER)
            answered_during_purge += not purge.done()
        assert await purge == count
        assert answered_during_purge > 0, "the look-up waited for the purge to end"
    finally:
        await store.close()
