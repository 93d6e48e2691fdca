"""Typed application keys: everything the handlers share lives on the app, not in globals."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from regulator.auth import TokenBook
from regulator.calls import CallRouter
from regulator.metrics import Metrics
from regulator.ports import Clock, Store
from regulator.reload import ProtocolRegistry
from regulator.settings import Settings
from regulator.storage.batch import CallWriter

if TYPE_CHECKING:
    from regulator.bus import EventBus
    from regulator.events import Events
    from regulator.web.hooks import Hooks
    from regulator.web.lifecycle import Lifecycle

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
STORE: web.AppKey[Store] = web.AppKey("store")
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
PROTOCOLS: web.AppKey[ProtocolRegistry] = web.AppKey("protocols", ProtocolRegistry)
ROUTER: web.AppKey[CallRouter] = web.AppKey("router", CallRouter)
WRITER: web.AppKey[CallWriter] = web.AppKey("writer", CallWriter)
TOKENS: web.AppKey[TokenBook | None] = web.AppKey("tokens")
HOOKS: web.AppKey[Hooks] = web.AppKey("hooks")
LIFECYCLE: web.AppKey[Lifecycle] = web.AppKey("lifecycle")
BUS: web.AppKey[EventBus] = web.AppKey("bus")
EVENTS: web.AppKey[Events] = web.AppKey("events")
