"""``decide`` alone, in process: decisions per second of the pure engine.

A mix of the calls a day brings, over the example protocols: open and closed
instants (weekday evening, weekday morning, Sunday, a public holiday), first
webhooks (menu or regulation), menu choices (regulation, pharmacy on duty), dial
failures (overflow) and professionals, from a pool of 1,000 callers (a caller's
number is normalised once by the webhook before ``decide`` runs: its cache is warm,
as in the service). A second figure uses a new caller for every decision (cold
number cache: the engine normalises and masks a number it has never seen).

    python -m benchmarks.decide [--protocols DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import timeit
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from regulator.core.decision import decide
from regulator.core.models import Call, DecisionContext, Platform, Route, Stage
from regulator.protocols import load_protocols

_INSTANTS = (
    "2026-11-24T21:00",  # Tuesday evening: open
    "2026-11-24T10:00",  # Tuesday morning: closed
    "2026-11-22T11:00",  # Sunday: open (Metz: morning slot)
    "2026-12-25T16:00",  # Christmas day: holiday slots
    "2026-11-28T13:00",  # Saturday afternoon
)


def _callers(n: int, rng: random.Random) -> list[str]:
    return [f"+3376{rng.randrange(10**7):07d}" for _ in range(n)]


def cases(protocols_dir: Path, callers: list[str]) -> list[tuple[Any, Call, datetime, Any]]:
    """The (protocol, call, now, context) mix, cycling through ``callers``."""
    protocols = list(load_protocols(protocols_dir))
    out: list[tuple[Any, Call, datetime, Any]] = []
    plain = DecisionContext()
    pending = DecisionContext(pending_referral=True)
    overflow = DecisionContext(failed_route=Route.REGULATION)
    k = 0
    for proto in protocols:
        tz = ZoneInfo(proto.timezone)
        professional = next(iter(proto.routing.direct_access.professionals), None)
        for text in _INSTANTS:
            now = datetime.fromisoformat(text).replace(tzinfo=tz)
            variants: list[tuple[Stage, str | None, Any, str | None]] = [
                (Stage.INCOMING, None, plain, None),
                (Stage.INCOMING, None, plain, None),
                (Stage.INCOMING, None, plain, None),
                (Stage.DIGITS, "1", plain, None),
                (Stage.DIGITS, "2", plain, None),
                (Stage.DIGITS, None, plain, None),
                (Stage.INCOMING, None, pending, None),
                (Stage.DIAL_FAILED, None, overflow, None),
                (Stage.INCOMING, None, plain, professional),
            ]
            for stage, digits, ctx, caller in variants:
                k += 1
                call = Call(
                    call_id=f"CA{k:032x}",
                    caller=caller or callers[k % len(callers)],
                    called=proto.numbers[0],
                    platform=Platform.TWILIO,
                    stage=stage,
                    digits=digits,
                )
                out.append((proto, call, now, ctx))
    return out


def measure(protocols_dir: Path, seconds: float = 2.0) -> dict[str, Any]:
    rng = random.Random(3)
    warm_callers = _callers(1000, rng)
    mix = cases(protocols_dir, warm_callers)
    # Warm the number and calendar caches as the running service has them.
    for caller in warm_callers:
        proto, call, now, ctx = mix[0]
        decide(proto, Call(call.call_id, caller, call.called, call.platform), now, ctx)
    for item in mix:
        decide(*item)

    def run_mix() -> None:
        for proto, call, now, ctx in mix:
            decide(proto, call, now, ctx)

    per_round = len(mix)
    one = timeit.timeit(run_mix, number=1)
    rounds = max(1, int(seconds / 5 / max(one, 1e-9)))
    best = min(timeit.repeat(run_mix, number=rounds, repeat=5))
    warm_rate = per_round * rounds / best

    # Cold: a caller never seen before for every decision.
    cold_n = 20000
    fresh = [f"+3377{i:07d}" for i in rng.sample(range(10**7), cold_n)]
    proto, call, now, ctx = mix[0]
    cold_calls = [Call(call.call_id, c, call.called, call.platform) for c in fresh]
    started = time.perf_counter()
    for c in cold_calls:
        decide(proto, c, now, ctx)
    cold_rate = cold_n / (time.perf_counter() - started)
    return {
        "decisions_per_s": round(warm_rate),
        "cold_caller_decisions_per_s": round(cold_rate),
        "mix_size": per_round,
        "us_per_decision": round(1e6 / warm_rate, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--protocols", type=Path, default=Path("protocols"))
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    json.dump(measure(args.protocols, args.seconds), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
