"""Interfaces between the service and the outside world (typing.Protocol).

``Store`` is implemented by :mod:`regulator.storage.sqlite` and
:mod:`regulator.storage.redis`; both pass the same contract suite in
``tests/contract``. Every method is idempotent where the docstring says so,
because platforms retry and replicas race.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from regulator.core.figures import FigureEntry, FigureKind
from regulator.core.models import (
    CallRecord,
    CallUpdate,
    Referral,
    ReferralStatus,
    Route,
    Visit,
)


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

    # ---- referrals --------------------------------------------------------
    async def create_referral(
        self, referral: Referral, idempotency_key: str | None
    ) -> tuple[Referral, bool]:
        """Store a new referral. With an idempotency key already used, return the
        referral created then and False; likewise if ``referral.id`` already exists."""
        ...

    async def get_referral(self, referral_id: str) -> Referral | None: ...

    async def list_referrals(
        self,
        *,
        mmg: str | None = None,
        statuses: frozenset[ReferralStatus] | None = None,
        limit: int = 200,
    ) -> list[Referral]:
        """Newest first (``created_at``, then id, descending)."""
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
    async def add_visit(self, visit: Visit, idempotency_key: str | None) -> tuple[Visit, bool]:
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


__all__ = ["Clock", "FixedClock", "RouteHistory", "Store", "StoreError", "SystemClock"]
