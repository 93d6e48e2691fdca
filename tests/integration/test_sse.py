"""``GET /api/v1/events`` through aiohttp's test client: fan-out, resume, slow clients."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import ClientResponse

from regulator.web import keys
from tests.support.app import AppClient, bearer

#: Big enough that a reader who never reads fills the socket buffers quickly.
PADDING = "x" * 48_000
READ_TIMEOUT_S = 5.0


async def next_event(resp: ClientResponse) -> tuple[int, str, Any]:
    """The next SSE frame with data: (id, event name, decoded data); comments skipped."""
    while True:
        block = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), READ_TIMEOUT_S)
        fields: dict[str, str] = {}
        for line in block.decode().splitlines():
            name, _, value = line.partition(": ")
            if name in ("id", "event", "data"):
                fields[name] = value
        if "data" in fields:
            return int(fields["id"]), fields["event"], orjson.loads(fields["data"])


async def subscribed(client: AppClient, count: int) -> None:
    bus = client.app[keys.BUS]
    for _ in range(200):
        if bus.subscribers >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{bus.subscribers} subscribers, expected {count}")


async def test_events_reach_only_the_mmgs_a_role_may_see(client: AppClient) -> None:
    bus = client.app[keys.BUS]
    desk = await client.get("/api/v1/events", headers=bearer("desk"))
    assert desk.status == 200
    assert desk.content_type == "text/event-stream"
    await subscribed(client, 1)
    bus.publish("visit", "metz", {"n": 1})
    bus.publish("visit", "nimes", {"n": 2})
    _, kind, data = await next_event(desk)
    assert (kind, data["mmg"], data["n"]) == ("visit", "nimes", 2)
    desk.close()


async def test_reconnection_with_last_event_id_replays_what_was_missed(
    client: AppClient,
) -> None:
    bus = client.app[keys.BUS]
    first = bus.publish("visit", "nimes", {"n": 1})
    bus.publish("visit", "nimes", {"n": 2})
    bus.publish("visit", "nimes", {"n": 3})
    resp = await client.get(
        "/api/v1/events", headers=bearer("desk") | {"Last-Event-ID": str(first.id)}
    )
    seen = [(await next_event(resp))[2]["n"] for _ in range(2)]
    assert seen == [2, 3]
    resp.close()


async def test_a_client_that_never_reads_does_not_stall_the_others(client: AppClient) -> None:
    bus = client.app[keys.BUS]
    stalled = await client.get("/api/v1/events", headers=bearer("admin"))
    reader = await client.get("/api/v1/events", headers=bearer("admin"))
    assert stalled.status == reader.status == 200
    await subscribed(client, 2)
    # Publish until the stalled client's bounded queue overflows (its socket buffers are
    # full by then); the reading client must get every single event, in order, meanwhile.
    sent = 0
    while max(sub.dropped for sub in bus._subs) == 0:
        assert sent < 5000, "the stalled client never fell behind"
        bus.publish("referral", "nimes", {"seq": sent, "pad": PADDING})
        _, kind, data = await next_event(reader)
        assert (kind, data["seq"]) == ("referral", sent)
        sent += 1
    for extra in range(sent, sent + 50):  # and it keeps flowing afterwards
        bus.publish("referral", "nimes", {"seq": extra, "pad": PADDING})
        assert (await next_event(reader))[2]["seq"] == extra
    stalled.close()
    reader.close()
