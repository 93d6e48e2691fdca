"""French labels: every enum member named, and no English code in a French sentence."""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import pytest

from regulator.core import labels
from regulator.core.decision import decide
from regulator.core.indicators import build_report, report_rows
from regulator.core.models import (
    Call,
    DayType,
    DecisionContext,
    Ground,
    Outcome,
    Platform,
    ReferralStatus,
    Route,
    Stage,
    VisitChannel,
)
from regulator.core.protocol import Protocol
from regulator.core.referrals import OPEN_STATUSES, TRANSITIONS, Action
from tests.unit.helpers import paris

TABLES: list[tuple[str, type[StrEnum], Mapping[Any, str]]] = [
    ("ROUTE_PHRASES", Route, labels.ROUTE_PHRASES),
    ("ROUTE_DESTINATIONS", Route, labels.ROUTE_DESTINATIONS),
    ("ROUTE_REPORT_LABELS", Route, labels.ROUTE_REPORT_LABELS),
    ("GROUND_LABELS", Ground, labels.GROUND_LABELS),
    ("DESK_GROUND_LABELS", Ground, labels.DESK_GROUND_LABELS),
    ("DAY_TYPE_NAMES", DayType, labels.DAY_TYPE_NAMES),
    ("DAY_TYPE_PLURALS", DayType, labels.DAY_TYPE_PLURALS),
    ("STATUS_LABELS", ReferralStatus, labels.STATUS_LABELS),
    ("OUTCOME_LABELS", Outcome, labels.OUTCOME_LABELS),
    ("OUTCOME_PHRASES", Outcome, labels.OUTCOME_PHRASES),
    ("CHANNEL_LABELS", VisitChannel, labels.CHANNEL_LABELS),
    ("CHANNEL_SEEN_LABELS", VisitChannel, labels.CHANNEL_SEEN_LABELS),
]

#: Every code the service stores, as it would leak into a sentence.
CODES = {m.value for _, enum, _ in TABLES for m in enum} - {"menu", "direct"}  # French too


@pytest.mark.parametrize(("name", "enum", "table"), TABLES, ids=[t[0] for t in TABLES])
def test_every_enum_member_has_a_french_label(
    name: str, enum: type[StrEnum], table: Mapping[Any, str]
) -> None:
    assert set(table) == set(enum), name
    for member, text in table.items():
        assert text.strip(), (name, member)
        assert text != member.value, (name, member)  # a label, not the code again


@pytest.mark.parametrize(("name", "enum", "table"), TABLES, ids=[t[0] for t in TABLES])
def test_labels_answer_the_stored_string_value_too(
    name: str, enum: type[StrEnum], table: Mapping[Any, str]
) -> None:
    # Reports and payloads hold plain strings ("weekday"): same label as the member.
    for member in enum:
        assert table[member.value] == table[member]


def test_every_normalised_call_status_has_a_french_label() -> None:
    from regulator.platforms.base import CALL_STATUSES

    assert set(labels.CALL_STATUS_LABELS) == CALL_STATUSES
    assert all(text.strip() for text in labels.CALL_STATUS_LABELS.values())


def test_twelve_months_in_french_and_the_month_label() -> None:
    assert len(labels.MONTHS) == 12
    assert labels.month_label("2026-11") == "novembre 2026"
    assert labels.month_label("2027-02") == "février 2027"


def test_open_statuses_are_the_statuses_a_referral_can_still_arrive_from() -> None:
    assert {ReferralStatus.PENDING, ReferralStatus.ACKNOWLEDGED} == OPEN_STATUSES
    assert TRANSITIONS[Action.ARRIVED][0] == OPEN_STATUSES
    assert TRANSITIONS[Action.NO_SHOW][0] == OPEN_STATUSES


def _english_codes(text: str) -> set[str]:
    words = set(re.findall(r"[a-z_]+", text))
    return words & CODES


@pytest.mark.parametrize(
    "at",
    [
        "2026-11-24T21:00",  # weekday slots
        "2026-11-28T13:00",  # Saturday
        "2026-11-29T10:00",  # Sunday
        "2026-11-11T10:00",  # public holiday
        "2026-05-15T10:00",  # bridge
        "2026-07-15T19:00",  # summer period
        "2026-11-24T10:00",  # closed
    ],
)
def test_calendar_reasons_and_decision_trace_hold_no_english_code(nimes: Protocol, at: str) -> None:
    state = nimes.schedule.state(paris(at))
    assert _english_codes(state.reason) == set(), state.reason
    call = Call("c1", "+33611000001", nimes.numbers[0], Platform.CLI, Stage.INCOMING)
    decision = decide(nimes, call, paris(at))
    trace = "\n".join(decision.trace)
    assert _english_codes(trace) == set(), trace
    assert f"type de jour : {labels.DAY_TYPE_NAMES[state.day_type]}" in trace


def test_weekly_reason_names_the_kind_of_day_in_french(nimes: Protocol) -> None:
    reason = nimes.schedule.state(paris("2026-11-28T13:00")).reason
    assert reason == "horaires hebdomadaires (samedi) : 12:00-24:00"


def test_failed_destination_rule_names_the_destination_in_french(nimes: Protocol) -> None:
    call = Call("c2", "+33611000002", nimes.numbers[0], Platform.CLI, Stage.DIAL_FAILED)
    ctx = DecisionContext(failed_route=Route.PHARMACY)
    decision = decide(nimes, call, paris("2026-11-24T21:00"), ctx)
    assert decision.route is Route.REGULATION
    assert decision.rule.startswith("la pharmacie de garde sans réponse")
    assert _english_codes(decision.rule) == set()


def test_report_rows_name_grounds_and_day_types_in_french() -> None:
    counters = {
        "calls": 2,
        "route:direct_access": 2,
        "ground:professional": 1,
        "ground:declared_influx": 1,
        "day_type:holiday": 2,
    }
    report = build_report("nimes", "2026-11", counters, [])
    rows = {key: label for key, label, _ in report_rows(report)}
    assert rows["calls_by_ground.professional"] == (
        "Accès direct, motif : professionnel de santé enregistré"
    )
    assert rows["calls_by_day_type.holiday"] == "Appels reçus — jours fériés"
    for key, label in rows.items():
        assert _english_codes(label) == set(), (key, label)


@pytest.mark.parametrize(
    ("status", "text"),
    [
        ("completed", "Appel terminé (appel terminé normalement, 95 s)"),
        ("no-answer", "Appel terminé (sans réponse, 95 s)"),
        ("machine", "Appel terminé (statut « machine », 95 s)"),  # passed through by Vonage
    ],
)
def test_hub_sante_call_update_says_the_call_status_in_french(status: str, text: str) -> None:
    import dataclasses

    from regulator.interconnect.events import call_event
    from regulator.interconnect.hubsante import use_case
    from tests.interconnect.helpers import call_record, hub_target

    record = dataclasses.replace(call_record(), status=status, duration_s=95)
    key, body, _ = use_case(call_event(record), hub_target("fr.health.mmg", "hubsante"))
    assert key == "createCaseHealthUpdate"
    assert body["freetext"] == text


@pytest.mark.parametrize(
    ("outcome", "phrase"),
    [(Outcome.HOME, "retour à domicile"), (Outcome.HOSPITALISED, "hospitalisé")],
)
def test_hub_sante_completed_referral_names_the_outcome_in_french(
    outcome: Outcome, phrase: str
) -> None:
    import dataclasses

    from regulator.interconnect.events import referral_event
    from regulator.interconnect.hubsante import use_case
    from tests.interconnect.helpers import hub_target, referral

    ref = dataclasses.replace(referral(status=ReferralStatus.COMPLETED), outcome=outcome, acts=1)
    _, body, _ = use_case(referral_event(ref), hub_target("fr.health.mmg", "hubsante"))
    assert body["freetext"] == f"Consultation terminée à la MMG « nimes » : {phrase}, 1 acte(s)"
