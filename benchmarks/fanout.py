"""SSE fan-out: how long until 200 consoles see a new referral.

200 clients hold ``GET /api/v1/events`` open (Bearer token of a regulator); each
round creates one referral with ``POST /api/v1/referrals`` and measures, from
just before the POST, when each client received its ``referral`` event. The
figure of a round is the time until ALL clients had it (its slowest client).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from typing import Any

import aiohttp
import orjson


async def _client(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    ready: asyncio.Event,
    ready_count: list[int],
    clients: int,
    arrivals: dict[str, list[float]],
    done: dict[str, asyncio.Event],
    expected: int,
) -> None:
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        resp.raise_for_status()
        connected = False
        async for raw in resp.content:
            line = raw.rstrip(b"\r\n")
            if not connected and line.startswith(b":"):
                connected = True
                ready_count[0] += 1
                if ready_count[0] >= clients:
                    ready.set()
                continue
            if not line.startswith(b"data: "):
                continue
            now = time.perf_counter()
            data = orjson.loads(line[6:])
            if data.get("kind") != "referral":
                continue
            case = data.get("referral", {}).get("case_id")
            if case in arrivals:
                arrivals[case].append(now)
                if len(arrivals[case]) >= expected:
                    done[case].set()


async def measure(
    base_url: str, token: str, clients: int = 200, rounds: int = 10, mmg: str = "nimes"
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    arrivals: dict[str, list[float]] = {}
    done: dict[str, asyncio.Event] = {}
    ready = asyncio.Event()
    ready_count = [0]
    all_round: list[float] = []
    per_client: list[float] = []
    missing = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [
            asyncio.create_task(
                _client(
                    session,
                    f"{base_url}/api/v1/events",
                    token,
                    ready,
                    ready_count,
                    clients,
                    arrivals,
                    done,
                    clients,
                )
            )
            for _ in range(clients)
        ]
        try:
            await asyncio.wait_for(ready.wait(), 30)
            await asyncio.sleep(0.2)
            for r in range(rounds):
                case = f"DRFR15030BENCH{int(time.time())}{r:03d}"
                arrivals[case] = []
                done[case] = asyncio.Event()
                body = {
                    "mmg": mmg,
                    "case_id": case,
                    "patient": {"display_name": "M. B.", "age_band": "18-64"},
                    "reason": "fièvre",
                    "urgency": "P2",
                }
                started = time.perf_counter()
                async with session.post(
                    f"{base_url}/api/v1/referrals",
                    data=orjson.dumps(body),
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    },
                ) as resp:
                    if resp.status != 201:
                        raise RuntimeError(f"referral POST: {resp.status} {await resp.text()}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done[case].wait(), 10)
                got = [t - started for t in arrivals[case]]
                missing += clients - len(got)
                if got:
                    all_round.append(max(got))
                    per_client.extend(got)
                await asyncio.sleep(0.2)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    per_client.sort()
    return {
        "clients": clients,
        "rounds": rounds,
        "missing": missing,
        "all_received_ms": {
            "p50": round(statistics.median(all_round) * 1000, 1) if all_round else None,
            "max": round(max(all_round) * 1000, 1) if all_round else None,
        },
        "per_client_ms": {
            "p50": round(statistics.median(per_client) * 1000, 1) if per_client else None,
            "max": round(per_client[-1] * 1000, 1) if per_client else None,
        },
    }
