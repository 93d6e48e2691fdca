"""Profile the service under saturation: where does a webhook's CPU go?

Starts Redis and ``regulator serve`` exactly as :mod:`benchmarks.run` does, drives
it with wrk at saturation and samples it with ``py-spy`` (optional dependency:
``pip install py-spy``), then prints the functions with the most samples, inclusive
("total") and exclusive ("self"), and writes the collapsed stacks (for
``flamegraph.pl`` or speedscope.app) next to the output.

    python -m benchmarks.profile [--seconds 20] [--out /tmp/regulator.prof]
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks import procs, workload
from benchmarks.run import Service, open_protocols, run_wrk

ROOT = Path(__file__).resolve().parents[1]


def summarise(collapsed: Path, top: int) -> str:
    total: Counter[str] = Counter()
    own: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        # One entry per function: drop the line number of each frame.
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    out = [f"{samples} samples", "", "inclusive:"]
    out += [f"{100 * n / samples:6.1f}%  {f}" for f, n in total.most_common(top)]
    out += ["", "self:"]
    out += [f"{100 * n / samples:6.1f}%  {f}" for f, n in own.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--calls", type=int, default=300_000)
    parser.add_argument("--rate", type=int, default=997, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "regulator.prof")
    parser.add_argument("--log-file", default=None)
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("py-spy not found: pip install py-spy")
    workdir = Path(tempfile.mkdtemp(prefix="regulator-prof-"))
    redis = procs.Redis(workdir)
    service: Service | None = None
    try:
        protocols = open_protocols(
            ROOT / "protocols", workdir / "protocols", dt.datetime.now(dt.UTC)
        )
        entries = workdir / "entries.txt"
        workload.write_wrk_file(entries, workload.entries(args.calls, tag="pf"))
        redis.start()
        log_path = Path(args.log_file) if args.log_file else workdir / "service.log"
        service = Service(workdir, redis.url, protocols, log_path)
        service.start()
        url = f"{service.base}{workload.VOICE_PATH}"
        warm = run_wrk(url, entries, start=0, duration_s=3, conns=args.conns)
        collapsed = args.out.with_suffix(".collapsed")
        spy_proc = subprocess.Popen(
            procs.pinned(
                procs.LOAD_CORE,
                [
                    spy,
                    "record",
                    "--pid",
                    str(service.pid),
                    "--rate",
                    str(args.rate),
                    "--format",
                    "raw",
                    "--duration",
                    str(int(args.seconds)),
                    "--output",
                    str(collapsed),
                ],
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        result = run_wrk(
            url,
            entries,
            start=warm["sent"],
            duration_s=args.seconds,
            conns=args.conns,
            server_pid=service.pid,
        )
        spy_proc.wait(args.seconds + 30)
        summary = summarise(collapsed, args.top)
        head = (
            f"saturated: {result['rate']:,.0f} calls/s, service CPU "
            f"{result.get('server_cpu_share')}, p99 {result['latency_us']['p99'] / 1000:.1f} ms"
        )
        args.out.write_text(head + "\n\n" + summary + "\n")
        print(head)
        print(summary)
        print(f"\ncollapsed stacks: {collapsed}")
    finally:
        if service is not None:
            service.stop()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
