"""``make bench``: the webhook path under load, and the other performance targets.

One run, on this machine, in under ten minutes:

1. a private redis-server (unix socket, no persistence) and the service started the
   way production runs it — ``regulator serve``, Redis store, JSON logs to a file,
   Twilio signatures verified, metrics on — pinned to core 0 (``taskset``); load
   generators and Redis on core 1;
2. ``decide`` alone (in process, timeit);
3. the bare aiohttp endpoint (:mod:`benchmarks.bare`, the ceiling of the stack),
   then the service, saturated by ``wrk`` replaying pre-signed Twilio webhooks of
   distinct calls (20 % retries): throughput, and the ratio full / bare;
4. latency at a fixed 1,000 calls/s from the open-loop generator
   (:mod:`benchmarks.openloop`, measured from each request's scheduled time), with
   errors and ``regulator_failsafe_total`` read from ``/metrics``;
5. more calls at saturation up to 1,000,000 in all, then the service's RSS;
6. one month of one MMG seeded with 1,000,000 calls through the store, and the
   time of ``GET /api/v1/reports/{mmg}/{month}``;
7. 200 SSE clients on ``/api/v1/events``: time until all see a new referral;
8. (after 4) a referral POSTed to the service until a second replica's in-memory
   index lists it (:mod:`benchmarks.propagation`).

Results go to ``benchmarks/results.md`` (table: metric, target, measured, pass/fail).
By default the MMGs are forced open for the run (a dated override in a copy of
``protocols/``): the heavier path (voice menu, pending-referral look-up in Redis),
whatever the time of day; ``--state asis`` uses ``protocols/`` unchanged.

    python -m benchmarks.run [--quick] [--calls N] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from benchmarks import fanout, procs, propagation, scaling, workload
from regulator.auth import hash_token

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
LUA = HERE / "wrk_twilio.lua"
TOKENS = {"regulator": "bench-regulator-token", "coordinator": "bench-coordinator-token"}

# Issue 21: full/bare ≥ 0.50, p99 ≤ 5 ms and p99.9 ≤ 20 ms at 1,000 calls/s (0
# fail-safes), 2 workers ≥ 1.7 × 1, a referral seen on another replica within 50 ms
# p99, RSS ≤ 150 MB per worker after 1M calls; decide, report and SSE from earlier issues.
TARGETS = {
    "ratio": 0.50,
    "p99_ms": 5.0,
    "p999_ms": 20.0,
    "decide": 100_000,
    "rss_mb": 150.0,
    "report_s": 1.0,
    "sse_s": 1.0,
    "workers_ratio": 1.70,
    "propagation_p99_ms": propagation.TARGET_P99_MS,  # read there, one figure
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- set-up


def write_tokens(path: Path) -> Path:
    path.write_text(
        f'- {{name: bench-samu, sha256: "{hash_token(TOKENS["regulator"])}", '
        "roles: [regulator]}\n"
        f'- {{name: bench-ars, sha256: "{hash_token(TOKENS["coordinator"])}", '
        "roles: [coordinator]}\n",
        encoding="utf-8",
    )
    return path


def open_protocols(src: Path, dst: Path, now: dt.datetime) -> Path:
    """Copies of the protocols with a last override keeping every MMG open for the run."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        local = now.astimezone(ZoneInfo(data["timezone"])).replace(tzinfo=None)
        frm = (local - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:00")
        to = (local + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:00")
        opening = data.setdefault("opening", {})
        overrides = opening.get("overrides") or []
        overrides.append(
            {"from": frm, "to": to, "open": True, "direct_access": False, "reason": "Banc d'essai"}
        )
        opening["overrides"] = overrides
        (dst / path.name).write_text(
            yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8"
        )
    return dst


class Service:
    """``regulator serve`` on the Redis store, as in production, pinned to core 0."""

    def __init__(
        self,
        workdir: Path,
        redis_url: str,
        protocols_dir: Path,
        log_path: Path,
        *,
        workers: int | None = None,
        cores: Sequence[int] = (procs.SERVICE_CORE,),
    ) -> None:
        """``workers``: run ``serve --workers N`` (benchmarks/scaling.py) on ``cores``."""
        self.workers = workers
        self.cores = tuple(cores)
        self.port = procs.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGULATOR_")}
        env.update(
            {
                "REGULATOR_HOST": "127.0.0.1",
                "REGULATOR_PORT": str(self.port),
                "REGULATOR_REDIS_URL": redis_url,
                "REGULATOR_PROTOCOLS_DIR": str(protocols_dir),
                "REGULATOR_DATA_DIR": str(workdir / "var"),
                "REGULATOR_PUBLIC_URL": workload.PUBLIC_URL,
                "REGULATOR_TWILIO_AUTH_TOKEN": workload.TWILIO_TOKEN,
                "REGULATOR_FAILSAFE_NUMBER": "+33466000099",
                "REGULATOR_LOG_FORMAT": "json",
                "REGULATOR_TOKENS_FILE": str(write_tokens(workdir / "tokens.yaml")),
            }
        )
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> None:
        self._log = self.log_path.open("wb") if str(self.log_path) != os.devnull else None
        out = self._log if self._log is not None else subprocess.DEVNULL
        argv = [*procs.regulator_exe(), "serve"]
        if self.workers is not None:
            argv += ["--workers", str(self.workers)]
        self.proc = subprocess.Popen(
            procs.pinned_set(self.cores, argv),
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
        procs.wait_http(f"{self.base}/readyz", 30, self.proc)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def metrics(self) -> dict[str, float]:
        text = procs.http_get(f"{self.base}/metrics").decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("regulator_failsafe_total"):
                out["failsafe"] = out.get("failsafe", 0.0) + float(line.rsplit(" ", 1)[1])
            elif line.startswith('regulator_webhook_seconds_count{platform="twilio"}'):
                out["webhooks"] = float(line.rsplit(" ", 1)[1])
            elif line.startswith("regulator_storage_errors_total"):
                out["storage_errors"] = out.get("storage_errors", 0.0) + float(
                    line.rsplit(" ", 1)[1]
                )
            elif line.startswith("regulator_spool_pending "):
                out["spool_pending"] = float(line.rsplit(" ", 1)[1])
        return out

    def stop(self) -> int | None:
        code = procs.stop(self.proc)
        if self._log is not None:
            self._log.close()
        return code


# ---------------------------------------------------------------------- load


def run_wrk(
    url: str,
    entries_file: Path,
    *,
    start: int,
    duration_s: float,
    conns: int,
    budget: int = 0,
    server_pid: int | None = None,
    store_pid: int | None = None,
    marker: Path | None = None,
) -> dict[str, Any]:
    """One wrk run (1 thread, core 1); returns its WRK_JSON plus CPU use (wrk's, and the
    service's and its redis-server's when their pids are given).

    CPU shares are over the run itself (``wall_s``): from the moment the script's
    ``init()`` has read its entries and built its requests (it writes a ready file;
    ``init_s`` is how long that took, the service idle meanwhile) to wrk's end."""
    if marker is not None:
        marker.unlink(missing_ok=True)
    ready = entries_file.with_name(f".wrk-ready-{os.getpid()}-{time.monotonic_ns()}")
    argv = procs.pinned(
        procs.LOAD_CORE,
        [
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{max(1, int(duration_s))}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url,
            "--",
            str(entries_file),
            str(start),
            str(budget),
            str(marker or ""),
            "1",
            str(ready),
            # Requests to build before the clock starts: what the run can send (the
            # bare endpoint does ~14,000 a second), the script's cap beyond.
            str(budget or int(duration_s * 16_000) + 1_000),
        ],
    )
    spawned = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wrk_cpu = wrk_cpu0 = 0.0
    try:
        while proc.poll() is None and not ready.exists() and time.monotonic() - spawned < 120:
            time.sleep(0.01)
        loaded = time.monotonic()
        wrk_cpu0 = procs.cpu_seconds(proc.pid) if proc.poll() is None else 0.0
        server_cpu0 = procs.cpu_seconds(server_pid) if server_pid else 0.0
        store_cpu0 = procs.cpu_seconds(store_pid) if store_pid else 0.0
        if marker is not None:
            while proc.poll() is None:
                if marker.exists():
                    wrk_cpu = procs.cpu_seconds(proc.pid)
                    proc.send_signal(signal.SIGINT)
                    break
                time.sleep(0.05)
        else:
            # Sample wrk's CPU just before it ends (its /proc entry goes with it).
            while proc.poll() is None and time.monotonic() - loaded < duration_s - 0.5:
                wrk_cpu = procs.cpu_seconds(proc.pid)
                time.sleep(0.25)
        out, err = proc.communicate(timeout=duration_s + 120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ready.unlink(missing_ok=True)
    wall = time.monotonic() - loaded
    text = out.decode()
    match = re.search(r"^WRK_JSON (.*)$", text, re.M)
    if match is None:
        raise RuntimeError(f"wrk gave no result:\n{text}\n{err.decode()}")
    result: dict[str, Any] = json.loads(match.group(1))
    seconds = result["duration_us"] / 1e6
    result["rate"] = result["requests"] / seconds if seconds else 0.0
    result["init_s"] = round(loaded - spawned, 3)
    result["wall_s"] = wall
    result["wrk_cpu_share"] = round(max(0.0, wrk_cpu - wrk_cpu0) / wall, 2) if wall else 0.0
    if server_pid:
        result["server_cpu_share"] = round((procs.cpu_seconds(server_pid) - server_cpu0) / wall, 2)
    if store_pid and wall:
        result["store_cpu_share"] = round((procs.cpu_seconds(store_pid) - store_cpu0) / wall, 3)
    return result


def run_openloop(port: int, rate: float, duration_s: float, warmup_s: float) -> dict[str, Any]:
    argv = procs.pinned(
        procs.LOAD_CORE,
        [
            procs.python(),
            "-m",
            "benchmarks.openloop",
            "--port",
            str(port),
            "--rate",
            str(rate),
            "--duration",
            str(duration_s),
            "--warmup",
            str(warmup_s),
        ],
    )
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, check=True, timeout=duration_s + 300)
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def start_seeder(redis_url: str, calls: int, month: str, workdir: Path) -> subprocess.Popen[bytes]:
    """``benchmarks.month`` in the background on the load core (output to a file)."""
    argv = procs.pinned(
        procs.LOAD_CORE,
        [
            procs.python(),
            "-m",
            "benchmarks.month",
            "--redis",
            redis_url,
            "--protocols",
            str(ROOT / "protocols"),
            "--calls",
            str(calls),
            "--month",
            month,
            "--batch",
            "1000",
        ],
    )
    out = (workdir / "seed.out").open("wb")
    return subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=out)


def finish_seeder(proc: subprocess.Popen[bytes], workdir: Path, timeout_s: float) -> dict[str, Any]:
    code = proc.wait(timeout_s)
    text = (workdir / "seed.out").read_text()
    if code != 0:
        raise RuntimeError(f"month seeding failed ({code}):\n{text}")
    result: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    return result


def run_json(argv: list[str], timeout_s: float) -> dict[str, Any]:
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, check=False, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"{argv} failed:\n{done.stderr.decode()}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def time_report(base: str, mmg: str, month: str, tries: int = 20) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKENS['coordinator']}"}
    url = f"{base}/api/v1/reports/{mmg}/{month}"
    times: list[float] = []
    body: dict[str, Any] = {}
    for _ in range(tries):
        started = time.perf_counter()
        raw = procs.http_get(url, headers)
        times.append(time.perf_counter() - started)
        body = json.loads(raw)
    ordered = sorted(times)
    return {
        "first_s": round(times[0], 4),
        "median_s": round(ordered[len(ordered) // 2], 4),
        "max_s": round(ordered[-1], 4),
        "calls_received": body.get("calls_received"),
        "persons_seen": body.get("persons_seen", {}).get("total"),
    }


# ---------------------------------------------------------------------- report


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    versions = {}
    for name in ("aiohttp", "uvloop", "redis", "structlog", "orjson"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[name] = version(name)
    redis_v = ""
    with contextlib.suppress(Exception):
        redis_v = subprocess.run(
            ["redis-server", "--version"], capture_output=True, check=False
        ).stdout.decode()
        redis_v = re.search(r"v=(\S+)", redis_v).group(1)  # type: ignore[union-attr]
    wrk_v = ""
    with contextlib.suppress(Exception):
        wrk_v = (
            subprocess.run(["wrk", "--version"], capture_output=True, check=False)
            .stdout.decode()
            .split()[1]
        )
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "libs": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "redis": redis_v,
        "wrk": wrk_v,
    }


def _ok(flag: bool | None) -> str:
    return "—" if flag is None else ("pass" if flag else "**FAIL**")


def rss_row(rss: dict[str, Any], calls: int, budget_s: float) -> tuple[str, str, str, bool | None]:
    """The one-worker RSS row. Short of ``calls``, the time budget stopped the fill:
    the target (after ``calls``) is then not measured, and the row says why."""
    short = rss["calls"] < calls
    return (
        f"Service RSS (one worker) after {rss['calls']:,.0f} calls",
        f"≤ {TARGETS['rss_mb']:.0f} MB after {calls:,}",
        f"{rss['rss_mb']:.0f} MB (peak {rss['hwm_mb']:.0f} MB; at start {rss['start_mb']:.0f} MB)"
        + (f"; the {budget_s:.0f} s budget stopped the fill" if short else ""),
        None if short else rss["rss_mb"] <= TARGETS["rss_mb"],
    )


def store_cpu_row(full: dict[str, Any]) -> tuple[str, str, str, bool | None] | None:
    """Redis's CPU per call at saturation: what sizes the one Redis of a region."""
    share, rate = full.get("store_cpu_share"), full.get("rate")
    if not share or not rate:
        return None
    per_call_us = share / rate * 1e6
    return (
        "Redis CPU per call, full path at saturation (one Redis serves every replica of a region)",
        "—",
        f"{per_call_us:.1f} µs ({share:.2f} core at {rate:,.0f} calls/s: one Redis core "
        f"would take about {1e6 / per_call_us:,.0f} calls/s)",
        None,
    )


def judged(value: float, target: float) -> str:
    """``value`` to two decimals, or more when two would print the target for a value
    short of it (1.698 against 1.70: it fails, and must not read as 1.70)."""
    digits = 2
    while value < target and f"{value:.{digits}f}" == f"{target:.{digits}f}" and digits < 6:
        digits += 1
    return f"{value:.{digits}f}"


def _rounds(w: dict[str, Any]) -> str:
    """How the ratio was read: the median of the alternating rounds' ratios, each
    round's rates (2 workers / 1), and the two rates pooled (benchmarks/scaling.py)."""
    one, two = w["1"], w["2"]
    pairs = list(zip(two.get("rounds", []), one.get("rounds", []), strict=False))
    pooled = f"{two['rate']:,.0f} / {one['rate']:,.0f} calls/s"
    if len(pairs) < 2 or "pooled_ratio" not in w:
        return pooled
    rounds = ", ".join(f"{a:,} / {b:,}" for a, b in pairs)
    return (
        f"median of {len(pairs)} alternating rounds: {rounds} calls/s; "
        f"pooled {pooled} = {w['pooled_ratio']:.2f}"
    )


def _others(one: dict[str, Any], two: dict[str, Any]) -> str:
    """What else took the two cores in each run: Redis and wrk, in cores."""
    if one.get("redis_cpu_cores") is None or two.get("redis_cpu_cores") is None:
        return ""
    return (
        f"; Redis {two['redis_cpu_cores']:.2f} / {one['redis_cpu_cores']:.2f}, "
        f"wrk {two['wrk_cpu_share']:.2f} / {one['wrk_cpu_share']:.2f} cores"
    )


def scaling_rows(w: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """The rows of the 1 → 2 workers phase (benchmarks/scaling.py)."""
    rows: list[tuple[str, str, str, bool | None]] = []
    one, two = w.get("1", {}), w.get("2", {})
    if "ratio" in w:
        rows.append(
            (
                "Saturated throughput, `serve --workers 2` / `--workers 1` (both on cores 0-1; "
                "wrk and Redis on core 1)",
                f"≥ {TARGETS['workers_ratio']:.2f}",
                f"{judged(w['ratio'], TARGETS['workers_ratio'])} ({_rounds(w)}; service "
                f"CPU {two['service_cpu_cores']:.2f} / {one['service_cpu_cores']:.2f} cores; "
                f"per CPU-second {w['efficiency']:.2f}{_others(one, two)})",
                w["ratio"] >= TARGETS["workers_ratio"],
            )
        )
    if two.get("rss_mb"):
        worst = max(two["rss_mb"])
        rows.append(
            (
                f"RSS per worker, `--workers 2`, after {two['calls']:,.0f} calls in all",
                f"≤ {TARGETS['rss_mb']:.0f} MB",
                " / ".join(f"{mb:.0f} MB" for mb in two["rss_mb"]),
                worst <= TARGETS["rss_mb"],
            )
        )
    return rows


def render(results: dict[str, Any], info: dict[str, str], args: argparse.Namespace) -> str:
    r = results
    bare = r.get("bare_saturated", {})
    full = r.get("full_saturated", {})
    ol = r.get("fixed_rate", {})
    rows: list[tuple[str, str, str, bool | None]] = []
    if bare and full:
        ratio = full["rate"] / bare["rate"] if bare["rate"] else 0.0
        rows.append(
            (
                "Saturated throughput, full webhook path / bare aiohttp endpoint",
                f"≥ {TARGETS['ratio']:.2f}",
                f"{judged(ratio, TARGETS['ratio'])} ({full['rate']:,.0f} / {bare['rate']:,.0f} "
                "req/s)",
                ratio >= TARGETS["ratio"],
            )
        )
        rows.append(
            (
                "Saturated throughput, full webhook path",
                "—",
                f"{full['rate']:,.0f} calls/s (p99 {full['latency_us']['p99'] / 1000:.1f} ms "
                f"at {args.conns} connections)",
                None,
            )
        )
        store_row = store_cpu_row(full)
        if store_row is not None:
            rows.append(store_row)
    if ol:
        lat = ol["latency_ms"]
        rate = f"{args.rate:,.0f} calls/s"
        rows += [
            (f"Latency at {rate}, p50", "—", f"{lat['p50']:.2f} ms", None),
            (
                f"Latency at {rate}, p99",
                f"≤ {TARGETS['p99_ms']:.0f} ms",
                f"{lat['p99']:.2f} ms",
                lat["p99"] <= TARGETS["p99_ms"],
            ),
            (
                f"Latency at {rate}, p99.9",
                f"≤ {TARGETS['p999_ms']:.0f} ms",
                f"{lat['p999']:.2f} ms",
                lat["p999"] <= TARGETS["p999_ms"],
            ),
            (
                f"Errors at {rate} (non-200, connection, missing)",
                "0",
                str(ol["non_200"] + ol["errors"] + ol["missing"]),
                ol["non_200"] + ol["errors"] + ol["missing"] == 0,
            ),
        ]
    if "failsafe_fixed_rate" in r:
        rows.append(
            (
                f"Fail-safes during the {args.rate:,.0f} calls/s run (regulator_failsafe_total)",
                "0",
                f"{r['failsafe_fixed_rate']:.0f} (whole run: {r.get('failsafe_total', 0):.0f})",
                r["failsafe_fixed_rate"] == 0,
            )
        )
    if "decide" in r:
        d = r["decide"]
        rows.append(
            (
                "`decide` alone",
                f"≥ {TARGETS['decide']:,}/s",
                f"{d['decisions_per_s']:,}/s ({d['us_per_decision']} µs; "
                f"never-seen caller: {d['cold_caller_decisions_per_s']:,}/s)",
                d["decisions_per_s"] >= TARGETS["decide"],
            )
        )
    if "rss" in r:
        rows.append(rss_row(r["rss"], args.calls, args.budget_seconds))
    rows += scaling_rows(r.get("workers", {}))
    if "report" in r:
        rep = r["report"]
        rows.append(
            (
                f"Month report, {rep['calls_received']:,} calls (GET /api/v1/reports)",
                f"≤ {TARGETS['report_s']:.0f} s",
                f"{rep['median_s'] * 1000:.1f} ms median, {rep['max_s'] * 1000:.1f} ms max "
                f"(first {rep['first_s'] * 1000:.1f} ms)",
                rep["max_s"] <= TARGETS["report_s"],
            )
        )
    if "sse" in r:
        s = r["sse"]
        rows.append(
            (
                f"SSE fan-out to {s['clients']} clients (all received)",
                f"< {TARGETS['sse_s']:.0f} s",
                f"p50 {s['all_received_ms']['p50']} ms, max {s['all_received_ms']['max']} ms "
                f"({s['rounds']} referrals, {s['missing']} missed)",
                s["all_received_ms"]["max"] is not None
                and s["all_received_ms"]["max"] < TARGETS["sse_s"] * 1000
                and s["missing"] == 0,
            )
        )
    rows += propagation.rows(r)
    lines = [
        "| metric | target | measured | result |",
        "| --- | --- | --- | --- |",
        *(f"| {m} | {t} | {v} | {_ok(ok)} |" for m, t, v, ok in rows),
    ]
    when = r["date"]
    state = (
        "forced open for the run (voice menu + pending-referral look-up, from the in-memory index)"
        if args.state == "open"
        else "in their real opening state"
    )
    notes = [
        f"Measured {when} by `make bench` (`python -m benchmarks.run"
        f"{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}`) in {r['elapsed_s']:.0f} s.",
        "",
        f"Machine: {info['nproc']} cores ({info['cpu']}), {info['memory']}, Linux "
        f"{info['kernel']}; Python {info['python']}; {info['libs']}; redis-server "
        f"{info['redis']}; wrk {info['wrk']}. Load average at start: {r['loadavg']}.",
        "",
        "Set-up: `regulator serve` (Redis store on a private unix socket, JSON logs to a "
        f"file, Twilio signatures verified, `/metrics` on) pinned to core "
        f"{procs.SERVICE_CORE}; Redis and the load generators on core {procs.LOAD_CORE}. "
        f"MMGs {state}. "
        "Each request is a pre-signed Twilio voice webhook (25 form fields) of a distinct "
        f"call, {workload.RETRY_SHARE:.0%} of them retries of an earlier call, spread over the "
        f"MMG numbers. Saturation: wrk, 1 thread, {args.conns} keep-alive connections, "
        f"{args.sat_seconds:.0f} s per endpoint. Fixed rate: `benchmarks/openloop.py` "
        "(open loop, latency from each request's scheduled send time — no coordinated "
        "omission).",
    ]
    if full:
        notes += [
            "",
            f"Load generators were not the bottleneck: wrk used {full.get('wrk_cpu_share', 0):.0%} "
            f"of core 1 while the service used {full.get('server_cpu_share', 0):.0%} of core 0 "
            f"at saturation; the open-loop generator's send lag was p99 "
            f"{ol.get('send_lag_ms', {}).get('p99', 0)} ms.",
        ]
    if "month_seed" in r:
        seed = r["month_seed"]
        notes += [
            "",
            f"The report's month was seeded with {seed['calls']:,} calls through "
            f"`RedisStore.record_calls` ({seed['seed_calls_s']:.0f} s, while the saturation "
            "phase up to the RSS reading ran) and "
            f"{seed['visits']:,} visits. The bare endpoint parses the form with the standard "
            "library's `parse_qsl`.",
        ]
    if "log_lines" in r:
        notes += [
            "",
            f"Canonical log lines written: {r['log_lines']:,} for {r.get('webhooks', 0):,.0f} "
            "webhooks.",
        ]
    raw = json.dumps(r, indent=1, sort_keys=True, default=str)
    return (
        "# Benchmark results\n\n"
        + "\n".join(lines)
        + "\n\n"
        + "\n".join(notes)
        + "\n\n<details><summary>Raw figures</summary>\n\n```json\n"
        + raw
        + "\n```\n\n</details>\n"
    )


# ---------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1_000_000, help="calls driven in all (RSS)")
    parser.add_argument("--month-calls", type=int, default=1_000_000)
    parser.add_argument("--sat-seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--rate-seconds", type=float, default=30.0)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--sse-clients", type=int, default=200)
    parser.add_argument("--state", choices=("open", "asis"), default="open")
    parser.add_argument("--log-file", help="service log (default: in the temp dir)")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=570.0,
        help="the whole run's time (the fill phase is cut short to end within it)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument(
        "--skip", default="", help="comma list: decide,bare,fill,month,sse,workers,propagation"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.month_calls = 60_000, 50_000
        args.sat_seconds, args.rate_seconds = 5.0, 8.0
    skip = set(filter(None, args.skip.split(",")))
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    procs.pin_self(procs.LOAD_CORE)
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    info = machine()
    workdir = Path(tempfile.mkdtemp(prefix="regulator-bench-"))
    log(f"work dir {workdir}")
    redis = procs.Redis(workdir)
    service: Service | None = None
    bare: subprocess.Popen[bytes] | None = None
    children: list[subprocess.Popen[bytes]] = []

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # Stopped from outside (SIGTERM, or SIGINT in a background job): still clean up.
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    try:
        protocols_dir = ROOT / "protocols"
        if args.state == "open":
            protocols_dir = open_protocols(
                protocols_dir, workdir / "protocols", dt.datetime.now(dt.UTC)
            )

        # Pre-signed workload for wrk (more than enough entries for every wrk phase).
        entries_file = workdir / "entries.txt"
        t = time.monotonic()
        n_entries = workload.write_wrk_file(entries_file, workload.entries(args.calls, tag="wk"))
        log(f"{n_entries:,} signed requests written in {time.monotonic() - t:.1f} s")

        if "decide" not in skip:
            log("decide alone")
            results["decide"] = run_json(
                procs.pinned(
                    procs.SERVICE_CORE,
                    [
                        procs.python(),
                        "-m",
                        "benchmarks.decide",
                        "--protocols",
                        str(ROOT / "protocols"),
                    ],
                ),
                300,
            )
            log(f"  {results['decide']}")

        if "bare" not in skip:
            port = procs.free_port()
            bare = subprocess.Popen(
                procs.pinned(
                    procs.SERVICE_CORE,
                    [procs.python(), "-m", "benchmarks.bare", "--port", str(port)],
                ),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
            )
            procs.wait_http(f"http://127.0.0.1:{port}/healthz", 20, bare)
            url = f"http://127.0.0.1:{port}{workload.VOICE_PATH}"
            log("bare endpoint: warm-up")
            run_wrk(url, entries_file, start=0, duration_s=3, conns=args.conns)
            log("bare endpoint: saturation")
            results["bare_saturated"] = run_wrk(
                url,
                entries_file,
                start=0,
                duration_s=args.sat_seconds,
                conns=args.conns,
                server_pid=bare.pid,
            )
            log(f"  {results['bare_saturated']['rate']:,.0f} req/s")
            procs.stop(bare)
            bare = None

        redis.start()
        log_path = Path(args.log_file) if args.log_file else workdir / "service.log"
        service = Service(workdir, redis.url, protocols_dir, log_path)
        service.start()
        results["rss_start_kb"] = procs.memory_kb(service.pid)
        url = f"{service.base}{workload.VOICE_PATH}"
        offset = 0
        log("service: warm-up")
        warm = run_wrk(url, entries_file, start=offset, duration_s=3, conns=args.conns)
        offset += warm["sent"]
        log("service: saturation")
        full = run_wrk(
            url,
            entries_file,
            start=offset,
            duration_s=args.sat_seconds,
            conns=args.conns,
            server_pid=service.pid,
            store_pid=redis.pid,
        )
        offset += full["sent"]
        results["full_saturated"] = full
        log(f"  {full['rate']:,.0f} calls/s, cpu {full.get('server_cpu_share')}")
        time.sleep(1.0)  # let the writer drain

        before = service.metrics()
        log(f"service: fixed rate {args.rate:,.0f}/s for {args.rate_seconds:.0f} s")
        results["fixed_rate"] = run_openloop(service.port, args.rate, args.rate_seconds + 2, 2.0)
        after = service.metrics()
        results["failsafe_fixed_rate"] = after.get("failsafe", 0) - before.get("failsafe", 0)
        log(f"  {results['fixed_rate']['latency_ms']} failsafes {results['failsafe_fixed_rate']}")

        if "propagation" not in skip:  # benchmarks/propagation.py
            log("referral propagation to a second replica's index")
            results["propagation"] = propagation.measure(
                service.base, redis.url, TOKENS["regulator"], workdir
            )
            log(f"  {results['propagation']}")

        month = "2026-10"
        seeder: subprocess.Popen[bytes] | None = None
        if "month" not in skip:
            # Seeded through Redis while the fill phase runs (nothing is measured
            # then but the service's memory): saves a minute or more.
            log(f"month report: seeding {args.month_calls:,} calls (in the background)")
            seeder = start_seeder(redis.url, args.month_calls, month, workdir)
            children.append(seeder)
        if "fill" not in skip:
            remaining = int(args.calls - after.get("webhooks", 0))
            # What the phases after the fill take (report, SSE, 1 → 2 workers): the
            # fill gets the rest of the budget, so the run stays under ten minutes
            # on a slower machine too (and says so if the fill came short of --calls).
            reserve = 25.0 + (0.0 if "workers" in skip else 75.0)
            fill_s = max(10.0, args.budget_seconds - (time.monotonic() - started) - reserve)
            if remaining > 0:
                log(f"service: {remaining:,} more calls at saturation (at most {fill_s:.0f} s)")
                results["fill"] = run_wrk(
                    url,
                    entries_file,
                    start=offset,
                    duration_s=fill_s,
                    conns=args.conns,
                    budget=remaining,
                    server_pid=service.pid,
                    marker=workdir / "wrk.done",
                )
                log(f"  {results['fill']['rate']:,.0f} calls/s")
            time.sleep(2.0)
        mem = procs.memory_kb(service.pid)
        m = service.metrics()
        results["webhooks"] = m.get("webhooks", 0)
        results["rss"] = {
            "calls": m.get("webhooks", 0),
            "rss_mb": mem.get("VmRSS", 0) / 1024,
            "hwm_mb": mem.get("VmHWM", 0) / 1024,
            "start_mb": results["rss_start_kb"].get("VmRSS", 0) / 1024,
        }
        log(f"  RSS {results['rss']}")

        if seeder is not None:
            results["month_seed"] = finish_seeder(seeder, workdir, timeout_s=900)
            log(f"  {results['month_seed']}")
            results["report"] = time_report(service.base, "nimes", month)
            log(f"  {results['report']}")

        if "sse" not in skip:
            log(f"SSE fan-out to {args.sse_clients} clients")
            results["sse"] = asyncio.run(
                fanout.measure(service.base, TOKENS["regulator"], clients=args.sse_clients)
            )
            log(f"  {results['sse']}")

        final = service.metrics()
        results["failsafe_total"] = final.get("failsafe", 0)
        results["storage_errors"] = final.get("storage_errors", 0)
        results["spool_pending"] = final.get("spool_pending", 0)
        with contextlib.suppress(Exception):
            results["redis_used_mb"] = round(redis.used_memory_mb(), 1)
        results["service_exit"] = service.stop()
        service = None
        if log_path.exists():
            with log_path.open("rb") as fh:
                results["log_lines"] = sum(1 for line in fh if b'"event":"webhook"' in line)

        if "workers" not in skip:
            # A Redis of its own, empty, as a new deployment's: the 1.1 GB the earlier
            # phases left (2M calls) made Redis take CPU from the second worker's core.
            redis.stop()
            redis = procs.Redis(workdir / "scaling")
            redis.start()
            log("scaling: --workers 1 then --workers 2, saturated, on both cores")
            results["workers"] = scaling.measure(
                workdir,
                redis.url,
                protocols_dir,
                entries_file,
                sat_seconds=args.sat_seconds,
                conns=args.conns,
                redis_pid=redis.pid,
            )
            log(f"  {results['workers']}")
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        procs.stop(bare)
        if service is not None:
            service.stop()
        redis.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    results["elapsed_s"] = time.monotonic() - started
    text = render(results, info, args)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    log(f"written {args.out} in {results['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
