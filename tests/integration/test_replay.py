"""Replayed webhooks count nothing again, on any replica, before or after a restart
(issue 18, point 3).

Two app instances share one real Redis store; "restart" is a new app instance on the
same store and data directory (its answer cache is empty). Each test prints what it
tried and what it counted.
"""

from __future__ import annotations

from pathlib import Path

from regulator.core.models import Route
from regulator.events import CallRouted
from regulator.ports import FixedClock
from regulator.storage.redis import RedisStore
from regulator.web import keys
from regulator.web.app import create_app
from tests.support.app import (
    NIMES,
    AppClient,
    ClientFactory,
    make_settings,
    post_twilio,
    report,
)
from tests.support.clock import paris

CALLER = "+33611223344"


class Replica:
    """One app instance and what it published (CallRouted) and counted."""

    def __init__(self, client: AppClient) -> None:
        self.client = client
        self.routed: list[CallRouted] = []
        client.app[keys.EVENTS].subscribe(CallRouted, self.routed.append)

    def calls_total(self) -> float:
        value = 0.0
        for metric in self.client.app[keys.METRICS].calls.collect():
            value += sum(s.value for s in metric.samples if s.name == "regulator_calls_total")
        return value

    def first_events(self) -> int:
        return sum(1 for e in self.routed if e.first)

    async def settle(self) -> None:
        """Wait for the write path to settle what was submitted (no sleep)."""
        await self.client.app[keys.WRITER].flush()


async def _replica(
    aiohttp_client: ClientFactory, directory: Path, clock: FixedClock, url: str, prefix: str
) -> Replica:
    directory.mkdir(exist_ok=True)  # noqa: ASYNC240 - a test's tmp dir
    store = RedisStore(url, prefix=prefix)
    return Replica(await aiohttp_client(create_app(make_settings(directory), store, clock)))


async def test_replayed_voice_webhook_counts_once_on_two_replicas_after_restart(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    clock: FixedClock,
    redis_url: str,
    redis_prefix: str,
) -> None:
    a = await _replica(aiohttp_client, tmp_path / "a", clock, redis_url, redis_prefix)
    b = await _replica(aiohttp_client, tmp_path / "b", clock, redis_url, redis_prefix)
    params = {"CallSid": "CAreplay1", "From": CALLER, "To": NIMES}
    status, first_body = await post_twilio(a.client, "/hooks/twilio/voice", params)
    assert status == 200
    await a.settle()
    assert a.calls_total() == 1 and a.first_events() == 1
    await a.client.close()  # restart: a new instance of A, with an empty answer cache
    a2 = await _replica(aiohttp_client, tmp_path / "a", clock, redis_url, redis_prefix)
    replicas = [b, a2]
    for n in range(12):
        status, body = await post_twilio(replicas[n % 2].client, "/hooks/twilio/voice", params)
        assert status == 200 and body == first_body  # the same decision (made afresh)
    for r in replicas:
        await r.settle()
    counted = sum(r.calls_total() for r in replicas)
    shown = sum(r.first_events() for r in replicas)
    data = await report(b.client)
    print(
        f"12 replays on 2 replicas after restart: {counted:.0f} counted, "
        f"{shown} shown as new calls, calls_received={data['calls_received']}"
    )
    assert (counted, shown, data["calls_received"]) == (0, 0, 1)


async def test_replayed_gather_does_not_route_again_on_another_replica(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    clock: FixedClock,
    redis_url: str,
    redis_prefix: str,
) -> None:
    a = await _replica(aiohttp_client, tmp_path / "a", clock, redis_url, redis_prefix)
    b = await _replica(aiohttp_client, tmp_path / "b", clock, redis_url, redis_prefix)
    params = {"CallSid": "CAreplay2", "From": CALLER, "To": NIMES}
    await post_twilio(a.client, "/hooks/twilio/voice", params)
    _, first = await post_twilio(a.client, "/hooks/twilio/gather", {**params, "Digits": "2"})
    assert "+33466333333" in first  # the pharmacy on duty
    await a.settle()
    before = await report(b.client)
    # Hours later the MMG is closed: deciding afresh would move the call to centre 15.
    clock.set(paris("2026-11-25T09:00"))
    await a.client.close()
    a2 = await _replica(aiohttp_client, tmp_path / "a", clock, redis_url, redis_prefix)
    replicas = [b, a2]
    bodies = set()
    for n in range(12):
        _, body = await post_twilio(
            replicas[n % 2].client, "/hooks/twilio/gather", {**params, "Digits": "2"}
        )
        bodies.add(body)
    for r in replicas:
        await r.settle()
    after = await report(b.client)
    routed = sum(len(r.routed) for r in replicas)
    history = await b.client.app[keys.STORE].route_history("CAreplay2")
    print(
        f"12 gather replays on 2 replicas after restart: {routed} routed again, "
        f"{len(bodies)} distinct answers, pharmacy {before['calls_by_route']['pharmacy']}"
        f"→{after['calls_by_route']['pharmacy']}, history {history.routes if history else None}"
    )
    assert bodies == {first}
    assert routed == 0
    assert after["calls_by_route"] == before["calls_by_route"]
    assert history is not None and history.routes == (Route.PHARMACY,)


async def test_with_the_store_down_a_call_is_counted_and_shown_as_before(
    aiohttp_client: ClientFactory, tmp_path: Path, clock: FixedClock
) -> None:
    """The fallback: the record goes to the spool, nothing can settle "first or repeat",
    so the call is counted and published as soon as it is spooled (today's behaviour)."""
    dead = RedisStore(f"unix://{tmp_path}/no-redis.sock", prefix="dead")
    (tmp_path / "down").mkdir()
    down = Replica(await aiohttp_client(create_app(make_settings(tmp_path / "down"), dead, clock)))
    params = {"CallSid": "CAdown1", "From": CALLER, "To": NIMES}
    clock.set(paris("2026-11-25T09:00"))  # closed: no pending-referral read, a plain dial
    status, body = await post_twilio(down.client, "/hooks/twilio/voice", params)
    assert status == 200 and "<Dial" in body
    await down.settle()
    spooled = down.client.app[keys.WRITER].spooled
    counted, shown = down.calls_total(), down.first_events()
    print(f"store down: spooled={spooled}, counted={counted:.0f}, shown={shown}")
    assert spooled >= 1
    assert (counted, shown) == (1, 1)
