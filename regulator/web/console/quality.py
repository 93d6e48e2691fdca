"""Today's answer quality of the regulation line, live in the regulation console.

For each MMG the regulator may send patients to: the calls the MMG put through to the
regulation line since 0 h (the MMG's local day), their answer rate, their QS60 and the
callers waiting on that line now — :func:`regulator.core.answer_quality.live` over
``Store.legs``. The page renders them, ``GET /console/regulation/quality.json`` gives
them again (the page reads it when its live stream (re)connects and every minute:
the day turns, a replica's stream misses another replica's legs), and
:class:`LiveQuality` pushes a ``quality`` event on the consoles' stream
(``/api/v1/events``) when the write path settles a leg of the MMG (``LegChanged``),
recomputed at most once a second per MMG however many legs change.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from datetime import datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from aiohttp import web

from regulator.bus import EventBus
from regulator.core.answer_quality import LABELS, live
from regulator.core.protocol import Protocol
from regulator.errors import Forbidden, Unavailable
from regulator.events import LegChanged
from regulator.logs import get_logger
from regulator.ports import Clock, Store, StoreError
from regulator.reload import ProtocolRegistry
from regulator.web import keys
from regulator.web.access import principal
from regulator.web.console.render import protocols
from regulator.web.middlewares import json_response

log = get_logger("regulator.consoles")

#: The fewest seconds between two recomputations of one MMG's figures.
THROTTLE_S: Final = 1.0
#: The line shown (``Leg.line``).
LINE: Final = "regulation"
#: The columns of the console, in order, with their French headers.
COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("offered", LABELS["offered"]),
    ("answer_rate", LABELS["answer_rate"]),
    ("qs60", "QS60 (décrochés en moins de 60 s)"),
    ("waiting", "En attente maintenant"),
)
#: What a figure shows when it cannot be had (no call offered, store unavailable).
MISSING: Final = "—"
#: The bus event kind (``event:`` of the SSE frame).
EVENT: Final = "quality"

LIVE_QUALITY: web.AppKey[LiveQuality] = web.AppKey("live_quality")


def local_day(now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """``[0 h, next 0 h)`` of ``now``'s day in ``tz`` (23 or 25 hours on DST days)."""
    day = now.astimezone(tz).date()
    start = datetime.combine(day, time(0), tzinfo=tz)
    return start, datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)


def percent(share: float | None) -> str:
    """``0.875`` → ``87,5 %`` (French: decimal comma, no-break space); None → ``—``."""
    if share is None:
        return MISSING
    text = f"{share * 100:.1f}".replace(".", ",").removesuffix(",0")
    return f"{text}\u00a0%"


def display(block: dict[str, Any]) -> dict[str, str]:
    """The shown columns of a :func:`live` block as the console writes them."""
    return {
        "offered": str(block["offered"]),
        "answer_rate": percent(block["answer_rate"]),
        "qs60": percent(block["qs60"]),
        "waiting": str(block["waiting"]),
    }


async def regulation_today(
    store: Store, proto: Protocol, now: datetime, short_abandon_s: float
) -> dict[str, Any]:
    """The regulation line's figures of ``proto`` today (JSON-ready): the MMG, the
    local day, the :func:`live` block and its ``display`` strings."""
    start, end = local_day(now, proto.tz)
    legs = [leg for leg in await store.legs(proto.id, start, end) if leg.line == LINE]
    block = live(legs, short_abandon_s, now)
    return {"mmg": proto.id, "day": start.date().isoformat(), **block, "display": display(block)}


def unavailable(proto: Protocol, now: datetime) -> dict[str, Any]:
    """The row shown when the store cannot say (the page still opens)."""
    return {
        "mmg": proto.id,
        "day": now.astimezone(proto.tz).date().isoformat(),
        "display": dict.fromkeys((key for key, _ in COLUMNS), MISSING),
    }


async def rows_today(request: web.Request, protos: list[Protocol]) -> dict[str, dict[str, Any]]:
    """MMG id → its figures today, for the page (a store failure shows dashes)."""
    app = request.config_dict
    now = app[keys.CLOCK].now()
    out: dict[str, dict[str, Any]] = {}
    for proto in protos:
        try:
            out[proto.id] = await regulation_today(
                app[keys.STORE], proto, now, app[keys.SETTINGS].short_abandon_s
            )
        except (StoreError, OSError) as exc:
            log.warning("regulation_quality_failed", mmg=proto.id, error=str(exc))
            out[proto.id] = unavailable(proto, now)
    return out


async def quality_json(request: web.Request) -> web.Response:
    """``GET /console/regulation/quality.json``: today's figures of the regulation line
    for each MMG the regulator may send patients to."""
    person = principal(request)
    if not person.is_regulator:
        raise Forbidden(
            f"Le jeton « {person.name} » ne donne pas accès à la console de régulation "
            "(rôle « regulator »)."
        )
    app = request.config_dict
    now = app[keys.CLOCK].now()
    protos = [p for p in protocols(request) if person.can_regulate(p.id)]
    try:
        mmgs = [
            await regulation_today(app[keys.STORE], p, now, app[keys.SETTINGS].short_abandon_s)
            for p in protos
        ]
    except (StoreError, OSError) as exc:
        raise Unavailable("Stockage indisponible ; nouvel essai dans un instant.") from exc
    return json_response({"at": now.isoformat(), "mmgs": mmgs})


class LiveQuality:
    """Pushes an MMG's figures to the consoles' stream when its regulation legs change.

    :meth:`on_legs` (an ``Events`` subscriber, on the event loop) starts at most one
    task per MMG; changes arriving while it runs or waits are folded into its next
    pass, at least ``interval_s`` after the previous one.
    """

    def __init__(
        self,
        *,
        store: Store,
        registry: ProtocolRegistry,
        clock: Clock,
        bus: EventBus,
        short_abandon_s: float,
        interval_s: float = THROTTLE_S,
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.bus = bus
        self.short_abandon_s = short_abandon_s
        self.interval_s = interval_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._last: dict[str, float] = {}  # MMG → loop time of its last pass
        self._dirty: set[str] = set()
        self._closed = False
        self.pushed = 0  # passes that published (tests, logs)

    def on_legs(self, event: LegChanged) -> None:
        if self._closed:
            return  # shutting down: the writer's last flush reaches no console
        if not any(change.after.line == LINE for change in event.changes):
            return  # the desk's or the pharmacy's legs: not shown
        task = self._tasks.get(event.mmg)
        if task is not None and not task.done():
            self._dirty.add(event.mmg)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a journal recovered at start-up): the page reads it
            return
        self._tasks[event.mmg] = loop.create_task(self._run(event.mmg))

    async def _run(self, mmg: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wait = self._last.get(mmg, -math.inf) + self.interval_s - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._dirty.discard(mmg)
            self._last[mmg] = loop.time()
            await self._push(mmg)
            if mmg not in self._dirty:
                return

    async def _push(self, mmg: str) -> None:
        proto = self.registry.current.get(mmg)
        if proto is None:
            return
        try:
            block = await regulation_today(
                self.store, proto, self.clock.now(), self.short_abandon_s
            )
        except Exception as exc:  # the console keeps its figures; the next change retries
            log.warning("live_quality_failed", mmg=mmg, error=str(exc))
            return
        self.bus.publish(EVENT, mmg, {"line": LINE, "quality": block})
        self.pushed += 1

    async def close(self, app: web.Application | None = None) -> None:
        """Cancel the passes under way (shutdown: the store is about to close)."""
        self._closed = True
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def setup_live_quality(app: web.Application) -> None:
    """Subscribe :class:`LiveQuality` to the app's events (after the app's keys are set)."""
    quality = LiveQuality(
        store=app[keys.STORE],
        registry=app[keys.PROTOCOLS],
        clock=app[keys.CLOCK],
        bus=app[keys.BUS],
        short_abandon_s=app[keys.SETTINGS].short_abandon_s,
    )
    app[LIVE_QUALITY] = quality
    app[keys.EVENTS].subscribe(LegChanged, quality.on_legs)
    app.on_shutdown.append(quality.close)
