"""Centre 15 interconnection inside the app: feed the outbox, expose its dead letters.

With ``REGULATOR_TARGETS_FILE`` set, every routed call (not the menu step) and every
referral event is queued in the durable outbox for each target. Webhook handlers
never await the outbox: events go through a bounded in-memory feed that a
background task writes in batches, so the caller's answer is never delayed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from regulator.core.models import CallRecord, Decision, Referral, Route
from regulator.errors import BadRequest, Forbidden, Unavailable
from regulator.interconnect.events import OutboxEvent, TargetsError, call_event, referral_event
from regulator.interconnect.service import Interconnect, outbox_store_for
from regulator.logs import get_logger
from regulator.web import keys
from regulator.web.api import principal
from regulator.web.middlewares import json_response
from regulator.web.referrals import REFERRAL_LISTENERS

log = get_logger("regulator.interconnect")


@dataclass(eq=False)
class OutboxFeed:
    """Bounded hand-off from request handlers to the outbox (never blocks a handler)."""

    interconnect: Interconnect | None = None
    queue: asyncio.Queue[OutboxEvent] = field(default_factory=lambda: asyncio.Queue(50_000))
    dropped: int = 0

    def put(self, event: OutboxEvent) -> None:
        if self.interconnect is None:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("outbox_feed_full", event_id=event.event_id, kind=event.kind)

    def on_call(self, record: CallRecord, decision: Decision, first: bool) -> None:
        # Checked before building the event: without targets this runs for nothing
        # on every webhook.
        if self.interconnect is not None and decision.route is not Route.MENU:
            self.put(call_event(record))

    def on_referral(self, referral: Referral, event: str) -> None:
        if self.interconnect is not None:
            self.put(referral_event(referral))  # the kind follows the referral's status

    async def drain_forever(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and len(batch) < 500:
                batch.append(self.queue.get_nowait())
            await self._write(batch)

    async def drain(self) -> None:
        """Write whatever is queued (shutdown)."""
        batch = []
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        if batch:
            await self._write(batch)

    async def _write(self, batch: list[OutboxEvent]) -> None:
        assert self.interconnect is not None
        for attempt in range(5):
            try:
                await self.interconnect.enqueue(batch)
                return
            except Exception as exc:  # outbox store unreachable: retry, then log loudly
                log.warning("outbox_enqueue_failed", attempt=attempt + 1, error=str(exc))
                await asyncio.sleep(0.2 * 2**attempt)
        log.error("outbox_events_not_queued", count=len(batch))


FEED: web.AppKey[OutboxFeed] = web.AppKey("outbox_feed", OutboxFeed)


async def _interconnect_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    feed = app[FEED]
    if settings.targets_file is None:
        yield
        return
    store = outbox_store_for(settings)
    await store.open()
    async with aiohttp.ClientSession() as session:
        try:
            interconnect = Interconnect.from_settings(
                settings, store, app[keys.CLOCK], session, metrics=app[keys.METRICS]
            )
        except TargetsError as exc:
            await store.close()
            raise SystemExit(f"erreur : fichier des cibles invalide : {exc}") from None
        await interconnect.start()
        feed.interconnect = interconnect
        task = asyncio.create_task(feed.drain_forever())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await feed.drain()
        feed.interconnect = None
        await interconnect.stop()
    await store.close()


def _interconnect(request: web.Request) -> Interconnect:
    who = principal(request)
    if not who.is_admin:
        raise Forbidden("Réservé aux administrateurs.")
    interconnect = request.app[FEED].interconnect
    if interconnect is None:
        raise Unavailable("Aucune cible d'interconnexion configurée (REGULATOR_TARGETS_FILE).")
    return interconnect


async def dead_letters(request: web.Request) -> web.Response:
    """``GET /api/v1/outbox/dead[?target=…]`` — deliveries given up on (admin)."""
    interconnect = _interconnect(request)
    dead = await interconnect.dead(request.query.get("target") or None)
    return json_response(
        {
            "dead": [
                {
                    "target": d.target,
                    "event_id": d.event.event_id,
                    "kind": d.event.kind,
                    "mmg": d.event.mmg,
                    "attempts": d.attempts,
                    "error": d.error,
                    "died_at": d.died_at.isoformat(),
                }
                for d in dead
            ],
            "count": len(dead),
        }
    )


async def redrive(request: web.Request) -> web.Response:
    """``POST /api/v1/outbox/redrive`` ``{"target": …, "event_ids": [...]}`` (admin)."""
    interconnect = _interconnect(request)
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("target"), str):
        raise BadRequest('Corps attendu : {"target": "…", "event_ids": ["…"]}.', field="target")
    ids = body.get("event_ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        raise BadRequest("event_ids doit être une liste d'identifiants.", field="event_ids")
    count = await interconnect.redrive(body["target"], ids)
    return json_response({"redriven": count})


def setup_interconnect(app: web.Application) -> None:
    feed = OutboxFeed()
    app[FEED] = feed
    app[keys.ROUTER].listeners.append(feed.on_call)
    app[REFERRAL_LISTENERS].append(feed.on_referral)
    app.cleanup_ctx.append(_interconnect_ctx)
    app.router.add_get("/api/v1/outbox/dead", dead_letters)
    app.router.add_post("/api/v1/outbox/redrive", redrive)
