"""Wiring of the interconnection: targets file → senders → outbox worker, in one object.

The web app builds one :class:`Interconnect` at start-up (in a ``cleanup_ctx``)::

    store = outbox_store_for(settings)                     # same SQLite file / Redis
    await store.open()
    async with aiohttp.ClientSession() as session:
        link = Interconnect.from_settings(settings, store, clock, session, metrics=metrics)
        await link.start()
        ...
        await link.enqueue([call_event(record)])           # when a call is recorded
        await link.enqueue([referral_event(referral)])     # after each referral transition
        ...
        await link.stop()
    await store.close()

With no ``REGULATOR_TARGETS_FILE``, there are no targets and ``enqueue`` stores nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from regulator.interconnect.events import (
    HubSanteTarget,
    OutboxEvent,
    Target,
    WebhookTarget,
    load_targets,
)
from regulator.interconnect.outbox import (
    DeadLetter,
    DeliveryReport,
    OutboxStore,
    OutboxWorker,
    Result,
    Sender,
)
from regulator.interconnect.webhooks import WebhookSender
from regulator.logs import get_logger
from regulator.ports import Clock

# Re-exported: the outbox store is chosen beside the main store (regulator.storage).
from regulator.storage import outbox_store_for

if TYPE_CHECKING:
    from regulator.interconnect.hubsante import HubSanteLink
    from regulator.metrics import Metrics
    from regulator.settings import Settings

log = get_logger("regulator.interconnect")


class Interconnect:
    """The outbox worker, its senders and the Hub Santé links of a list of targets."""

    def __init__(
        self,
        targets: Sequence[Target],
        store: OutboxStore,
        clock: Clock,
        session: aiohttp.ClientSession,
        *,
        environ: Mapping[str, str] | None = None,
        metrics: Metrics | None = None,
        **worker_options: Any,
    ) -> None:
        env = os.environ if environ is None else environ
        self.targets = list(targets)
        self.store = store
        self.metrics = metrics
        self.links: list[HubSanteLink] = []
        senders: dict[str, Sender] = {}
        for target in self.targets:
            if isinstance(target, WebhookTarget):
                senders[target.name] = WebhookSender(target, target.secret(env), session, clock)
            elif isinstance(target, HubSanteTarget):
                # Imported for a Hub Santé target only: aio-pika (~2 MB resident)
                # stays out of every worker that has none.
                from regulator.interconnect.hubsante import HubSanteLink

                link = HubSanteLink(target, store, clock, environ=env, on_result=self._count)
                self.links.append(link)
                senders[target.name] = link.sender
        if metrics is not None:
            worker_options.setdefault("on_delivery", self._on_delivery)
            worker_options.setdefault("on_pending", metrics.outbox_pending.set)
        self.worker = OutboxWorker(store, self.targets, senders, clock, **worker_options)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: OutboxStore,
        clock: Clock,
        session: aiohttp.ClientSession,
        *,
        environ: Mapping[str, str] | None = None,
        metrics: Metrics | None = None,
        **worker_options: Any,
    ) -> Interconnect:
        """Targets from ``settings.targets_file`` (none if unset); raises
        :class:`~regulator.interconnect.events.TargetsError` naming file, field and value."""
        path: Path | None = settings.targets_file
        targets = load_targets(path, environ) if path is not None else []
        return cls(
            targets, store, clock, session, environ=environ, metrics=metrics, **worker_options
        )

    def _count(self, target: str, result: Result) -> None:
        if self.metrics is not None:
            self.metrics.outbox_deliveries.labels(target=target, result=result.value).inc()

    def _on_delivery(self, target: str, report: DeliveryReport) -> None:
        self._count(target, report.result)

    async def start(self) -> None:
        """Connect the Hub Santé links in the background and start delivering."""
        for link in self.links:
            link.start_background()
        self.worker.start()
        log.info("interconnect_started", targets=[t.name for t in self.targets])

    async def stop(self) -> None:
        await self.worker.stop()
        for link in self.links:
            await link.close()

    async def enqueue(self, events: Sequence[OutboxEvent]) -> int:
        """Store events for delivery (one write per group of targets); returns deliveries."""
        if not self.targets or not events:
            return 0
        return await self.worker.enqueue(events)

    async def dead(self, target: str | None = None) -> list[DeadLetter]:
        return await self.store.dead(target)

    async def redrive(self, target: str, event_ids: Sequence[str] | None = None) -> int:
        return await self.worker.redrive(target, event_ids)


__all__ = ["Interconnect", "outbox_store_for"]
