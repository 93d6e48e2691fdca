"""Centre 15 interconnection inside the app: feed the outbox, expose its dead letters.

With ``REGULATOR_TARGETS_FILE`` set, every routed call (not the menu step) and every
referral event is queued in the durable outbox for each target. Webhook handlers
never await the outbox: each event is written to a local journal before the handler
returns, then a background task writes the events in batches to the outbox store (or,
while it is down, to a local fsync'd spool replayed for ever): the caller's answer is
never delayed and no event is lost (:mod:`regulator.interconnect.feed`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from regulator.core.models import Route
from regulator.errors import BadRequest, Forbidden, Unavailable
from regulator.events import CallEnded, CallRouted, Events, ReferralChanged
from regulator.interconnect.events import TargetsError, call_event, referral_event
from regulator.interconnect.feed import EventFeed
from regulator.interconnect.service import Interconnect
from regulator.logs import get_logger
from regulator.ports import OutboxEvent, OutboxStore
from regulator.storage import outbox_store_for
from regulator.web import keys
from regulator.web.access import principal
from regulator.web.middlewares import json_response
from regulator.web.responses import DeadLetterOut, DeadLettersOut, RedrivenOut

log = get_logger("regulator.interconnect")


@dataclass(eq=False)
class OutboxFeed:
    """Hand-off from request handlers to the outbox: an :class:`EventFeed` (journal
    written before the handler returns, then the outbox store or the local spool)."""

    interconnect: Interconnect | None = None
    events: EventFeed | None = None

    def put(self, event: OutboxEvent) -> None:
        if self.events is not None:
            self.events.put(event)

    def on_call(self, event: CallRouted) -> None:
        # Checked before building the event: without targets this runs for nothing
        # on every webhook.
        if self.events is not None and event.decision.route is not Route.MENU:
            self.events.put(call_event(event.record))

    def on_completed(self, event: CallEnded) -> None:
        if self.events is not None:
            self.events.put(call_event(event.record, "call.completed"))

    def on_referral(self, event: ReferralChanged) -> None:
        if self.events is not None:
            # The kind follows the referral's status.
            self.events.put(referral_event(event.referral))

    def subscribe(self, events: Events) -> None:
        """Routed calls and referral changes; ended calls only while targets are
        configured (:func:`interconnect_ctx`): reading an ended call costs a store read."""
        events.subscribe(CallRouted, self.on_call)
        events.subscribe(ReferralChanged, self.on_referral)

    @property
    def backlog(self) -> int:
        return self.events.backlog if self.events is not None else 0


FEED: web.AppKey[OutboxFeed] = web.AppKey("outbox_feed", OutboxFeed)


async def _open_outbox_store(store: OutboxStore) -> bool:
    """Open the outbox store; a store that is down at start (Redis) is not fatal: the
    events wait in the local spool until it answers."""
    try:
        await store.open()
    except Exception as exc:
        log.error("outbox_store_unavailable", error=f"{type(exc).__name__}: {exc}")
        return False
    return True


async def interconnect_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    feed = app[FEED]
    if settings.targets_file is None:
        yield
        return
    store = outbox_store_for(settings)
    opened = await _open_outbox_store(store)
    async with aiohttp.ClientSession() as session:
        try:
            interconnect = Interconnect.from_settings(
                settings, store, app[keys.CLOCK], session, metrics=app[keys.METRICS]
            )
        except TargetsError as exc:
            await store.close()
            raise SystemExit(f"erreur : fichier des cibles invalide : {exc}") from None

        async def sink(events: Sequence[OutboxEvent]) -> None:
            nonlocal opened
            if not opened:
                await store.open()
                opened = True
            await interconnect.enqueue(events)

        events = EventFeed(sink, settings.local_dir)
        if events.recovered:
            log.warning("outbox_journal_recovered", events=events.recovered)
        app[keys.METRICS].track(app[keys.METRICS].outbox_local_pending, lambda: feed.backlog)
        await interconnect.start()
        feed.interconnect = interconnect
        feed.events = events
        events.start()
        app[keys.EVENTS].subscribe(CallEnded, feed.on_completed)
        yield
        app[keys.EVENTS].unsubscribe(CallEnded, feed.on_completed)
        await events.stop()
        feed.events = None
        feed.interconnect = None
        await interconnect.stop()
    await store.close()


def _interconnect(request: web.Request) -> Interconnect:
    who = principal(request)
    if not who.is_admin:
        raise Forbidden("Réservé aux administrateurs.")
    interconnect = request.config_dict[FEED].interconnect
    if interconnect is None:
        raise Unavailable("Aucune cible d'interconnexion configurée (REGULATOR_TARGETS_FILE).")
    return interconnect


async def dead_letters(request: web.Request) -> web.Response:
    """``GET /api/v1/outbox/dead[?target=…]`` — deliveries given up on (admin)."""
    interconnect = _interconnect(request)
    dead = await interconnect.dead(request.query.get("target") or None)
    out = DeadLettersOut(
        dead=[
            DeadLetterOut(
                target=d.target,
                event_id=d.event.event_id,
                kind=d.event.kind,
                mmg=d.event.mmg,
                attempts=d.attempts,
                error=d.error,
                died_at=d.died_at.isoformat(),
            )
            for d in dead
        ],
        count=len(dead),
    )
    return json_response(out.model_dump())


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
    return json_response(RedrivenOut(redriven=count).model_dump())
