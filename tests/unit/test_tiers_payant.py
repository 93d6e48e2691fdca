"""Tiers payant by the circular's rule: regulated access yes, direct access no, unless set."""

from __future__ import annotations

from datetime import timedelta

import pytest

from regulator.core.models import VisitChannel
from regulator.core.protocol import Protocol
from regulator.core.referrals import (
    Action,
    apply,
    is_regulated,
    make_visit,
    new_referral,
    tiers_payant_rule,
)
from tests.support.clock import paris

T0 = paris("2026-11-24T20:30")


@pytest.mark.parametrize(
    ("regulated", "chosen", "value", "reason"),
    [
        (True, None, True, "accès régulé par le centre 15 / SAS : tiers payant"),
        (True, True, True, "accès régulé par le centre 15 / SAS : tiers payant"),
        (True, False, False, "accès régulé, mais tiers payant écarté explicitement"),
        (False, None, False, "accès direct (hors régulation préalable) : pas de tiers payant"),
        (False, False, False, "accès direct (hors régulation préalable) : pas de tiers payant"),
        (False, True, True, "accès direct : tiers payant accordé explicitement"),
    ],
)
def test_tiers_payant_follows_access_unless_chosen(
    regulated: bool, chosen: bool | None, value: bool, reason: str
) -> None:
    rule = tiers_payant_rule(regulated, chosen)
    assert rule.value is value
    assert rule.reason.startswith(reason)


@pytest.mark.parametrize(
    ("channel", "regulated"),
    [
        (VisitChannel.REGULATION, True),
        (VisitChannel.DIRECT, False),
        (VisitChannel.EMERGENCY_REORIENTATION, False),
        (VisitChannel.OTHER, False),
    ],
)
def test_visit_tiers_payant_defaults_to_the_rule_for_its_channel(
    nimes: Protocol, channel: VisitChannel, regulated: bool
) -> None:
    assert is_regulated(channel) is regulated
    assert make_visit(nimes, channel=channel, at=T0).tiers_payant is regulated
    chosen = not regulated
    assert make_visit(nimes, channel=channel, at=T0, tiers_payant=chosen).tiers_payant is chosen


@pytest.mark.parametrize(("chosen", "expected"), [(None, True), (True, True), (False, False)])
def test_regulated_referral_is_tiers_payant_unless_set_otherwise(
    chosen: bool | None, expected: bool
) -> None:
    ref = new_referral(
        mmg="nimes",
        case_id="C1",
        patient_display_name="M. D.",
        created_by="samu30",
        now=T0,
        tiers_payant=chosen,
    )
    assert ref.tiers_payant is expected


@pytest.mark.parametrize("chosen", [None, False])
def test_arrived_referral_visit_keeps_the_referrals_tiers_payant(
    nimes: Protocol, chosen: bool | None
) -> None:
    ref = new_referral(
        mmg="nimes",
        case_id="C1",
        patient_display_name="M. D.",
        created_by="samu30",
        now=T0,
        tiers_payant=chosen,
    )
    _, visit = apply(ref, Action.ARRIVED, protocol=nimes, now=T0 + timedelta(minutes=20), by="d")
    assert visit is not None
    assert visit.channel is VisitChannel.REGULATION
    assert visit.tiers_payant is (chosen is None)
    assert visit.case_id == "C1"
