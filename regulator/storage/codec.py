"""Plain-dict and JSON forms of the stored domain values, shared by every store and the spool.

One codec so a record spooled by one version of the service and replayed by another,
or written to SQLite and to Redis, reads back the same. Instants are stored as
integer microseconds since the Unix epoch (exact, sortable) in indexes and as
RFC 3339 strings in JSON documents.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from regulator.core.indicators import reroute_deltas
from regulator.core.legs import Leg, LegChange, LegEvent, LegOutcome, LegStatus, fold
from regulator.core.models import (
    HISTORY_ROUTES,
    CallRecord,
    CallUpdate,
    DayType,
    Ground,
    HookAnswer,
    Outcome,
    Referral,
    ReferralEvent,
    ReferralStatus,
    Route,
    Visit,
    VisitChannel,
)
from regulator.core.referrals import OPEN_STATUSES

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def to_us(instant: datetime) -> int:
    """Exact integer microseconds since the epoch of an aware instant."""
    if instant.tzinfo is None:
        raise ValueError("naive datetime where an aware instant is required")
    return (instant - _EPOCH) // _MICRO


def from_us(us: int) -> datetime:
    """The aware UTC instant of :func:`to_us`."""
    return _EPOCH + timedelta(microseconds=us)


def _dt(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _opt_dt(value: Any) -> datetime | None:
    return None if value is None else _dt(value)


def dumps(value: Any) -> bytes:
    """orjson with the options every stored document uses (dataclasses, enums, instants)."""
    return orjson.dumps(value)


loads = orjson.loads


# ------------------------------------------------------------------- call records

_HISTORY = frozenset(r.value for r in HISTORY_ROUTES)


def routes_to_text(routes: tuple[Route, ...]) -> str:
    """A route history as stored in a column or hash field: ``direct_access,regulation``."""
    return ",".join(r.value for r in routes)


def routes_from_text(text: str | None) -> tuple[Route, ...]:
    """The stored route history; unknown names (a newer version's) are skipped."""
    if not text:
        return ()
    return tuple(Route(name) for name in text.split(",") if name in _HISTORY)


def add_route(history: str, route: Route) -> str:
    """``history`` with ``route`` appended if it is a history route not there yet.

    A history never holds a route twice, so re-applying an update changes nothing."""
    if route.value not in _HISTORY or route.value in history.split(","):
        return history
    return f"{history},{route.value}" if history else route.value


def history_of(route: Route, routes: tuple[Route, ...]) -> tuple[Route, ...]:
    """The route history of a stored call: a record written before histories existed
    (empty) has its own route as history."""
    if routes:
        return routes
    return (route,) if route in HISTORY_ROUTES else ()


def record_to_dict(record: CallRecord) -> dict[str, Any]:
    """A record's fields as a line holds them. ``spool.encode`` lets orjson write the
    dataclass itself, one per webhook; its bytes must stay this mapping's
    (tests/unit/test_spool_lines.py)."""
    return {
        "call_id": record.call_id,
        "mmg": record.mmg,
        "platform": record.platform,
        "caller": record.caller,
        "at": record.at.isoformat(),
        "month": record.month,
        "day_type": record.day_type.value,
        "hour": record.hour,
        "route": record.route.value,
        "ground": record.ground.value if record.ground is not None else None,
        "rule": record.rule,
        "failsafe": record.failsafe,
        "status": record.status,
        "duration_s": record.duration_s,
        "routes": [r.value for r in record.routes],
        "protocol_version": record.protocol_version,
    }


def record_from_dict(data: dict[str, Any]) -> CallRecord:
    ground = data.get("ground")
    duration = data.get("duration_s")
    return CallRecord(
        call_id=str(data["call_id"]),
        mmg=str(data["mmg"]),
        platform=str(data["platform"]),
        caller=str(data["caller"]),
        at=_dt(data["at"]),
        month=str(data["month"]),
        day_type=DayType(data["day_type"]),
        hour=int(data["hour"]),
        route=Route(data["route"]),
        ground=Ground(ground) if ground else None,
        rule=str(data["rule"]),
        failsafe=bool(data.get("failsafe", False)),
        status=str(data.get("status", "in_progress")),
        duration_s=int(duration) if duration is not None else None,
        routes=tuple(Route(r) for r in data.get("routes") or () if r in _HISTORY),
        protocol_version=str(data.get("protocol_version") or ""),
    )


def update_to_dict(update: CallUpdate) -> dict[str, Any]:
    return {
        "call_id": update.call_id,
        "mmg": update.mmg,
        "month": update.month,
        "route": update.route.value if update.route is not None else None,
        "ground": update.ground.value if update.ground is not None else None,
        "rule": update.rule,
        "status": update.status,
        "duration_s": update.duration_s,
        "offered": update.offered.value if update.offered is not None else None,
    }


def update_from_dict(data: dict[str, Any]) -> CallUpdate:
    route = data.get("route")
    ground = data.get("ground")
    duration = data.get("duration_s")
    return CallUpdate(
        call_id=str(data["call_id"]),
        mmg=str(data["mmg"]),
        month=str(data["month"]),
        route=Route(route) if route else None,
        ground=Ground(ground) if ground else None,
        rule=data.get("rule"),
        status=data.get("status"),
        duration_s=int(duration) if duration is not None else None,
        offered=Route(data["offered"]) if data.get("offered") else None,
    )


# ---------------------------------------------------------------------- referrals


def referral_to_dict(referral: Referral) -> dict[str, Any]:
    return {
        "id": referral.id,
        "mmg": referral.mmg,
        "case_id": referral.case_id,
        "patient_display_name": referral.patient_display_name,
        "status": referral.status.value,
        "created_at": referral.created_at.isoformat(),
        "updated_at": referral.updated_at.isoformat(),
        "created_by": referral.created_by,
        "version": referral.version,
        "patient_age_band": referral.patient_age_band,
        "callback_number": referral.callback_number,
        "reason": referral.reason,
        "urgency": referral.urgency,
        "expected_at": referral.expected_at.isoformat() if referral.expected_at else None,
        "tiers_payant": referral.tiers_payant,
        "note": referral.note,
        "outcome": referral.outcome.value if referral.outcome is not None else None,
        "acts": referral.acts,
        "visit_id": referral.visit_id,
        "history": [
            {"status": e.status.value, "at": e.at.isoformat(), "by": e.by} for e in referral.history
        ],
    }


def referral_from_dict(data: dict[str, Any]) -> Referral:
    outcome = data.get("outcome")
    acts = data.get("acts")
    return Referral(
        id=str(data["id"]),
        mmg=str(data["mmg"]),
        case_id=str(data["case_id"]),
        patient_display_name=str(data["patient_display_name"]),
        status=ReferralStatus(data["status"]),
        created_at=_dt(data["created_at"]),
        updated_at=_dt(data["updated_at"]),
        created_by=str(data["created_by"]),
        version=int(data.get("version", 1)),
        patient_age_band=data.get("patient_age_band"),
        callback_number=data.get("callback_number"),
        reason=data.get("reason"),
        urgency=data.get("urgency"),
        expected_at=_opt_dt(data.get("expected_at")),
        tiers_payant=bool(data.get("tiers_payant", False)),
        note=str(data.get("note", "")),
        outcome=Outcome(outcome) if outcome else None,
        acts=int(acts) if acts is not None else None,
        visit_id=data.get("visit_id"),
        history=tuple(
            ReferralEvent(status=ReferralStatus(e["status"]), at=_dt(e["at"]), by=str(e["by"]))
            for e in data.get("history", ())
        ),
    )


def referral_to_json(referral: Referral) -> bytes:
    return dumps(referral_to_dict(referral))


def referral_from_json(raw: bytes | str) -> Referral:
    return referral_from_dict(loads(raw))


# ------------------------------------------------------------------------- visits


def visit_to_dict(visit: Visit) -> dict[str, Any]:
    return {
        "id": visit.id,
        "mmg": visit.mmg,
        "channel": visit.channel.value,
        "at": visit.at.isoformat(),
        "month": visit.month,
        "day_type": visit.day_type.value,
        "hour": visit.hour,
        "outcome": visit.outcome.value if visit.outcome is not None else None,
        "acts": visit.acts,
        "age_band": visit.age_band,
        "reason": visit.reason,
        "referral_id": visit.referral_id,
        "case_id": visit.case_id,
        "tiers_payant": visit.tiers_payant,
    }


def visit_from_dict(data: dict[str, Any]) -> Visit:
    outcome = data.get("outcome")
    channel = VisitChannel(data["channel"])
    return Visit(
        id=str(data["id"]),
        mmg=str(data["mmg"]),
        channel=channel,
        at=_dt(data["at"]),
        month=str(data["month"]),
        day_type=DayType(data["day_type"]),
        hour=int(data["hour"]),
        outcome=Outcome(outcome) if outcome else None,
        acts=int(data.get("acts", 0)),
        age_band=data.get("age_band"),
        reason=data.get("reason"),
        referral_id=data.get("referral_id"),
        case_id=data.get("case_id"),
        # Visits written before the field existed: the rule for their channel.
        tiers_payant=bool(data.get("tiers_payant", channel is VisitChannel.REGULATION)),
    )


def visit_to_json(visit: Visit) -> bytes:
    return dumps(visit_to_dict(visit))


def visit_from_json(raw: bytes | str) -> Visit:
    return visit_from_dict(loads(raw))


#: Referral statuses for which a caller may reach the front desk directly: the open ones.
OPEN_FOR_CALLBACK = OPEN_STATUSES


def is_pending(referral: Referral) -> bool:
    """True if the referral makes its callback number a ``pending_referral`` caller."""
    return referral.status in OPEN_FOR_CALLBACK and bool(referral.callback_number)


# -------------------------------------------------------------------- call updates

#: Updates that reach a store before their call's record (another replica's writer has
#: not stored it yet) are kept this long, then dropped by the daily purge.
ORPHAN_TTL = timedelta(days=1)
#: At most this many early updates are kept per call id (a real call has a handful):
#: junk call ids can't grow the store without limit.
ORPHAN_LIMIT = 32


@dataclass(slots=True)
class CallState:
    """The mutable part of a stored call, as both stores read it before an update."""

    mmg: str
    month: str
    route: str
    ground: str | None
    rule: str
    status: str
    duration_s: int | None
    routes: str = ""  # the route history, as :func:`routes_to_text` writes it


def apply_update(state: CallState, update: CallUpdate) -> dict[str, int]:
    """Apply ``update`` to ``state`` in place; return the counter moves of a route change.

    A new route replaces the ground too (a menu choice to the pharmacy has none), and
    ``update.offered`` joins the route history (:func:`add_route`). Re-applying the same
    update finds the call already there: no counter moves, so updates are idempotent
    and a replay in order converges to the same state.
    """
    deltas: dict[str, int] = {}
    entry = update.offered or update.route  # updates spooled by older versions: the route
    if entry is not None and entry.value in _HISTORY:
        # A record stored before route histories existed: its route was the first offer.
        history = state.routes or (state.route if state.route in _HISTORY else "")
        state.routes = add_route(history, entry)
    if update.route is not None:
        new_route = update.route.value
        new_ground = update.ground.value if update.ground is not None else None
        deltas = reroute_deltas(state.route, state.ground, new_route, new_ground)
        state.route, state.ground = new_route, new_ground
    if update.rule is not None:
        state.rule = update.rule
    if update.status is not None:
        state.status = update.status
    if update.duration_s is not None:
        state.duration_s = update.duration_s
    return deltas


def record_with_updates(record: CallRecord, updates: Iterable[CallUpdate]) -> CallRecord:
    """``record`` as it is once ``updates`` (received before it) are applied in order.

    Its counters are then simply ``call_counter_deltas`` of the result: counting the
    final route once is the same as counting the first one and moving it.
    """
    state = CallState(
        record.mmg,
        record.month,
        record.route.value,
        record.ground.value if record.ground is not None else None,
        record.rule,
        record.status,
        record.duration_s,
        routes_to_text(history_of(record.route, record.routes)),
    )
    for update in updates:
        apply_update(state, update)
    return replace(
        record,
        route=Route(state.route),
        ground=Ground(state.ground) if state.ground else None,
        rule=state.rule,
        status=state.status,
        duration_s=state.duration_s,
        routes=routes_from_text(state.routes),
    )


def update_to_json(update: CallUpdate) -> bytes:
    return dumps(update_to_dict(update))


def update_from_json(raw: bytes | str) -> CallUpdate:
    return update_from_dict(loads(raw))


def leg_event_to_dict(ev: LegEvent) -> dict[str, Any]:
    return {
        "call_id": ev.call_id,
        "target": ev.target.value,
        "status": ev.status.value,
        "at": ev.at.isoformat(),
        "mmg": ev.mmg,
        "platform": ev.platform,
        "duration_s": ev.duration_s,
    }


def leg_event_from_dict(data: dict[str, Any]) -> LegEvent:
    duration = data.get("duration_s")
    return LegEvent(
        call_id=str(data["call_id"]),
        target=Route(data["target"]),
        status=LegStatus(data["status"]),
        at=_dt(data["at"]),
        mmg=str(data.get("mmg") or ""),
        platform=str(data.get("platform") or ""),
        duration_s=int(duration) if duration is not None else None,
    )


def answer_to_dict(answer: HookAnswer) -> dict[str, Any]:
    """A hook answer as JSON (the body in base64: JSON text can't carry any byte)."""
    return {
        "platform": answer.platform,
        "call_id": answer.call_id,
        "stage": answer.stage,
        "digits": answer.digits,
        "body": base64.b64encode(answer.body).decode("ascii"),
        "content_type": answer.content_type,
        "at": answer.at.isoformat(),
    }


def answer_from_dict(data: dict[str, Any]) -> HookAnswer:
    return HookAnswer(
        platform=str(data["platform"]),
        call_id=str(data["call_id"]),
        stage=str(data["stage"]),
        digits=str(data.get("digits") or ""),
        body=base64.b64decode(str(data["body"]), validate=True),
        content_type=str(data["content_type"]),
        at=_dt(data["at"]),
    )


def leg_to_dict(leg: Leg) -> dict[str, Any]:
    return {
        "call_id": leg.call_id,
        "target": leg.target.value,
        "mmg": leg.mmg,
        "platform": leg.platform,
        "offered_at": leg.offered_at.isoformat(),
        "answered_at": leg.answered_at.isoformat() if leg.answered_at else None,
        "ended_at": leg.ended_at.isoformat() if leg.ended_at else None,
        "outcome": leg.outcome.value if leg.outcome else None,
        "seen": sorted(status.value for status in leg.seen),
    }


def leg_from_dict(data: dict[str, Any]) -> Leg:
    answered, ended, outcome = data.get("answered_at"), data.get("ended_at"), data.get("outcome")
    return Leg(
        call_id=str(data["call_id"]),
        target=Route(data["target"]),
        mmg=str(data.get("mmg") or ""),
        platform=str(data.get("platform") or ""),
        offered_at=_dt(data["offered_at"]),
        answered_at=_dt(answered) if answered else None,
        ended_at=_dt(ended) if ended else None,
        outcome=LegOutcome(outcome) if outcome else None,
        seen=frozenset(LegStatus(status) for status in data.get("seen") or ()),
    )


def fold_events(
    stored: dict[tuple[str, Route], Leg], events: Sequence[LegEvent]
) -> tuple[list[LegChange], dict[tuple[str, Route], Leg]]:
    """Fold ``events`` in order into the ``stored`` legs (both stores' write path):
    one change per event, and the legs that changed, by ``(call_id, target)``."""
    current = dict(stored)
    changes: list[LegChange] = []
    changed: dict[tuple[str, Route], Leg] = {}
    for ev in events:
        key = (ev.call_id, ev.target)
        before = current.get(key)
        after = fold(before, ev)
        changes.append(LegChange(before, after))
        if after != before:
            current[key] = after
            changed[key] = after
    return changes, changed
