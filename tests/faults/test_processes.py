"""Whole processes: replicas sharing Redis, protocol hot reload, the reporting CLI."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import yaml

from regulator.core.labels import month_label
from regulator.protocols import load_protocols
from tests.faults.conftest import (
    FaultCounts,
    ServiceFactory,
    check_answers,
    paris_month,
    twilio_calls,
    wait_for,
)
from tests.support.redis_server import RedisServer

REPORT = [sys.executable, "-m", "regulator", "report", "--mmg", "nimes", "--month"]


async def test_two_replicas_on_one_redis_receiving_the_same_1000_calls_report_1000(
    service_factory: ServiceFactory,
    redis_server_factory: Callable[..., RedisServer],
    fault_counts: FaultCounts,
) -> None:
    redis = redis_server_factory()
    url = redis.url
    env = {"REGULATOR_REDIS_URL": url, "REGULATOR_REDIS_PREFIX": "replicas"}
    first = service_factory(env, "replica-1")
    second = service_factory(env, "replica-2")
    first.start()
    second.start()
    month = paris_month()
    call_ids = [f"CArep{i:04d}" for i in range(1000)]
    # Each call is sent to both replicas, at the same time (a platform retry landing
    # on the other replica behind the load balancer).
    answers_1, answers_2 = await asyncio.gather(
        twilio_calls(first.base_url, call_ids, concurrency=8),
        twilio_calls(second.base_url, call_ids, concurrency=8),
    )
    check_answers(answers_1)
    check_answers(answers_2)

    def settled() -> bool:
        return first.calls_received([month]) == 1000 == second.calls_received([month])

    await wait_for(settled, timeout_s=30, what="both replicas report 1000 calls")
    fault_counts.requests_sent = 2000
    fault_counts.records_checked = 1000


async def test_sighup_reload_refuses_a_broken_file_and_applies_a_fixed_one(
    service_factory: ServiceFactory,
) -> None:
    service = service_factory(name="reload", is_open=False)  # closed: every call → regulation
    service.start()
    protocol = service.protocols_dir / "nimes.yaml"
    good = protocol.read_text(encoding="utf-8")

    async def dialled(call_id: str) -> str:
        (answer,) = await twilio_calls(service.base_url, [call_id])
        assert answer.status == 200
        assert "<Dial" in answer.body, answer.body
        return answer.body

    assert "+33466000015" in await dialled("CAreload1")
    reloads_ok = service.metric("regulator_protocol_reloads_total")

    # A broken edit: refused, logged, counted; the previous protocol stays in force.
    broken = yaml.safe_load(good)
    broken["opening"]["weekdays"] = ["20:00-25:00"]
    protocol.write_text(yaml.safe_dump(broken, allow_unicode=True), encoding="utf-8")
    service.signal(signal.SIGHUP)

    def refused() -> bool:
        return any(e.get("event") == "protocol_reload_failed" for e in service.log_events())

    await wait_for(refused, timeout_s=10, what="reload refused")
    assert "+33466000015" in await dialled("CAreload2")
    assert service.get_status("/readyz") == 200
    errors = [e for e in service.log_events() if e.get("event") == "protocol_reload_failed"]
    assert "25:00" in orjson.dumps(errors[-1]).decode()

    # A valid edit (a new regulation line) is applied without restart.
    data = yaml.safe_load(good)
    data["destinations"]["regulation"] = {"number": "+33466000017"}
    protocol.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    load_protocols(service.protocols_dir)  # the file itself is valid
    service.signal(signal.SIGHUP)

    def applied() -> bool:
        return service.metric("regulator_protocol_reloads_total") > reloads_ok + 1

    await wait_for(applied, timeout_s=10, what="reload applied")
    body = await dialled("CAreload3")
    assert "+33466000017" in body


async def test_file_watch_reloads_protocols_without_a_signal(
    service_factory: ServiceFactory,
) -> None:
    service = service_factory({"REGULATOR_WATCH_PROTOCOLS": "true"}, "watch", is_open=False)
    service.start()
    protocol = service.protocols_dir / "nimes.yaml"
    data = yaml.safe_load(protocol.read_text(encoding="utf-8"))
    data["destinations"]["regulation"] = {"number": "+33466000017"}
    await asyncio.sleep(0.05)  # a different mtime even on coarse file systems
    protocol.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")

    async def routed_to_new_line() -> bool:
        (answer,) = await twilio_calls(service.base_url, [f"CAwatch{time.monotonic_ns()}"])
        return "+33466000017" in answer.body

    deadline = time.monotonic() + 15
    while not await routed_to_new_line():
        assert time.monotonic() < deadline, "the file watch did not reload the protocol"
        await asyncio.sleep(0.5)


def test_report_and_export_cli_read_what_the_service_recorded(
    service_factory: ServiceFactory,
) -> None:
    service = service_factory(name="cli")
    service.start()
    month = paris_month()
    answers = asyncio.run(twilio_calls(service.base_url, [f"CAcli{i}" for i in range(25)]))
    check_answers(answers)
    asyncio.run(wait_for(lambda: service.calls_received([month]) == 25, what="25 recorded"))
    service.stop()
    env = service.environment()
    report = subprocess.run(
        [*REPORT, month],
        env=env,
        cwd=service.workdir,
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert orjson.loads(report.stdout)["calls_received"] == 25
    csv = subprocess.run(
        [*REPORT, month, "--format", "csv"],
        env=env,
        cwd=service.workdir,
        capture_output=True,
        check=True,
        timeout=60,
        text=True,
    )
    # French spreadsheet conventions: ";" between label, value and key.
    assert "Nombre d'appels reçus à la MMG par mois;25;calls_received" in csv.stdout
    out = Path(service.workdir) / "export.csv"
    year = month[:4]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "regulator",
            "export",
            "--year",
            year,
            "--format",
            "csv",
            "-o",
            str(out),
        ],
        env=env,
        cwd=service.workdir,
        capture_output=True,
        check=True,
        timeout=60,
    )
    lines = out.read_text(encoding="utf-8-sig").splitlines()
    assert len(lines) == 1 + 12 + 1  # header, 12 months of the one MMG served here, total
    row = next(line for line in lines if line.startswith(f"nimes;{month_label(month)};"))
    header = lines[0].split(";")
    column = header.index("Nombre d'appels reçus à la MMG par mois")
    assert row.split(";")[column] == "25"
    assert lines[-1].split(";")[:2] == ["nimes", f"Total {year}"]
    assert lines[-1].split(";")[column] == "25"
