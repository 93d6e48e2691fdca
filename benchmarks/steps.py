"""Per-step micro-benchmarks of the webhook hot path, each step alone, in process.

Each step is one piece of what a first Twilio voice webhook costs, fed with the
benchmark's own workload (a signed 25-field webhook of a new call): the signature
check, form parsing, number normalisation (a caller never seen before), our callback
URLs (``hook_urls``, built lazily), TwiML rendering (the voice menu and a dial, each
with fresh URLs signed as it reads them, as in a webhook), the
journal append of the call record, the canonical log line (JSON, to /dev/null) and
the webhook histogram.

Two measures, both stable on a loaded machine:

* ``python -m benchmarks.steps``: nanoseconds per call, min over repeats (timeit);
* ``python -m benchmarks.steps --callgrind STEP[,STEP…]``: instructions per call under
  ``valgrind --tool=callgrind`` (two runs of N and 2N iterations, the difference
  divided by N: start-up and imports cancel out) — the same figure under any load.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import workload
from regulator.core.decision import decide
from regulator.core.models import (
    Call,
    CallRecord,
    DayType,
    DecisionContext,
    Platform,
    Route,
    Stage,
)
from regulator.platforms import twilio
from regulator.platforms.base import HookRequest, RenderContext
from regulator.web.hooks.wire import callback_key, hook_urls, parse_form

_BASE = workload.PUBLIC_URL
_MMG = "nimes"


def _request() -> HookRequest:
    entry = next(iter(workload.entries(1, retry_share=0.0)))
    body = entry.body()
    return HookRequest(
        method="POST",
        url=workload.PUBLIC_URL + workload.VOICE_PATH,
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": entry.signature,
        },
        query={},
        body=body,
        form=parse_form(body.decode()),
        now=0.0,
    )


def steps(protocols_dir: Path) -> dict[str, Callable[[], Callable[[], object]]]:
    """Step name → a factory of the zero-argument function to time (set-up excluded)."""

    def verify() -> Callable[[], object]:
        req = _request()
        return lambda: twilio.verify(req, workload.TWILIO_TOKEN)

    def form() -> Callable[[], object]:
        text = _request().body.decode()
        return lambda: parse_form(text)

    def normalize() -> Callable[[], object]:
        from regulator.core import phone

        rng = random.Random(5)
        numbers = [f"+3376{rng.randrange(10**7):07d}" for _ in range(200_000)]
        it = iter(numbers)
        return lambda: phone.normalize(next(it))

    def mask() -> Callable[[], object]:
        from regulator.core import phone

        rng = random.Random(6)
        numbers = [f"+3376{rng.randrange(10**7):07d}" for _ in range(200_000)]
        it = iter(numbers)

        def run() -> object:
            n = next(it)
            phone.normalize(n)  # the webhook parsed it before it is masked
            return phone.mask(n)

        return run

    key = callback_key(Platform.TWILIO, workload.TWILIO_TOKEN)

    def urls() -> Callable[[], object]:
        return lambda: hook_urls(_BASE, Platform.TWILIO, _MMG, "CA" + "0" * 32, key)

    def _decision(stage: Stage, digits: str | None) -> tuple[object, Callable[[], RenderContext]]:
        from regulator.protocols import load_protocols

        proto = next(p for p in load_protocols(protocols_dir) if p.id == _MMG)
        now = datetime(2026, 11, 24, 21, 0, tzinfo=proto.tz)
        call = Call("CA" + "0" * 32, "+33760000001", proto.numbers[0], Platform.TWILIO, stage)
        if digits:
            call = Call(call.call_id, call.caller, call.called, call.platform, stage, digits)
        decision = decide(proto, call, now, DecisionContext())

        def ctx() -> RenderContext:
            # Fresh URLs, as each webhook builds them (their signing is part of rendering).
            return RenderContext(
                urls=hook_urls(_BASE, Platform.TWILIO, _MMG, call.call_id, key),
                caller=call.caller,
                own_number=proto.numbers[0],
                regulation=None,
                sip_gateway=None,
                mmg_name=proto.name,
            )

        return decision, ctx

    def render_menu() -> Callable[[], object]:
        decision, ctx = _decision(Stage.INCOMING, None)
        return lambda: twilio.render(decision, ctx())  # type: ignore[arg-type]

    def render_dial() -> Callable[[], object]:
        decision, ctx = _decision(Stage.DIGITS, "1")
        return lambda: twilio.render(decision, ctx())  # type: ignore[arg-type]

    def journal() -> Callable[[], object]:
        from regulator.storage.batch import Journal

        tmp = Path(tempfile.mkdtemp(prefix="steps-journal-"))
        j = Journal(tmp / "journal")
        record = CallRecord(
            call_id="CA" + "0" * 32,
            mmg=_MMG,
            platform="twilio",
            caller="+33760000001",
            at=datetime(2026, 11, 24, 20, 0, tzinfo=UTC),
            month="2026-11",
            day_type=DayType.WEEKDAY,
            hour=21,
            route=Route.REGULATION,
            ground=None,
            rule="open",
            routes=(Route.REGULATION,),
            protocol_version="v1",
        )
        seq = iter(range(1, 10**9))
        return lambda: j.append(next(seq), record)

    def log_line() -> Callable[[], object]:
        import structlog

        from regulator.logs import configure_logging, get_logger

        devnull = open(os.devnull, "w")  # noqa: SIM115 - kept for the process
        sys.stderr = devnull
        configure_logging("json", "INFO")
        log = get_logger("regulator.hooks")
        structlog.contextvars.bind_contextvars(request_id="r" * 16)

        def run() -> object:
            structlog.contextvars.bind_contextvars(call_id="CA" + "0" * 32)
            log.info(
                "webhook",
                platform="twilio",
                path="/hooks/twilio/voice",
                status=200,
                mmg=_MMG,
                route="menu",
                ground=None,
                rule="open",
                caller="+33 7 •• •• •• 01",
                failsafe=False,
                retried=False,
                duration_ms=0.41,
            )
            return None

        return run

    def histogram() -> Callable[[], object]:
        from regulator.metrics import Metrics

        child = Metrics().webhook_seconds.labels(platform="twilio")
        return lambda: child.observe(0.0004)

    return {
        "verify": verify,
        "form": form,
        "normalize": normalize,
        "mask": mask,
        "urls": urls,
        "render_menu": render_menu,
        "render_dial": render_dial,
        "journal": journal,
        "log_line": log_line,
        "histogram": histogram,
    }


def time_step(fn: Callable[[], object], number: int = 20_000, repeat: int = 7) -> float:
    """Nanoseconds per call, min over ``repeat`` runs of ``number`` calls."""
    fn()
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e9


def _callgrind_total(out: Path) -> int:
    text = out.read_text(errors="replace")
    match = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    if match is None:
        raise RuntimeError(f"no totals in {out}")
    return int(match.group(1))


def callgrind(name: str, n: int, protocols_dir: Path) -> float:
    """Instructions per call of step ``name`` (runs of n and 2n, differenced)."""
    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in (n, 2 * n):
            out = Path(tmp) / f"cg.{count}"
            subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={out}",
                    sys.executable,
                    "-m",
                    "benchmarks.steps",
                    "--run",
                    name,
                    "--number",
                    str(count),
                    "--protocols",
                    str(protocols_dir),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            totals.append(_callgrind_total(out))
    return (totals[1] - totals[0]) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--protocols", type=Path, default=Path("protocols"))
    parser.add_argument("--only", help="comma-separated steps (default: all)")
    parser.add_argument("--callgrind", help="comma-separated steps, instructions per call")
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--run", help=argparse.SUPPRESS)  # one step, N times (for callgrind)
    args = parser.parse_args(argv)
    table = steps(args.protocols)
    if args.run:
        fn = table[args.run]()
        fn()
        for _ in range(args.number):
            fn()
        return 0
    if args.callgrind:
        for name in args.callgrind.split(","):
            ir = callgrind(name, args.number, args.protocols)
            print(f"{name:12s} {ir / 1000:9.1f}k instructions per call (callgrind)")
        return 0
    names = args.only.split(",") if args.only else list(table)
    for name in names:
        ns = time_step(table[name]())
        print(f"{name:12s} {ns / 1000:9.2f} µs per call (min of 7 × 20,000)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
