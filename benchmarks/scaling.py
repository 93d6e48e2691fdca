"""Scaling from 1 to 2 workers: ``regulator serve --workers 1`` then ``--workers 2``,
each saturated by wrk on the full Twilio path (Redis store), on both cores.

Both runs get the same cores (``taskset -c 0,1``), the same Redis (on core 1, a key
prefix of their own so every call is new) and the same pre-signed requests; wrk
stays on core 1 as in the other phases. With two cores and the load generator and
Redis on one of them, two workers compete with wrk and Redis for core 1: the CPU
shares reported next to the rates say how much each worker got. After each run the
RSS of every worker is read (``VmRSS``; one process per worker, the supervisor
excluded).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks import procs

#: Both cores of the benchmark machine, for both runs.
CORES = (procs.SERVICE_CORE, procs.LOAD_CORE)


def _wait_workers(service: Any, count: int, timeout_s: float = 60.0) -> list[int]:
    """The workers' pids once all ``count`` are listening (their "serving" lines)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = service.log_path.read_bytes() if service.log_path.exists() else b""
        if text.count(b'"event":"serving"') >= count:
            time.sleep(0.5)  # "serving" comes just before the listener opens
            return procs.children(service.pid) if count > 1 else [service.pid]
        time.sleep(0.1)
    raise RuntimeError(f"{count} workers not serving after {timeout_s} s")


def measure(
    workdir: Path,
    redis_url: str,
    protocols_dir: Path,
    entries_file: Path,
    *,
    sat_seconds: float,
    conns: int,
    counts: tuple[int, ...] = (1, 2),
) -> dict[str, Any]:
    """One saturated run per worker count; the rates, CPU shares, RSS and the ratio."""
    from benchmarks.run import Service, run_wrk

    out: dict[str, Any] = {}
    for count in counts:
        service = Service(
            workdir,
            redis_url,
            protocols_dir,
            workdir / f"service-workers-{count}.log",
            workers=count,
            cores=CORES,
        )
        service.env["REGULATOR_REDIS_PREFIX"] = f"scaling{count}"
        service.env["REGULATOR_DATA_DIR"] = str(workdir / f"var-workers-{count}")
        try:
            service.start()
            pids = _wait_workers(service, count)
            url = f"{service.base}/hooks/twilio/voice"
            warm = run_wrk(url, entries_file, start=0, duration_s=3, conns=conns)
            cpu0 = sum(procs.cpu_seconds(pid) for pid in pids)
            started = time.monotonic()
            result = run_wrk(
                url, entries_file, start=warm["sent"], duration_s=sat_seconds, conns=conns
            )
            wall = time.monotonic() - started
            cpu = sum(procs.cpu_seconds(pid) for pid in pids) - cpu0
            time.sleep(1.0)  # the writers drain
            calls = service.metrics().get("webhooks", 0.0)
            out[str(count)] = {
                "rate": result["rate"],
                "p99_ms": result["latency_us"]["p99"] / 1000,
                "errors": sum(result["errors"].values()),  # bad statuses included
                "service_cpu_cores": round(cpu / wall, 2) if wall else 0.0,
                "wrk_cpu_share": result["wrk_cpu_share"],
                "calls": calls,
                "rss_mb": [round(procs.memory_kb(pid).get("VmRSS", 0) / 1024, 1) for pid in pids],
            }
        finally:
            out.setdefault(str(count), {})["exit"] = service.stop()
    one, two = out.get("1", {}).get("rate"), out.get("2", {}).get("rate")
    if one and two:
        out["ratio"] = two / one
        cores_1 = out["1"]["service_cpu_cores"] or 1.0
        cores_2 = out["2"]["service_cpu_cores"] or 1.0
        # calls per CPU-second of the service: 1.0 means the workers cost nothing extra
        out["efficiency"] = (two / cores_2) / (one / cores_1)
    return out
