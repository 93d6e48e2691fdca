"""The call path between a parsed webhook and its answer, platform-independent.

``CallRouter.route`` finds the MMG from the called number, gathers the context a
decision needs (pending referral), runs the pure engine within its budget,
queues the call record for group commit and returns the decision. Whatever goes
wrong, it returns the fail-safe decision: centre 15.

A failed dial (``CallRouter.dial_failure`` then ``route``) is about the destination
the service gave last for that call: the target the platform names, else the last
route of the call's route history as stored (any replica may have given it), read
within the store budget. A bounded in-process memory of the destinations this replica
gave adds to the stored history, so that even with the store down, or a record not
stored yet, no destination is offered twice to one call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import OrderedDict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from prometheus_client import Counter

from regulator.core import phone
from regulator.core.decision import decide, failsafe
from regulator.core.indicators import local_facts
from regulator.core.legs import LegEvent
from regulator.core.models import (
    DESTINATION_ROUTES,
    Call,
    CallEvent,
    CallRecord,
    CallUpdate,
    Decision,
    DecisionContext,
    HookAnswer,
    Route,
    Stage,
    offered_by,
)
from regulator.core.protocol import Protocol
from regulator.events import CallEnded, CallRouted, Events
from regulator.logs import get_logger
from regulator.metrics import Metrics
from regulator.ports import Clock, Store, StoreError
from regulator.reload import ProtocolRegistry
from regulator.settings import Settings
from regulator.storage.batch import CallWriter
from regulator.storage.pending import PendingIndex

log = get_logger("regulator.calls")

T = TypeVar("T")

#: Calls whose offered destinations one replica remembers (a few bytes each; calls
#: last minutes, so this covers far more calls than are ever in progress at once).
OFFERED_MEMORY_CALLS = 20_000


@dataclass(frozen=True, slots=True)
class DialFailure:
    """What is known of a failed dial before deciding again.

    ``failed`` is the destination that did not answer, None when neither the platform
    nor the store can tell; ``offered`` the destinations the call was already given
    (``failed`` included); ``mmg`` the call's MMG as recorded (for webhooks that do not
    carry the MMG's number).
    """

    failed: Route | None
    offered: frozenset[Route]
    mmg: str | None = None
    caller: str = ""  # as recorded by the first webhook; empty when the store can't tell


#: Call statuses that end a call (CallEvent's vocabulary, platforms/base.py).
FINAL_STATUSES: frozenset[str] = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


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
        events: Events | None = None,
        pending_index: PendingIndex | None = None,
    ) -> None:
        self.protocols = protocols
        self.pending_index = pending_index
        self.store = store
        self.writer = writer
        self.clock = clock
        self.metrics = metrics
        self.settings = settings
        self.decision_budget_s = settings.decision_budget_ms / 1000
        self.store_budget_s = settings.store_budget_ms / 1000
        # Every decision is published as CallRouted, every ended call as CallEnded
        # (the latter only while someone subscribes, the outbox with targets, so a
        # status callback reads the store for nothing otherwise).
        self.events = events if events is not None else Events()
        # call id → the call as this replica last recorded it: what a completion is
        # built from when the store cannot say (bounded like ``_offered``).
        self._recent: OrderedDict[str, CallRecord] = OrderedDict()
        # Labelled counter children by (mmg, platform, route, ground), created on first
        # use: labels() validates and hashes its arguments on every call.
        self._calls_counters: dict[tuple[str, str, str, str], Counter] = {}
        # call id → (MMG, destinations offered in order): the second line of defence
        # against offering a destination twice when the store cannot answer.
        self._offered: OrderedDict[str, tuple[str | None, tuple[Route, ...]]] = OrderedDict()
        # call id → its first record and decision as this replica submitted them, and the
        # later decisions taken meanwhile: counted and published once the write path
        # settled that this record was the call's first (records_settled).
        self._unsettled: OrderedDict[str, _Unsettled] = OrderedDict()
        # Call ids whose first CallRouted this process published (bounded): a record
        # spooled during an outage (published then) and replayed later is not again.
        self._published: OrderedDict[str, None] = OrderedDict()
        if writer.on_records is None:
            writer.on_records = self.records_settled

    def failsafe(
        self, reason: str, protocol: Protocol | None = None, *, regulation_offered: bool = False
    ) -> Decision:
        """The fail-safe decision, counted in ``regulator_failsafe_total{reason}``."""
        self.metrics.failsafe.labels(reason=reason).inc()
        return failsafe(
            protocol,
            reason,
            self.settings.failsafe_number,
            regulation_offered=regulation_offered,
        )

    def _remember(self, call_id: str, mmg: str | None, routes: tuple[Route, ...]) -> None:
        known = self._offered.get(call_id)
        merged = _merge(known[1] if known else (), routes)
        self._offered[call_id] = (mmg or (known[0] if known else None), merged)
        self._offered.move_to_end(call_id)
        while len(self._offered) > OFFERED_MEMORY_CALLS:
            self._offered.popitem(last=False)

    async def dial_failure(self, call_id: str, target: Route | None) -> DialFailure:
        """What a failed dial of ``call_id`` is about; never raises.

        ``target``: the destination the platform says failed (our callback URL, or the
        generic PBX's ``target``); without it, the last route of the stored history.
        The store unreachable or the record not there: the failed destination is
        unknown, and only what this replica remembers is known to have been offered.
        """
        remembered = self._offered.get(call_id)
        stored = await self._read("route_history", self.store.route_history(call_id))
        # Every view is a prefix of the call's one history (no route is offered twice
        # and each replica starts from the stored one): the merge is the longest.
        history = _merge(stored.routes if stored else (), remembered[1] if remembered else ())
        mmg = stored.mmg if stored else (remembered[0] if remembered else None)
        failed: Route | None = None
        if target in DESTINATION_ROUTES:
            failed = target
        elif stored is not None and history:
            failed = history[-1]  # the stored view, plus what this replica gave since
        if history:
            self._remember(call_id, mmg, history)
        offered = frozenset(history) | ({failed} if failed is not None else frozenset())
        caller = stored.caller if stored else ""
        return DialFailure(failed=failed, offered=offered, mmg=mmg, caller=caller)

    async def _read(self, op: str, read: Awaitable[T], what: str | None = None) -> T | None:
        """``read`` within the store budget, None if the store fails or is too slow:
        every read after the answer's decision is best effort (the webhook is answered
        whatever the store does). Counted in ``regulator_storage_errors_total{op}``,
        logged as ``<what>_lookup_failed`` (``what`` defaults to ``op``)."""
        event = f"{what or op}_lookup_failed"
        try:
            async with asyncio.timeout(self.store_budget_s):
                return await read
        except (StoreError, TimeoutError) as exc:
            self.metrics.storage_errors.labels(op=op).inc()
            log.warning(event, error=str(exc) or "timeout")
        except Exception:
            log.exception(event)
        return None

    def protocol_for(self, called: str | None) -> Protocol | None:
        return self.protocols.current.for_called(called)

    async def _pending_referral(self, protocol: Protocol, caller: str | None) -> bool:
        if caller is None or not protocol.routing.direct_access.pending_referral:
            return False
        if self.pending_index is None:
            return await self._ask_store(protocol.id, caller)
        # No round trip, and no timer armed, when the index (in sync) lacks the caller
        # — nearly every call; "pending" is always the store's answer: a stale index
        # errs to regulation only.
        return await self.pending_index.answer(protocol.id, caller, self._ask_store)

    async def _ask_store(self, mmg: str, caller: str) -> bool:
        # The budget is armed around the round trip only: an asyncio timeout around
        # the index's in-memory answer too was 4 % of a call's CPU (py-spy).
        async with asyncio.timeout(self.store_budget_s):
            return await self.store.has_pending_referral(mmg, caller)

    async def route(
        self,
        call: Call,
        *,
        menu_capable: bool = True,
        failure: DialFailure | None = None,
        mmg_hint: str | None = None,
    ) -> Decision:
        """Decide where ``call`` goes and queue its record; never raises.

        ``failure``: with ``Stage.DIAL_FAILED``, what :meth:`dial_failure` found."""
        protocol: Protocol | None = None
        # Centre 15 already given to this call: a fail-safe must not dial it again.
        again = failure is not None and Route.REGULATION in failure.offered
        try:
            protocol = self.protocol_for(call.called)
            if protocol is None and mmg_hint:
                protocol = self.protocols.current.get(mmg_hint)
            if protocol is None and failure is not None and failure.mmg:
                protocol = self.protocols.current.get(failure.mmg)
            if protocol is None:
                decision = self.failsafe("unknown_number", regulation_offered=again)
                if failure is not None:
                    self._remember_decision(call.call_id, failure.mmg, decision)
                return decision
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
            ctx = DecisionContext(
                pending_referral=pending,
                failed_route=failure.failed if failure is not None else None,
                offered=failure.offered if failure is not None else frozenset(),
            )
            engine_call = call
            if not menu_capable and call.stage is Stage.INCOMING:
                # No voice menu on this platform (SIP proxy): take the menu's default.
                engine_call = dataclasses.replace(call, stage=Stage.DIGITS, digits=None)
            started = time.perf_counter()
            decision = decide(protocol, engine_call, now, ctx)
            elapsed = time.perf_counter() - started
            self.metrics.decision_seconds.observe(elapsed)
            if elapsed > self.decision_budget_s:
                decision = self.failsafe("decision_timeout", protocol, regulation_offered=again)
            elif decision.failsafe:
                self.metrics.failsafe.labels(reason="internal_error").inc()
            self._record(call, protocol, decision, now)
            return decision
        except Exception as exc:  # the caller must be routed whatever happens
            log.exception("call_route_failed", error=type(exc).__name__)
            return self.failsafe("internal_error", protocol, regulation_offered=again)

    def _remember_decision(self, call_id: str, mmg: str | None, decision: Decision) -> None:
        entry = offered_by(decision)
        if entry is not None:
            self._remember(call_id, mmg, (entry,))

    def _record(self, call: Call, protocol: Protocol, decision: Decision, now: datetime) -> None:
        """Queue the call record (first webhook) or the route change (later ones)."""
        month, hour = local_facts(now, protocol.tz)
        day_type = decision.day_type or protocol.schedule.day_type(
            now.astimezone(protocol.tz).date()
        )
        entry = offered_by(decision)  # what this decision adds to the route history
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
            routes=(entry,) if entry is not None else (),
            protocol_version=self.protocols.version_for(protocol),
        )
        self._remember_decision(call.call_id, protocol.id, decision)
        first = call.stage is Stage.INCOMING
        # Remembered for the call's end event, and for the whisper that speaks the
        # caller's number (fetched seconds later, maybe before the record is stored).
        if self.events.wants(CallEnded) or protocol.messages.whisper_caller:
            self._remember_record(record, first)
        if first:
            # Counted and published once the store settled that this record is the
            # call's first (records_settled): a replayed first webhook, on any replica
            # or after a restart, is decided again but counts and shows nothing.
            self._unsettled[call.call_id] = _Unsettled(record, decision)
            self._unsettled.move_to_end(call.call_id)
            while len(self._unsettled) > OFFERED_MEMORY_CALLS:
                self._unsettled.popitem(last=False)
            self.writer.submit_record(record)
            return
        self.writer.submit_update(
            CallUpdate(
                call_id=call.call_id,
                mmg=protocol.id,
                month=month,
                route=decision.route,
                ground=decision.ground,
                rule=decision.rule,
                offered=entry,
            )
        )
        waiting = self._unsettled.get(call.call_id)
        if waiting is not None:  # the call is not on the consoles yet: keep the order
            waiting.later.append(CallRouted(record, decision, False))
            return
        self.events.publish(CallRouted(record, decision, False))

    def records_settled(
        self, records: Sequence[CallRecord], new_flags: Sequence[bool | None]
    ) -> None:
        """The write path settled ``records`` (CallWriter ``on_records``): for each one
        this replica submitted, count it in ``regulator_calls_total`` and publish
        :class:`CallRouted` (consoles, SSE, outbox) if it was the call's first record
        (True), drop it silently if the store already had one (False: a replay).

        None (the store failed, the record went to the spool): today's behaviour, the
        call is counted and published at once as first, since nothing can tell yet; a
        replay during an outage may then count twice. A record this process did not
        submit (a previous process's journal or spool, replayed after a restart) that
        the store takes as new is published (the outbox must learn of an answered call
        even after a ``kill -9``) but not counted: that process's counters died with it."""
        for record, new in zip(records, new_flags, strict=True):
            waiting = self._unsettled.pop(record.call_id, None)
            if waiting is None:
                if new is True and record.call_id not in self._published:
                    # A previous process answered the call and died before the store
                    # had it (its journal, replayed): the outbox must still learn of
                    # it (event ids are derived, a receiver de-duplicates).
                    self._publish_first(record, _decision_of(record))
                continue
            if new is False:
                log.info("webhook_replay_not_counted", call_id=record.call_id)
            else:
                self._count(record, waiting.decision)
                self._publish_first(record, waiting.decision)
            for later in waiting.later:
                self.events.publish(later)

    def _publish_first(self, record: CallRecord, decision: Decision) -> None:
        self._published[record.call_id] = None
        self._published.move_to_end(record.call_id)
        while len(self._published) > OFFERED_MEMORY_CALLS:
            self._published.popitem(last=False)
        self.events.publish(CallRouted(record, decision, True))

    def _count(self, record: CallRecord, decision: Decision) -> None:
        labels = (
            record.mmg,
            record.platform,
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

    def _remember_record(self, record: CallRecord, first: bool) -> None:
        known = self._recent.get(record.call_id)
        if known is not None and not first:
            # A later decision: the call keeps its first webhook's caller and time.
            record = dataclasses.replace(
                record, caller=known.caller or record.caller, at=known.at, hour=known.hour
            )
        self._recent[record.call_id] = record
        self._recent.move_to_end(record.call_id)
        while len(self._recent) > OFFERED_MEMORY_CALLS:
            self._recent.popitem(last=False)

    async def _ended_call(self, ev: CallEvent) -> CallRecord | None:
        """The call ``ev`` ends, as recorded (store first: any replica may have routed
        it), with the final status and duration; None if nobody knows the call."""
        record = await self._read("get_call", self.store.get_call(ev.call_id), "ended_call")
        if record is None:
            record = self._recent.get(ev.call_id)
        if record is None:
            return None
        duration = ev.duration_s if ev.duration_s is not None else record.duration_s
        return dataclasses.replace(record, status=ev.status, duration_s=duration)

    async def event(self, ev: CallEvent) -> None:
        """A status callback: completes the call record (status, duration) and, once the
        call has ended, publishes :class:`CallEnded` (before the callback is answered,
        so the outbox journals ``call.completed`` as it does ``call.routed``; after the
        call's ``call.routed`` when that still waits for the write path)."""
        self._submit_status(ev)
        if ev.status not in FINAL_STATUSES or not self.events.wants(CallEnded):
            return
        ended = await self._ended_call(ev)
        if ended is None:
            log.warning("ended_call_unknown", status=ev.status)
            return
        self._recent.pop(ev.call_id, None)
        waiting = self._unsettled.get(ev.call_id)
        if waiting is not None:  # after its call.routed, which waits for the store
            waiting.later.append(CallEnded(ended))
            return
        self.events.publish(CallEnded(ended))

    async def leg_event(self, ev: LegEvent) -> None:
        """A dial-leg event (core/legs.py): queued for the store, never raises.

        The MMG, when the platform's callback does not carry it, is the one this
        replica gave the call to, else the call's stored route history (read within
        the store budget); unknown, the store keeps the leg's own."""
        try:
            if not ev.mmg:
                mmg = await self._mmg_of(ev.call_id)
                if mmg:
                    ev = dataclasses.replace(ev, mmg=mmg)
            self.writer.submit_leg(ev)
        except Exception:  # a leg report must be answered whatever happens
            log.exception("leg_event_failed")

    async def caller_of(self, call_id: str) -> str | None:
        """The caller's number as recorded for ``call_id`` (this replica's memory, else
        the store within its budget); None when unknown. Never raises: the whisper
        that asks goes on without the number."""
        known = self._recent.get(call_id)
        if known is not None:
            return known.caller or None
        record = await self._read("get_call", self.store.get_call(call_id), "caller")
        if record is None:
            return None
        return record.caller or None

    async def first_answer(
        self, platform: str, call_id: str, stage: Stage, digits: str
    ) -> HookAnswer | None:
        """The first answer any replica gave this later-stage webhook (kept in the
        store for ``HOOK_ANSWER_TTL_S``), None if none or the store can't say in time.

        One store read, only for webhooks after the first (menu digits), and only when
        this replica's answer cache lacks it: a replayed webhook then gets its first
        answer instead of routing the call again. Never for ``Stage.INCOMING``: the
        first webhook's answer waits on no store read (its replays are settled in the
        write path, :meth:`records_settled`)."""
        if stage is Stage.INCOMING:
            return None
        return await self._read(
            "hook_answer", self.store.hook_answer(platform, call_id, stage.value, digits)
        )

    def keep_answer(
        self, platform: str, call_id: str, stage: Stage, digits: str, body: bytes, ctype: str
    ) -> None:
        """Queue a later-stage webhook's answer for the store (write-behind, first wins)."""
        if stage is Stage.INCOMING:
            return
        self.writer.submit_answer(
            HookAnswer(platform, call_id, stage.value, digits, body, ctype, self.clock.now())
        )

    async def _mmg_of(self, call_id: str) -> str | None:
        remembered = self._offered.get(call_id)
        if remembered is not None and remembered[0]:
            return remembered[0]
        stored = await self._read("route_history", self.store.route_history(call_id))
        return stored.mmg if stored is not None else None

    def _submit_status(self, ev: CallEvent) -> None:
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


def _decision_of(record: CallRecord) -> Decision:
    """The decision as a record keeps it (what CallRouted's subscribers read)."""
    return Decision(
        mmg=record.mmg,
        route=record.route,
        rule=record.rule,
        destination=None,
        ground=record.ground,
        day_type=record.day_type,
        failsafe=record.failsafe,
    )


@dataclass(slots=True)
class _Unsettled:
    """A first record on its way to the store, and the later decisions held behind it."""

    record: CallRecord
    decision: Decision
    later: list[CallRouted | CallEnded] = dataclasses.field(default_factory=list)


def _merge(first: tuple[Route, ...], second: tuple[Route, ...]) -> tuple[Route, ...]:
    """``first`` then the routes of ``second`` it lacks, in order (each route once)."""
    if not second or second == first:
        return first
    return first + tuple(r for r in dict.fromkeys(second) if r not in first)
