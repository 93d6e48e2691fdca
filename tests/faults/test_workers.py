"""``regulator serve --workers 2`` as a real process tree: one port, one SQLite store,
SIGHUP and SIGTERM reaching every worker, a killed worker restarted and recovered,
one /metrics scrape summing every worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from regulator.settings import parse_workers
from regulator.web.workers import adopt_orphans, worker_dir
from tests.faults.conftest import (
    FaultCounts,
    Service,
    ServiceFactory,
    check_answers,
    paris_month,
    twilio_calls,
    wait_for,
)
from tests.faults.test_process_faults import recorded

TWO = {"REGULATOR_WORKERS": "2"}


def events(service: Service, name: str) -> list[dict[str, Any]]:
    return [e for e in service.log_events() if e.get("event") == name]


def start_workers(service: Service) -> None:
    """Start; wait until both workers listen (the first one answering /readyz is not
    enough: the other may still be importing)."""
    service.start()
    deadline = time.monotonic() + 30
    while {e.get("worker") for e in events(service, "serving")} != {0, 1}:
        assert time.monotonic() < deadline, service.log()[-3000:]
        time.sleep(0.05)
    time.sleep(0.3)  # "serving" is logged just before the listener opens


def worker_pids(service: Service) -> dict[int, int]:
    """Worker index -> pid of its latest start."""
    pids: dict[int, int] = {}
    for event in events(service, "worker_started"):
        pids[int(event["worker"])] = int(event["pid"])
    return pids


def served_by(service: Service, call_ids: list[str]) -> set[int]:
    """The workers whose canonical log line names one of ``call_ids``."""
    wanted = set(call_ids)
    return {int(e["worker"]) for e in events(service, "webhook") if e.get("call_id") in wanted}


async def test_two_workers_share_one_port_one_sqlite_store_and_one_metrics_scrape(
    service_factory: ServiceFactory, fault_counts: FaultCounts
) -> None:
    service = service_factory(TWO, "two")
    start_workers(service)
    pids = worker_pids(service)
    assert len(set(pids.values())) == 2 and service.process is not None
    assert service.process.pid not in pids.values()  # the supervisor serves nothing
    month = paris_month()
    call_ids = [f"CAwrk{i:04d}" for i in range(600)]
    # Both workers write the one SQLite file at the same time (WAL, busy_timeout).
    answers = await twilio_calls(service.base_url, call_ids, concurrency=16)
    check_answers(answers)
    assert served_by(service, call_ids) == {0, 1}

    # Whichever worker answers the scrape, it counts every worker's calls.
    await wait_for(
        lambda: all(service.metric("regulator_calls_total") == 600 for _ in range(6)),
        timeout_s=10,
        what="every scrape sums both workers",
    )
    await wait_for(lambda: service.calls_received([month]) == 600, what="600 calls in the store")
    assert not events(service, "store_write_failed")
    assert (service.data_dir / "worker-0").is_dir() and (service.data_dir / "worker-1").is_dir()
    service.stop()
    assert service.process.returncode == 0
    fault_counts.requests_sent = 600
    fault_counts.records_checked = 600


async def test_sighup_reloads_every_worker_and_sigterm_loses_no_call(
    service_factory: ServiceFactory, fault_counts: FaultCounts
) -> None:
    service = service_factory(TWO, "hup", is_open=False)  # closed: every call → regulation
    start_workers(service)
    protocol = service.protocols_dir / "nimes.yaml"
    data = yaml.safe_load(protocol.read_text(encoding="utf-8"))
    data["destinations"]["regulation"] = {"number": "+33466000017"}
    protocol.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    loaded_before = len(events(service, "protocols_loaded"))
    service.signal(signal.SIGHUP)  # to the supervisor only
    await wait_for(
        lambda: (
            {e.get("worker") for e in events(service, "protocols_loaded")[loaded_before:]} == {0, 1}
        ),
        timeout_s=10,
        what="both workers reloaded",
    )
    call_ids = [f"CAhup{i:04d}" for i in range(300)]
    answers = await twilio_calls(service.base_url, call_ids, concurrency=16)
    # The new regulation line (not one check_answers knows) from every worker.
    assert all(a.status == 200 and "+33466000017" in a.body for a in answers), answers[0]
    assert served_by(service, call_ids) == {0, 1}

    # SIGTERM right behind a burst: every answered call reaches the store.
    burst = [f"CAterm{i:04d}" for i in range(400)]
    answers = await twilio_calls(service.base_url, burst, concurrency=16)
    assert all(a.status == 200 and "+33466000017" in a.body for a in answers)
    service.signal(signal.SIGTERM)
    assert service.wait(30) == 0
    stopped = events(service, "worker_stopped")
    assert sorted(e["worker"] for e in stopped) == [0, 1]
    assert all(e["exit_code"] == 0 for e in stopped), stopped
    present = await recorded(service.data_dir / "regulator.sqlite3", burst + call_ids)
    assert len(present) == 700, f"{700 - len(present)} answered calls lost"
    fault_counts.requests_sent = 700
    fault_counts.records_checked = 700


async def test_a_worker_killed_mid_load_is_restarted_and_its_journal_recovered(
    service_factory: ServiceFactory, fault_counts: FaultCounts
) -> None:
    service = service_factory(TWO, "kill")
    start_workers(service)
    victim = worker_pids(service)[1]
    call_ids = [f"CAwk{i:05d}" for i in range(800)]
    load = asyncio.create_task(twilio_calls(service.base_url, call_ids, concurrency=16))
    await wait_for(
        lambda: service.metric("regulator_calls_total") >= 250, timeout_s=30, interval_s=0.01
    )
    os.kill(victim, signal.SIGKILL)
    fault_counts.faults_injected += 1
    local = worker_dir(service.data_dir, 1)
    await asyncio.sleep(0.05)  # the kernel reaps it; the supervisor restarts it after 0.5 s
    left = sum(p.read_bytes().count(b"\n") for p in local.glob("journal.*"))
    fault_counts.notes.append(f"{left} items in the dead worker's journal")
    answers = await load
    acknowledged = [a.call_id for a in answers if a.acknowledged]
    assert all(a.status in (200, None) for a in answers), "an HTTP error, not a dead peer"

    await wait_for(lambda: worker_pids(service)[1] != victim, what="worker 1 restarted")
    died = events(service, "worker_died")
    assert died and died[0]["pid"] == victim and died[0]["exit_code"] == -9
    # The new worker 1 replays what the dead one left in its own journal and spool.

    def replayed() -> bool:
        spool = local / "spool.jsonl"
        journal = sum(p.stat().st_size for p in local.glob("journal.*"))
        return journal == 0 and (not spool.exists() or spool.stat().st_size == 0)

    await wait_for(replayed, what="worker 1's journal and spool replayed")
    recovered = sum(
        e["items"] for e in events(service, "journal_recovered") if e.get("worker") == 1
    )
    assert recovered >= left, (recovered, left)
    await wait_for(
        lambda: (
            asyncio.run(recorded(service.data_dir / "regulator.sqlite3", acknowledged))
            == set(acknowledged)
        ),
        timeout_s=20,
        what="every answered call in the store",
    )
    service.stop()
    assert service.process is not None and service.process.returncode == 0
    fault_counts.requests_sent = len(call_ids)
    fault_counts.records_checked = len(acknowledged)


def test_fewer_workers_adopt_what_a_removed_worker_left(tmp_path: Any) -> None:
    """worker-1's journal and spool (a run with 2 workers, killed) go to worker 0's
    spool when the service restarts with 1 worker, and to data_dir's with none."""
    data = tmp_path / "var"
    old = worker_dir(data, 1)
    old.mkdir(parents=True)
    (old / "spool.jsonl").write_bytes(b'{"a":1}\n{"a":2}\n')
    (old / "journal.3").write_bytes(b'{"a":3}\n{"a":4')  # torn by the kill
    (old / "outbox-journal.1").write_bytes(b'{"e":1}\n')
    assert adopt_orphans(data, 1) == 4
    target = worker_dir(data, 0)
    assert (target / "spool.jsonl").read_bytes() == b'{"a":1}\n{"a":2}\n{"a":3}\n'
    assert (target / "spool.jsonl.rejected").read_bytes() == b'{"a":4\n'
    assert (target / "outbox-spool.jsonl").read_bytes() == b'{"e":1}\n'
    assert not old.exists()
    # Back to a single process: worker 0's files come to data_dir itself.
    assert adopt_orphans(data, None) == 4
    assert (data / "spool.jsonl").read_bytes() == b'{"a":1}\n{"a":2}\n{"a":3}\n'


def test_bad_worker_counts_are_refused_naming_the_value(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGULATOR_")}
    env["REGULATOR_DATA_DIR"] = str(tmp_path)
    for argv, extra, expected in [
        (["--workers", "deux"], {}, "réglage --workers invalide : 'deux'"),
        (["--workers", "0"], {}, "--workers invalide : 0 : il faut au moins 1"),
        ([], {"REGULATOR_WORKERS": "-3"}, "REGULATOR_WORKERS invalide : -3"),
        (["--workers", "2"], {"REGULATOR_PORT": "0"}, "--workers demande un port fixe"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "regulator", "serve", *argv],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 1, (argv, done.stderr[-500:])
        assert expected in done.stderr, done.stderr[-500:]
        assert "Traceback" not in done.stderr


def test_auto_is_one_worker_per_core_of_the_affinity_set() -> None:
    assert parse_workers("auto") == len(os.sched_getaffinity(0))
    assert parse_workers(" 3 ") == 3


def test_a_worker_that_cannot_start_stops_the_service_with_its_status(
    service_factory: ServiceFactory,
) -> None:
    """A configuration error every worker meets (here a broken tokens file) is not
    restarted for ever: the supervisor stops the others and exits with that status."""
    service = service_factory(TWO, "broken")
    service.tokens_file.write_text("- {name: [\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "regulator", "serve"],
        env=service.environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "erreur : fichier des jetons invalide" in done.stderr
    assert '"event":"worker_failed_at_start"' in done.stderr


async def test_a_killed_supervisor_leaves_no_worker_holding_the_port(
    service_factory: ServiceFactory,
) -> None:
    """``kill -9`` of the supervisor: the kernel tells each worker (PR_SET_PDEATHSIG),
    which stops gracefully; nothing answers on the port afterwards."""
    service = service_factory(TWO, "orphans")
    start_workers(service)
    pids = list(worker_pids(service).values())
    service.kill()

    def all_gone() -> bool:
        return all(not Path(f"/proc/{pid}").exists() for pid in pids)

    await wait_for(all_gone, timeout_s=20, what="both workers gone")
    assert len(events(service, "stopped")) == 2  # each worker's own graceful stop
    assert service.get_status("/healthz") is None
