"""The call path between a parsed webhook and its answer, platform-independent.

``CallRouter.route`` finds the MMG from the called number, gathers the context a
decision needs (pending referral), runs the pure engine within its budget,
queues the call record for group commit and returns the decision. Whatever goes
wrong, it returns the fail-safe decision: centre 15.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from datetime import datetime

from prometheus_client import Counter

from regulator.core import phone
from regulator.core.decision import decide, failsafe
from regulator.core.indicators import local_facts
from regulator.core.models import (
    Call,
    CallRecord,
    CallUpdate,
    Decision,
    DecisionContext,
    Route,
    Stage,
)
from regulator.core.protocol import Protocol
from regulator.logs import get_logger
from regulator.metrics import Metrics
from regulator.platforms.base import CallEvent
from regulator.ports import Clock, Store, StoreError
from regulator.reload import ProtocolRegistry
from regulator.settings import Settings
from regulator.storage.batch import CallWriter

log = get_logger("regulator.calls")

#: Called with every decision taken for a call (SSE consoles, outbox): the call as
#: recorded with its current route, the decision, and True for the call's first webhook.
CallListener = Callable[[CallRecord, Decision, bool], None]


class CallRouter:
    """Decides and records calls; shared by every platform's webhooks."""

    def __init__(
        self,
        *,
        protocols: ProtocolRegistry,
        store: Store,
        writer: CallWriter,
        clock: Clock,
        metrics: Metrics,
        settings: Settings,
    ) -> None:
        self.protocols = protocols
        self.store = store
        self.writer = writer
        self.clock = clock
        self.metrics = metrics
        self.settings = settings
        self.decision_budget_s = settings.decision_budget_ms / 1000
        self.store_budget_s = settings.store_budget_ms / 1000
        self.listeners: list[CallListener] = []
        # Labelled counter children by (mmg, platform, route, ground), created on first
        # use: labels() validates and hashes its arguments on every call.
        self._calls_counters: dict[tuple[str, str, str, str], Counter] = {}

    def failsafe(self, reason: str, protocol: Protocol | None = None) -> Decision:
        """The fail-safe decision, counted in ``regulator_failsafe_total{reason}``."""
        self.metrics.failsafe.labels(reason=reason).inc()
        return failsafe(protocol, reason, self.settings.failsafe_number)

    def protocol_for(self, called: str | None) -> Protocol | None:
        return self.protocols.current.for_called(called)

    async def _pending_referral(self, protocol: Protocol, caller: str | None) -> bool:
        if caller is None or not protocol.routing.direct_access.pending_referral:
            return False
        async with asyncio.timeout(self.store_budget_s):
            return await self.store.has_pending_referral(protocol.id, caller)

    async def route(
        self,
        call: Call,
        *,
        menu_capable: bool = True,
        failed_route: Route | None = None,
        mmg_hint: str | None = None,
    ) -> Decision:
        """Decide where ``call`` goes and queue its record; never raises."""
        protocol: Protocol | None = None
        try:
            protocol = self.protocol_for(call.called)
            if protocol is None and mmg_hint:
                protocol = self.protocols.current.get(mmg_hint)
            if protocol is None:
                return self.failsafe("unknown_number")
            now = self.clock.now()
            pending = False
            if call.stage is Stage.INCOMING and protocol.schedule.state(now).open:
                try:
                    pending = await self._pending_referral(
                        protocol, phone.try_normalize(call.caller)
                    )
                except (StoreError, TimeoutError) as exc:
                    self.metrics.storage_errors.labels(op="pending_referral").inc()
                    log.warning("pending_referral_lookup_failed", error=str(exc) or "timeout")
                    decision = self.failsafe("storage_error", protocol)
                    self._record(call, protocol, decision, now)
                    return decision
            ctx = DecisionContext(pending_referral=pending, failed_route=failed_route)
            engine_call = call
            if not menu_capable and call.stage is Stage.INCOMING:
                # No voice menu on this platform (SIP proxy): take the menu's default.
                engine_call = dataclasses.replace(call, stage=Stage.DIGITS, digits=None)
            started = time.perf_counter()
            decision = decide(protocol, engine_call, now, ctx)
            elapsed = time.perf_counter() - started
            self.metrics.decision_seconds.observe(elapsed)
            if elapsed > self.decision_budget_s:
                decision = self.failsafe("decision_timeout", protocol)
            elif decision.failsafe:
                self.metrics.failsafe.labels(reason="internal_error").inc()
            self._record(call, protocol, decision, now)
            return decision
        except Exception as exc:  # the caller must be routed whatever happens
            log.exception("call_route_failed", error=type(exc).__name__)
            return self.failsafe("internal_error", protocol)

    def _record(self, call: Call, protocol: Protocol, decision: Decision, now: datetime) -> None:
        """Queue the call record (first webhook) or the route change (later ones)."""
        month, hour = local_facts(now, protocol.tz)
        day_type = decision.day_type or protocol.schedule.day_type(
            now.astimezone(protocol.tz).date()
        )
        record = CallRecord(
            call_id=call.call_id,
            mmg=protocol.id,
            platform=call.platform.value,
            caller=phone.try_normalize(call.caller) or (call.caller or "")[:32],
            at=now,
            month=month,
            day_type=day_type,
            hour=hour,
            route=decision.route,
            ground=decision.ground,
            rule=decision.rule,
            failsafe=decision.failsafe,
        )
        first = call.stage is Stage.INCOMING
        if first:
            self.writer.submit_record(record)
            labels = (
                protocol.id,
                call.platform.value,
                decision.route.value,
                decision.ground.value if decision.ground else "",
            )
            counter = self._calls_counters.get(labels)
            if counter is None:
                mmg, platform, route, ground = labels
                counter = self.metrics.calls.labels(
                    mmg=mmg, platform=platform, route=route, ground=ground
                )
                self._calls_counters[labels] = counter
            counter.inc()
        else:
            self.writer.submit_update(
                CallUpdate(
                    call_id=call.call_id,
                    mmg=protocol.id,
                    month=month,
                    route=decision.route,
                    ground=decision.ground,
                    rule=decision.rule,
                )
            )
        for listener in self.listeners:
            try:
                listener(record, decision, first)
            except Exception:  # a console or outbox problem never affects the call
                log.exception("call_listener_failed")

    def event(self, ev: CallEvent) -> None:
        """A status callback: completes the call record (status, duration)."""
        protocol = self.protocol_for(ev.called) if ev.called else None
        now = self.clock.now()
        month = local_facts(now, protocol.tz)[0] if protocol else now.strftime("%Y-%m")
        self.writer.submit_update(
            CallUpdate(
                call_id=ev.call_id,
                mmg=protocol.id if protocol else "",
                month=month,
                status=ev.status,
                duration_s=ev.duration_s,
            )
        )
