"""Builders of calls, referrals and targets for the interconnection tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from regulator.core.models import (
    CallRecord,
    DayType,
    Ground,
    Outcome,
    Referral,
    ReferralEvent,
    ReferralStatus,
    Route,
)
from regulator.interconnect.events import (
    HubSanteTarget,
    OutboxEvent,
    WebhookTarget,
    call_event,
    parse_targets,
    referral_event,
)
from regulator.ports import FixedClock

T0 = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)  # a Monday, 21:00 in Nîmes
CALLER = "+33612345642"
CALLBACK = "+33611223344"
SECRET = "s3cr3t-for-tests"


class ManualClock(FixedClock):
    """A fixed clock that tests move forward."""

    def advance(self, seconds: float) -> None:
        self.set(self.instant + timedelta(seconds=seconds))


def call_record(n: int = 1, *, route: Route = Route.REGULATION, mmg: str = "nimes") -> CallRecord:
    ground = Ground.PENDING_REFERRAL if route is Route.DIRECT_ACCESS else None
    return CallRecord(
        call_id=f"CA{n:04d}",
        mmg=mmg,
        platform="twilio",
        caller=CALLER,
        at=T0 + timedelta(minutes=n),
        month="2026-11",
        day_type=DayType.WEEKDAY,
        hour=21,
        route=route,
        ground=ground,
        rule="ouvert: menu → régulation",
    )


def referral(
    n: int = 1,
    status: ReferralStatus = ReferralStatus.PENDING,
    *,
    version: int = 1,
    mmg: str = "nimes",
) -> Referral:
    created = T0 + timedelta(minutes=n)
    history: tuple[ReferralEvent, ...] = (
        ReferralEvent(ReferralStatus.PENDING, created, "samu30-poste1"),
    )
    if status is not ReferralStatus.PENDING:
        history += (ReferralEvent(status, created + timedelta(minutes=30), "accueil-nimes"),)
    return Referral(
        id=f"ref-{n:04d}",
        mmg=mmg,
        case_id=f"DRFR1503026{n:08d}",
        patient_display_name="M. D.",
        status=status,
        created_at=created,
        updated_at=created + timedelta(minutes=30 if status is not ReferralStatus.PENDING else 0),
        created_by="samu30-poste1",
        version=version,
        patient_age_band="18-64",
        callback_number=CALLBACK,
        reason="fièvre",
        urgency="P2",
        expected_at=created + timedelta(minutes=45),
        tiers_payant=True,
        note="vient avec sa mère",
        outcome=Outcome.HOME if status is ReferralStatus.COMPLETED else None,
        acts=1 if status is ReferralStatus.COMPLETED else None,
        history=history,
    )


def events(count: int) -> list[OutboxEvent]:
    """``count`` distinct events, alternating calls and referrals."""
    out: list[OutboxEvent] = []
    for i in range(count):
        if i % 2:
            out.append(referral_event(referral(i)))
        else:
            out.append(call_event(call_record(i)))
    return out


def webhook_target(url: str, **extra: Any) -> WebhookTarget:
    raw = {
        "name": "samu30-lrm",
        "kind": "webhook",
        "url": url,
        "secret_env": "SAMU30_WEBHOOK_SECRET",
        "mmgs": ["nimes"],
        "timeout_s": 2,
    }
    raw.update(extra)
    target = parse_targets([raw])[0]
    assert isinstance(target, WebhookTarget)
    return target


def hub_target(client_id: str, exchange: str, **extra: Any) -> HubSanteTarget:
    raw = {
        "name": "hub",
        "kind": "hubsante",
        "amqp_url_env": "HUBSANTE_AMQP_URL",
        "client_id": client_id,
        "recipient": "fr.health.samu030",
        "exchange": exchange,
        "mmgs": ["nimes"],
        "distribution_status": "Exercise",
    }
    raw.update(extra)
    target = parse_targets([raw])[0]
    assert isinstance(target, HubSanteTarget)
    return target


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0, step_s: float = 0.02
) -> None:
    """Wait until ``check()`` is true (polling real time), or fail after ``timeout_s``."""
    for _ in range(int(timeout_s / step_s)):
        if await check():
            return
        await asyncio.sleep(step_s)
    raise AssertionError(f"condition not met within {timeout_s} s")
