"""Seed one MMG's month with a million calls through the store, for the report timing.

Calls go in through :meth:`RedisStore.record_calls` in batches (the same script
the service's writer uses: call hash, counters, month log, retention index), with
two batches in flight so building the next batch overlaps Redis running the
current one. A few thousand visits (persons seen) go in through ``add_visit``. The
harness then times ``GET /api/v1/reports/{mmg}/{month}``.

    python -m benchmarks.month --redis unix:///tmp/x/redis.sock --calls 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from regulator.core.indicators import local_facts
from regulator.core.models import CallRecord, Ground, Outcome, Route, VisitChannel
from regulator.core.referrals import make_visit
from regulator.protocols import load_protocols
from regulator.storage.redis import RedisStore

# Shares of routes in a busy month (route, ground, share).
_ROUTES: tuple[tuple[Route, Ground | None, float], ...] = (
    (Route.REGULATION, None, 0.62),
    (Route.MENU, None, 0.18),
    (Route.PHARMACY, None, 0.12),
    (Route.DIRECT_ACCESS, Ground.PENDING_REFERRAL, 0.05),
    (Route.DIRECT_ACCESS, Ground.PROFESSIONAL, 0.03),
)


def _month_bounds(month: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    year, mon = (int(p) for p in month.split("-"))
    start = datetime(year, mon, 1, tzinfo=tz)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=tz)
    return start, end


async def seed(
    redis_url: str,
    protocols_dir: Path,
    mmg: str,
    month: str,
    calls: int,
    visits: int,
    batch: int = 5000,
    prefix: str = "regulator",
) -> dict[str, Any]:
    proto = load_protocols(protocols_dir).get(mmg)
    if proto is None:
        raise SystemExit(f"unknown MMG {mmg!r}")
    tz = proto.tz
    start, end = _month_bounds(month, tz)
    span = (end - start).total_seconds()
    rng = random.Random(11)
    routes = [r for r, _, _ in _ROUTES]
    weights = [w for _, _, w in _ROUTES]
    grounds = {r: g for r, g, _ in _ROUTES}
    store = RedisStore(redis_url, prefix=prefix)
    await store.open()
    started = time.perf_counter()
    new = 0
    inflight: set[asyncio.Task[list[bool]]] = set()

    async def drain(limit: int) -> None:
        nonlocal new
        while len(inflight) > limit:
            done, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                inflight.discard(task)
                new += sum(task.result())

    base = start.astimezone(ZoneInfo("UTC"))
    for first in range(0, calls, batch):
        records = []
        for i in range(first, min(first + batch, calls)):
            at = base + timedelta(seconds=span * i / calls)
            route = rng.choices(routes, weights)[0]
            ground = grounds[route] if route is Route.DIRECT_ACCESS else None
            month_of, hour = local_facts(at, tz)
            records.append(
                CallRecord(
                    call_id=f"CAseed{mmg}{month}{i:012d}",
                    mmg=mmg,
                    platform="twilio",
                    caller=f"+3376{rng.randrange(10**7):07d}",
                    at=at,
                    month=month_of,
                    day_type=proto.schedule.day_type(at.astimezone(tz).date()),
                    hour=hour,
                    route=route,
                    ground=ground,
                    rule="banc d'essai",
                )
            )
        inflight.add(asyncio.create_task(store.record_calls(records)))
        await drain(1)
    await drain(0)
    calls_s = time.perf_counter() - started

    started = time.perf_counter()
    channels = list(VisitChannel)
    outcomes = list(Outcome)
    for i in range(visits):
        at = base + timedelta(seconds=span * (i + 0.5) / max(visits, 1))
        visit = make_visit(
            proto,
            channel=rng.choice(channels),
            at=at,
            outcome=rng.choice(outcomes),
            acts=rng.randint(1, 3),
            age_band=rng.choice(("0-17", "18-64", "65+")),
            reason="fièvre",
            visit_id=f"visseed{mmg}{month}{i:08d}",
        )
        await store.add_visit(visit, None)
    visits_s = time.perf_counter() - started
    await store.close()
    return {
        "calls": calls,
        "new_calls": new,
        "visits": visits,
        "seed_calls_s": round(calls_s, 1),
        "seed_visits_s": round(visits_s, 1),
        "calls_per_s": round(calls / calls_s) if calls_s else 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", required=True, help="redis URL (unix:///… or redis://…)")
    parser.add_argument("--protocols", type=Path, default=Path("protocols"))
    parser.add_argument("--mmg", default="nimes")
    parser.add_argument("--month", default="2026-10")
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--visits", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args(argv)
    result = asyncio.run(
        seed(args.redis, args.protocols, args.mmg, args.month, args.calls, args.visits, args.batch)
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
