"""Builders of stored values for the contract tests (plain functions, no I/O)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from regulator.core.indicators import call_counter_deltas
from regulator.core.models import (
    CallRecord,
    DayType,
    Ground,
    Outcome,
    Referral,
    ReferralEvent,
    ReferralStatus,
    Route,
    Visit,
    VisitChannel,
)

MMG = "nimes"
OTHER_MMG = "ales"
MONTH = "2026-11"
T0 = datetime(2026, 11, 24, 19, 30, tzinfo=UTC)  # 20:30 in Nîmes, a Tuesday
CALLER = "+33611223344"


def call(
    call_id: str,
    *,
    mmg: str = MMG,
    month: str = MONTH,
    at: datetime = T0,
    route: Route = Route.REGULATION,
    ground: Ground | None = None,
    day_type: DayType = DayType.WEEKDAY,
    hour: int = 20,
    failsafe: bool = False,
    platform: str = "twilio",
    caller: str = CALLER,
    routes: tuple[Route, ...] = (),
) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        mmg=mmg,
        platform=platform,
        caller=caller,
        at=at,
        month=month,
        day_type=day_type,
        hour=hour,
        route=route,
        ground=ground,
        rule="test rule",
        failsafe=failsafe,
        routes=routes,
    )


def expected_counters(records: Iterable[CallRecord]) -> dict[str, int]:
    """What the counters must say for these (distinct) records, per the indicators module."""
    total: Counter[str] = Counter()
    for record in records:
        total.update(call_counter_deltas(record))
    return {key: value for key, value in total.items() if value}


def referral(
    referral_id: str,
    *,
    mmg: str = MMG,
    created_at: datetime = T0,
    status: ReferralStatus = ReferralStatus.PENDING,
    callback_number: str | None = CALLER,
) -> Referral:
    return Referral(
        id=referral_id,
        mmg=mmg,
        case_id=f"DRFR15030{referral_id}",
        patient_display_name="M. D.",
        status=status,
        created_at=created_at,
        updated_at=created_at,
        created_by="samu30-poste1",
        patient_age_band="18-64",
        callback_number=callback_number,
        reason="fièvre",
        urgency="P2",
        expected_at=created_at + timedelta(minutes=45),
        tiers_payant=True,
        note="",
        history=(ReferralEvent(status=status, at=created_at, by="samu30-poste1"),),
    )


def advance(
    ref: Referral, status: ReferralStatus, *, minutes: int = 10, **changes: object
) -> Referral:
    """The next version of ``ref`` as the referral workflow would save it."""
    at = ref.updated_at + timedelta(minutes=minutes)
    return replace(
        ref,
        status=status,
        updated_at=at,
        version=ref.version + 1,
        history=(*ref.history, ReferralEvent(status=status, at=at, by="accueil-nimes")),
        **changes,  # type: ignore[arg-type]
    )


def visit(
    visit_id: str,
    *,
    mmg: str = MMG,
    month: str = MONTH,
    at: datetime = T0,
    channel: VisitChannel = VisitChannel.DIRECT,
    outcome: Outcome | None = Outcome.HOME,
    acts: int = 1,
    referral_id: str | None = None,
    case_id: str | None = None,
    tiers_payant: bool = False,
) -> Visit:
    return Visit(
        id=visit_id,
        mmg=mmg,
        channel=channel,
        at=at,
        month=month,
        day_type=DayType.WEEKDAY,
        hour=at.hour,
        outcome=outcome,
        acts=acts,
        age_band="18-64",
        reason="fièvre",
        referral_id=referral_id,
        case_id=case_id,
        tiers_payant=tiers_payant,
    )
