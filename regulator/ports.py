"""Interfaces between the service and the outside world (typing.Protocol).

``Store`` is implemented by :mod:`regulator.storage.sqlite` and
:mod:`regulator.storage.redis`; both pass the same contract suite in
``tests/contract``. Every method is idempotent where the docstring says so,
because platforms retry and replicas race.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, runtime_checkable

from regulator.core.figures import FigureEntry, FigureKind
from regulator.core.history import ProtocolVersion
from regulator.core.legs import Leg, LegChange, LegEvent
from regulator.core.models import (
    CallRecord,
    CallUpdate,
    HookAnswer,
    Referral,
    ReferralStatus,
    Route,
    Visit,
)
from regulator.core.sessions import ConsoleSession


class Clock(Protocol):
    """Where time comes from; injected so tests can pin it."""

    def now(self) -> datetime:
        """An aware UTC instant."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that only moves when told to (tests, CLI dry runs)."""

    def __init__(self, instant: datetime) -> None:
        if instant.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self.instant = instant

    def now(self) -> datetime:
        return self.instant

    def set(self, instant: datetime) -> None:
        self.instant = instant


class StoreError(Exception):
    """The store could not do what was asked (unreachable, full, read-only…)."""


@dataclass(frozen=True, slots=True)
class RouteHistory:
    """What the store knows of the destinations one call was given (:meth:`Store.route_history`)."""

    mmg: str
    #: The destinations offered, oldest first, none twice; the last is the one a
    #: failed dial without a named target is about.
    routes: tuple[Route, ...]
    #: The caller's number as recorded by the call's first webhook: later webhooks may
    #: not carry it (a Vonage failed leg's ``from`` is the MMG number we presented).
    caller: str = ""

    @property
    def last(self) -> Route | None:
        return self.routes[-1] if self.routes else None


class IdempotencyMismatch(Exception):
    """An Idempotency-Key reused with another request than the one it was first sent
    with: ``fingerprint`` is the first request's (the caller tells which fields
    differ); ``existing_id`` what it created. Nothing is written."""

    def __init__(self, existing_id: str, fingerprint: str) -> None:
        super().__init__(f"idempotency key reused with another request (first: {existing_id})")
        self.existing_id = existing_id
        self.fingerprint = fingerprint


@runtime_checkable
class Store(Protocol):
    """Persistence of calls, referrals and visits."""

    name: str

    async def open(self) -> None:
        """Connect and create the schema if needed."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise :class:`StoreError` if the store cannot serve requests now."""
        ...

    # ---- calls ----------------------------------------------------------
    async def record_calls(self, records: Sequence[CallRecord]) -> list[bool]:
        """Insert call records in one transaction, idempotent by ``call_id``.

        Returns, per record, True if it was new. Counters (see
        :func:`regulator.core.indicators.call_counter_deltas`) move only for new records.
        The first record of a call id wins: a repeat (in the same batch or later) is
        ignored and reported False. A new record is stored with the updates that
        arrived before it already applied (see :meth:`update_calls`), and counted as such.
        """
        ...

    async def update_calls(self, updates: Sequence[CallUpdate]) -> None:
        """Apply later facts to recorded calls; a route change moves the route counters.

        A new ``route`` replaces the ground too (``update.ground``, possibly None); the
        counter moves are :func:`regulator.core.indicators.reroute_deltas`, booked on the
        call's stored MMG and month. Updates in one batch apply in order.
        Idempotent: applying the same update twice changes nothing the second time.
        Only the fields an update carries are written: concurrent updates of different
        fields (a status, a duration) from two replicas both stay. An update for a call
        not recorded yet is kept and applied when ``record_calls`` stores the record
        (at most ``codec.ORPHAN_LIMIT`` per call; ``purge_calls`` drops those older
        than ``codec.ORPHAN_TTL``); it creates no record by itself.
        """
        ...

    async def get_call(self, call_id: str) -> CallRecord | None: ...

    async def route_history(self, call_id: str) -> RouteHistory | None:
        """The call's MMG and its route history (``CallRecord.routes``, extended by
        every route change ``update_calls`` applied), or None if no record of the call is
        stored. A record stored before route histories existed has its route as history.

        Read by whichever replica receives a failed-dial webhook: the answer must not
        depend on which replica gave the destination that failed."""
        ...

    async def call_counters(self, mmg: str, month: str) -> dict[str, int]:
        """Pre-aggregated call counters of one MMG and month (no scan of the log).

        Keys whose value is 0 (a route every call left) are omitted."""
        ...

    async def purge_calls(self, before: datetime) -> int:
        """Delete call records with ``at < before`` (they hold phone numbers), and
        updates kept for calls never recorded older than ``codec.ORPHAN_TTL``; counters
        are kept. Returns how many call records were deleted."""
        ...

    # ---- dial legs (core/legs.py) ---------------------------------------------
    async def record_leg_events(self, events: Sequence[LegEvent]) -> list[LegChange]:
        """Fold each event into its leg ``(call_id, target)`` (:func:`regulator.core.
        legs.fold`), atomically per leg, and return one :class:`LegChange` per event in
        order (the leg before and after that event, as settled: with two replicas
        folding events of one leg, each change reflects the other's writes).

        Idempotent and order-proof: a repeated event gives ``before == after``. An event
        with an empty ``mmg`` takes the stored leg's (the router fills it first where it
        can). Legs are kept as long as call records (``purge_calls`` drops legs offered
        before its cutoff)."""
        ...

    async def legs(self, mmg: str, start: datetime, end: datetime) -> list[Leg]:
        """The legs of ``mmg`` offered in ``[start, end)`` (aware instants), oldest
        first: what the answer-quality figures and the consoles read."""
        ...

    # ---- replay guards (issue 18) -----------------------------------------
    async def record_answers(self, answers: Sequence[HookAnswer]) -> list[bool]:
        """Keep the first answer of each webhook (:attr:`HookAnswer.key`) for
        :data:`~regulator.core.models.HOOK_ANSWER_TTL_S` after it is stored (the store's
        clock); returns, per answer, True if it was the first (a later one, in the batch
        or stored, is ignored)."""
        ...

    async def hook_answer(
        self, platform: str, call_id: str, stage: str, digits: str
    ) -> HookAnswer | None:
        """The first answer kept for that webhook, None if none (or expired)."""
        ...

    async def claim_token_id(
        self, scope: str, token_id: str, now: float, expires_at: float
    ) -> bool:
        """Claim a signed token's id (a JWT ``jti``) from ``now`` until ``expires_at``
        (Unix times, the request's clock):
        True the first time, False if it was already claimed and has not expired (a
        replayed token, whichever replica saw it first). Atomic across replicas."""
        ...

    # ---- referrals --------------------------------------------------------
    async def create_referral(
        self, referral: Referral, idempotency_key: str | None, fingerprint: str = ""
    ) -> tuple[Referral, bool]:
        """Store a new referral. With an idempotency key already used, return the
        referral created then and False; likewise if ``referral.id`` already exists.

        ``fingerprint`` (opaque, the request's) is kept with the key: a later use of
        the key with another non-empty fingerprint raises :class:`IdempotencyMismatch`
        (a key recorded without one matches any request)."""
        ...

    async def get_referral(self, referral_id: str) -> Referral | None: ...

    async def list_referrals(
        self,
        *,
        mmg: str | None = None,
        mmgs: frozenset[str] | None = None,
        statuses: frozenset[ReferralStatus] | None = None,
        limit: int = 200,
        before: tuple[datetime, str] | None = None,
    ) -> list[Referral]:
        """Newest first (``created_at``, then id, descending), at most ``limit``.

        ``mmg``, ``mmgs`` (the caller's scope; None = every MMG, empty = none) and
        ``statuses`` all filter *before* ``limit`` applies: a caller scoped to one MMG
        gets that MMG's newest, however many newer referrals other MMGs have.
        ``before`` = (``created_at``, ``id``) of the last referral of the previous page
        continues the listing (keyset paging: nothing skipped while statuses change).
        """
        ...

    async def save_referral(
        self, referral: Referral, expected_version: int, visit: Visit | None = None
    ) -> bool:
        """Compare-and-set: replace the referral if its stored version is
        ``expected_version`` and, in the same transaction, upsert ``visit``.
        Returns False (writing nothing) if someone else changed it first."""
        ...

    async def has_pending_referral(self, mmg: str, caller: str) -> bool:
        """True if ``caller`` (E.164) has a pending or acknowledged referral to ``mmg``."""
        ...

    # ---- visits --------------------------------------------------------------
    async def add_visit(
        self, visit: Visit, idempotency_key: str | None, fingerprint: str = ""
    ) -> tuple[Visit, bool]:
        """Store a walk-in visit; idempotent by key like :meth:`create_referral`."""
        ...

    async def visits(self, mmg: str, month: str) -> list[Visit]:
        """All visits of one MMG and month, oldest first (a month holds a few thousand)."""
        ...

    # ---- entered figures (core.figures) -------------------------------------
    async def put_figures(self, entry: FigureEntry) -> FigureEntry | None:
        """Make ``entry`` the current figures of its MMG, kind and period and append it
        to their history, atomically; return the entry it replaced (None if first)."""
        ...

    async def get_figures(self, mmg: str, kind: FigureKind, period: str) -> FigureEntry | None:
        """The current entry, or None when nothing was entered (never zeros)."""
        ...

    async def figures_history(self, mmg: str, kind: FigureKind, period: str) -> list[FigureEntry]:
        """Every entry of that MMG, kind and period, oldest first (the audit trail)."""
        ...

    # ---- protocol versions (core/history.py) ------------------------------------
    async def add_protocol_version(self, version: ProtocolVersion) -> bool:
        """Record that ``version`` came into force (first load or accepted reload).

        Idempotent: if it already is the newest version of its MMG, nothing is written
        and False returned (every replica records its first load). A known version
        that is not the newest (a reload back to it) moves to the top with this
        ``loaded_at``, file hashes and summary; a new one is inserted. True then.
        """
        ...

    async def protocol_history(self, mmg: str, limit: int = 100) -> list[ProtocolVersion]:
        """The versions of one MMG, newest first (``loaded_at``, then version)."""
        ...

    async def get_protocol_version(self, mmg: str, version: str) -> ProtocolVersion | None:
        """One stored version with its document (what ``regulator explain`` re-runs)."""
        ...

    async def purge_protocol_versions(
        self, before: datetime, keep: Collection[tuple[str, str]]
    ) -> int:
        """Delete versions loaded before ``before`` that no call record at or after
        ``before`` names and that are not in ``keep`` (``(mmg, version)`` pairs: those
        in force, or queued calls may name them).

        Run with the cutoff of :meth:`purge_calls`: a version is kept as long as a call
        record within retention names it. Returns how many versions were deleted."""
        ...

    # ---- console sessions (core/sessions.py) -------------------------------------
    async def create_session(self, session: ConsoleSession) -> None:
        """Store a new session (its key is the hash of the cookie's id); sessions that
        have ended may be dropped meanwhile."""
        ...

    async def get_session(
        self, key: str, now: datetime, *, touch: bool = True
    ) -> ConsoleSession | None:
        """The live session of ``key`` at ``now``, or None (unknown, ended, deleted).

        With ``touch``, a use at ``now`` is written back when the stored one is stale
        (``ConsoleSession.needs_touch``), restarting its idle timeout; a session
        deleted meanwhile is never brought back."""
        ...

    async def delete_session(self, key: str) -> bool:
        """End one session (sign-out); False if there was none."""
        ...

    async def delete_sessions_of(self, token_name: str) -> int:
        """End every session opened with the token ``token_name`` (token removed from
        the tokens file); how many there were."""
        ...


__all__ = [
    "Clock",
    "FixedClock",
    "IdempotencyMismatch",
    "RouteHistory",
    "Store",
    "StoreError",
    "SystemClock",
]


# ---------------------------------------------------------------------------- outbox
# The outbox port and its value types: the stores (storage/outbox_*.py) implement it,
# the interconnect drives it; neither imports the other.

EventKind = Literal[
    "call.routed",
    "call.completed",
    "referral.created",
    "referral.acknowledged",
    "referral.arrived",
    "referral.completed",
    "referral.cancelled",
    "referral.no_show",
]

#: Every event kind, in life-cycle order.
EVENT_KINDS: Final[tuple[EventKind, ...]] = (
    "call.routed",
    "call.completed",
    "referral.created",
    "referral.acknowledged",
    "referral.arrived",
    "referral.completed",
    "referral.cancelled",
    "referral.no_show",
)


class NumberPolicy(Protocol):
    """What a target allows of full phone numbers (see :func:`payload_for`)."""

    @property
    def full_numbers(self) -> bool: ...

    @property
    def include_caller(self) -> bool: ...


#: Payload keys holding full phone numbers; dropped for targets that did not opt in.
FULL_NUMBER_KEYS: Final = frozenset({"caller_e164", "callback_number_e164"})
#: The caller's own number in call events: only for targets with ``include_caller``.
CALLER_NUMBER_KEY: Final = "caller_e164"


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One fact pushed to the regulation centres.

    ``payload`` is JSON-able (strings, numbers, booleans, None, lists, dicts).
    """

    event_id: str
    kind: EventKind
    mmg: str
    occurred_at: datetime  # aware, UTC
    payload: dict[str, Any]

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise ValueError("OutboxEvent.occurred_at must be an aware datetime")
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}")

    def as_json(self, *, full_numbers: bool = True, include_caller: bool = True) -> dict[str, Any]:
        """The JSON document a webhook receives (and, with every number, the outbox stores)."""
        return {
            "event_id": self.event_id,
            "kind": self.kind,
            "mmg": self.mmg,
            "occurred_at": self.occurred_at.astimezone(UTC).isoformat(),
            "payload": payload_for(self, full_numbers, include_caller),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutboxEvent:
        """Inverse of :meth:`as_json` (used by the stores)."""
        return cls(
            event_id=str(data["event_id"]),
            kind=data["kind"],
            mmg=str(data["mmg"]),
            occurred_at=datetime.fromisoformat(str(data["occurred_at"])).astimezone(UTC),
            payload=dict(data["payload"]),
        )

    def without_full_numbers(self) -> OutboxEvent:
        """The same event with the full numbers removed (nothing to store for anyone)."""
        return OutboxEvent(
            self.event_id, self.kind, self.mmg, self.occurred_at, payload_for(self, False, False)
        )

    def numbers_for(self, targets: Sequence[NumberPolicy]) -> OutboxEvent:
        """The same event keeping only the full numbers one of ``targets`` may see
        (what the outbox stores: nothing no receiver is entitled to)."""
        full = any(t.full_numbers for t in targets)
        caller = any(t.include_caller for t in targets)
        if full and caller:
            return self
        payload = payload_for(self, full, caller)
        return OutboxEvent(self.event_id, self.kind, self.mmg, self.occurred_at, payload)


def payload_for(event: OutboxEvent, full_numbers: bool, include_caller: bool) -> dict[str, Any]:
    """The payload as a target may see it: the caller's own number (``caller_e164``)
    only with ``include_caller``, the other full numbers only with ``full_numbers``."""
    if full_numbers and include_caller:
        return dict(event.payload)
    return {
        k: v
        for k, v in event.payload.items()
        if k not in FULL_NUMBER_KEYS or (include_caller if k == CALLER_NUMBER_KEY else full_numbers)
    }


#: How long a store remembers a delivery done: enqueueing the same event for the same
#: target again within this time (a journal replayed after a crash) is a no-op.
SENT_RETENTION_S = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event waiting for one target."""

    target: str
    event: OutboxEvent
    attempts: int  # attempts made so far
    since: datetime  # when it was enqueued (or redriven): the age max_age_s is measured from
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A delivery given up on; :meth:`OutboxStore.redrive` puts it back in the queue."""

    target: str
    event: OutboxEvent
    attempts: int
    error: str | None
    died_at: datetime


@runtime_checkable
class OutboxStore(Protocol):
    """Persistence of the outbox (SQLite: :mod:`regulator.storage.outbox_sqlite`,
    Redis: :mod:`regulator.storage.outbox_redis`). Every mark is a no-op for a
    delivery that no longer exists (already delivered, dead or redriven)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def enqueue(
        self, events: Sequence[OutboxEvent], targets: Sequence[str], now: datetime
    ) -> int:
        """Add a delivery of each event to each target, in one write; idempotent by
        (target, event_id), also for a delivery done less than ``SENT_RETENTION_S``
        (counted from its enqueue) ago. Returns how many deliveries were new."""
        ...

    async def due(
        self, target: str, now: datetime, limit: int, lease_s: float = 60.0
    ) -> list[Delivery]:
        """Up to ``limit`` deliveries of ``target`` whose next attempt is at or
        before ``now``, oldest first; each is leased until ``now + lease_s``."""
        ...

    async def mark_delivered(self, target: str, event_id: str) -> bool:
        """Remove the delivery (pending or dead) and remember it as done (see
        :meth:`enqueue`). True if it existed."""
        ...

    async def mark_retry(
        self, target: str, event_id: str, next_at: datetime, attempts: int, error: str | None
    ) -> bool:
        """Schedule the next attempt of a pending delivery."""
        ...

    async def mark_dead(
        self,
        target: str,
        event_id: str,
        error: str | None,
        died_at: datetime,
        attempts: int | None = None,
    ) -> bool:
        """Move a pending delivery to the dead list (``attempts`` None keeps the stored count)."""
        ...

    async def dead(self, target: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters of one target (or all), oldest first."""
        ...

    async def redrive(self, target: str, event_ids: Sequence[str] | None, now: datetime) -> int:
        """Move dead letters (all of ``target``'s when ``event_ids`` is None) back to
        pending, due now, with zero attempts and a fresh age. Returns how many."""
        ...

    async def pending_count(self, target: str | None = None) -> int:
        """Pending deliveries (not dead) of one target or of all."""
        ...
