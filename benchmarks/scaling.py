"""Scaling from 1 to 2 workers: ``regulator serve --workers 1`` and ``--workers 2``,
each saturated by wrk on the full Twilio path (Redis store), on both cores, in
alternating rounds.

Both runs get the same cores (``taskset -c 0,1``), the same Redis (on core 1, a key
prefix of their own so every call is new) and the same pre-signed requests; wrk
stays on core 1 as in the other phases. With two cores and the load generator and
Redis on one of them, two workers compete with wrk and Redis for core 1: the CPU
shares reported next to the rates say how much each worker got, and Redis's and
wrk's what they took. After the last round the RSS of every worker is read
(``VmRSS``; one process per worker, the supervisor excluded).
"""

from __future__ import annotations

import statistics
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
    redis_pid: int | None = None,
    rounds: int = 4,
) -> dict[str, Any]:
    """Saturated runs of each worker count; the rates, CPU shares, RSS and the ratio.

    Both services run side by side (idle when not loaded, each on a key prefix and a
    data dir of its own), and their runs alternate: ``rounds`` rounds of
    ``sat_seconds / rounds`` each (1, 2, 1, 2… workers), so that a slow patch of the
    shared machine weighs on both counts alike instead of on one. Each count's rate is
    its requests over its seconds, all rounds together; ``rounds`` keeps each round's.
    The ratio is the median of the rounds' ratios (two workers over the one worker of
    the same round): a slow patch that hits one run moves one round's ratio, not the
    result; ``pooled_ratio`` is the ratio of the two rates.
    ``redis_pid``: the store's redis-server, whose CPU share is reported beside the
    service's and wrk's (the three share the two cores)."""
    from benchmarks.run import Service, run_wrk

    out: dict[str, Any] = {}
    services: dict[int, Service] = {}
    pids: dict[int, list[int]] = {}
    sums: dict[int, dict[str, float]] = {}
    sent = 0
    try:
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
            services[count] = service
            service.start()
            pids[count] = _wait_workers(service, count)
            warm = run_wrk(
                f"{service.base}/hooks/twilio/voice",
                entries_file,
                start=sent,
                duration_s=3,
                conns=conns,
            )
            sent += warm["sent"]
            sums[count] = dict.fromkeys(
                ("requests", "seconds", "wall", "cpu", "redis", "wrk", "errors", "p99"), 0.0
            )
        per_round = max(1.0, sat_seconds / rounds)
        for _ in range(rounds):
            for count in counts:
                acc = sums[count]
                cpu0 = _cpu(pids[count])
                idle = [pid for other in counts if other != count for pid in pids[other]]
                idle0 = _cpu(idle)
                result = run_wrk(
                    f"{services[count].base}/hooks/twilio/voice",
                    entries_file,
                    start=sent,
                    duration_s=per_round,
                    conns=conns,
                    store_pid=redis_pid,
                )
                # The run itself: not wrk's start-up (reading and building its
                # requests), during which the service is idle.
                wall = result["wall_s"]
                sent += result["sent"]
                acc["requests"] += result["requests"]
                acc["seconds"] += result["duration_us"] / 1e6
                acc["wall"] += wall
                acc["cpu"] += _cpu(pids[count]) - cpu0
                # What the services not under load took meanwhile (their timers).
                idle_share = (_cpu(idle) - idle0) / wall
                out["idle_cpu_cores"] = max(out.get("idle_cpu_cores", 0.0), round(idle_share, 3))
                acc["redis"] += result.get("store_cpu_share", 0.0) * wall
                acc["wrk"] += result["wrk_cpu_share"] * wall
                acc["errors"] += sum(result["errors"].values())  # bad statuses included
                acc["p99"] = max(acc["p99"], result["latency_us"]["p99"] / 1000)
                out.setdefault(str(count), {}).setdefault("rounds", []).append(
                    round(result["rate"])
                )
        time.sleep(1.0)  # the writers drain
        for count in counts:
            acc, wall = sums[count], sums[count]["wall"]
            out[str(count)].update(
                {
                    "rate": acc["requests"] / acc["seconds"] if acc["seconds"] else 0.0,
                    "p99_ms": acc["p99"],
                    "errors": int(acc["errors"]),
                    "service_cpu_cores": round(acc["cpu"] / wall, 2) if wall else 0.0,
                    "wrk_cpu_share": round(acc["wrk"] / wall, 2) if wall else 0.0,
                    "redis_cpu_cores": round(acc["redis"] / wall, 2)
                    if wall and redis_pid
                    else None,
                    "calls": services[count].metrics().get("webhooks", 0.0),
                    "rss_mb": [
                        round(procs.memory_kb(pid).get("VmRSS", 0) / 1024, 1) for pid in pids[count]
                    ],
                }
            )
    finally:
        for count, service in services.items():
            out.setdefault(str(count), {})["exit"] = service.stop()
    one, two = out.get("1", {}).get("rate"), out.get("2", {}).get("rate")
    if one and two:
        out.update(read_rounds(out["1"], out["2"]))
        cores_1 = out["1"]["service_cpu_cores"] or 1.0
        cores_2 = out["2"]["service_cpu_cores"] or 1.0
        # calls per CPU-second of the service: 1.0 means the workers cost nothing extra
        out["efficiency"] = (two / cores_2) / (one / cores_1)
    return out


def _cpu(pids: list[int]) -> float:
    """The CPU seconds the processes ``pids`` have used so far, together."""
    return sum(procs.cpu_seconds(pid) for pid in pids)


def read_rounds(one: dict[str, Any], two: dict[str, Any]) -> dict[str, Any]:
    """The ratio of two workers to one from their runs (``rate``: all rounds pooled;
    ``rounds``: each round's rate): the median of the rounds' ratios, each round's
    two-worker rate over its one-worker rate, with the pooled ratio beside it."""
    pairs = zip(two.get("rounds", []), one.get("rounds", []), strict=False)
    ratios = [round(b / a, 3) for b, a in pairs if a]
    pooled = two["rate"] / one["rate"]
    return {
        "round_ratios": ratios,
        "pooled_ratio": pooled,
        "ratio": statistics.median(ratios) if ratios else pooled,
    }
