"""The monthly figures from visits: regulated share, one person per regulated case, outcomes."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

import pytest

from regulator.core.indicators import (
    CIRCULAR_SECTIONS,
    OTHER_OUTCOMES,
    SHARE_REGULATED,
    build_report,
    report_markdown,
)
from regulator.core.models import Outcome, Visit, VisitChannel
from regulator.core.protocol import Protocol
from regulator.core.referrals import Action, apply, make_visit, new_referral
from regulator.exports import report_csv
from regulator.storage.codec import visit_from_dict, visit_to_dict
from tests.support.clock import paris

MONTH = "2026-11"
T0 = paris("2026-11-24T20:30")


def _visit(
    proto: Protocol,
    channel: VisitChannel,
    minutes: int = 0,
    *,
    outcome: Outcome | None = Outcome.HOME,
    case_id: str | None = None,
    acts: int = 1,
) -> Visit:
    return make_visit(
        proto,
        channel=channel,
        at=T0 + timedelta(minutes=minutes),
        outcome=outcome,
        acts=acts,
        case_id=case_id,
    )


def _arrived(proto: Protocol, case_id: str, minutes: int = 0) -> Visit:
    """The visit an arrived referral creates (no outcome yet)."""
    ref = new_referral(
        mmg=proto.id, case_id=case_id, patient_display_name="M. D.", created_by="samu30", now=T0
    )
    _, visit = apply(
        ref, Action.ARRIVED, protocol=proto, now=T0 + timedelta(minutes=minutes), by="accueil"
    )
    assert visit is not None
    return visit


def _report(visits: list[Visit]) -> dict[str, Any]:
    return build_report("nimes", MONTH, {}, visits)


def test_share_regulated_is_null_when_nobody_was_seen() -> None:
    assert _report([])["share_regulated"] is None


def test_share_regulated_is_persons_via_regulation_over_persons_seen(nimes: Protocol) -> None:
    visits = [
        _arrived(nimes, "DRFR1"),
        _visit(nimes, VisitChannel.REGULATION, 5, case_id="DRFR2"),  # referral not in here
        _visit(nimes, VisitChannel.DIRECT, 10),
        _visit(nimes, VisitChannel.EMERGENCY_REORIENTATION, 15),
        _visit(nimes, VisitChannel.OTHER, 20),
    ]
    report = _report(visits)
    assert report["persons_seen"]["via_regulation"] == 2
    assert report["persons_seen"]["total"] == 5
    assert report["share_regulated"] == pytest.approx(0.4)


def test_regulation_visit_of_an_arrived_referrals_case_counts_once(nimes: Protocol) -> None:
    arrived = _arrived(nimes, "DRFR15030000042")
    desk = _visit(nimes, VisitChannel.REGULATION, 3, case_id=" drfr 15030000042", acts=2)
    other_case = _visit(nimes, VisitChannel.REGULATION, 6, case_id="DRFR15030000043")
    no_case = _visit(nimes, VisitChannel.REGULATION, 9)
    report = _report([arrived, desk, other_case, no_case])
    assert report["persons_seen"]["total"] == 3
    assert report["persons_seen"]["via_regulation"] == 3
    assert report["share_regulated"] == 1.0
    # The desk's visit of that case says more (it has an outcome): its figures are kept.
    assert report["acts"] == 2 + 1 + 1
    assert report["outcome_missing"] == 0
    assert report["returned_home"] == 3


def test_same_case_id_on_a_direct_visit_is_a_different_person(nimes: Protocol) -> None:
    report = _report([_arrived(nimes, "C1"), _visit(nimes, VisitChannel.DIRECT, 5, case_id="C1")])
    assert report["persons_seen"]["total"] == 2


def test_outcome_rows_add_up_to_persons_seen(nimes: Protocol) -> None:
    visits = [
        _arrived(nimes, "C1"),  # arrived, no outcome yet
        _arrived(nimes, "C2", 1),
        _visit(nimes, VisitChannel.DIRECT, 2, outcome=Outcome.HOME),
        _visit(nimes, VisitChannel.DIRECT, 3, outcome=Outcome.EMERGENCY),
        _visit(nimes, VisitChannel.OTHER, 4, outcome=Outcome.HOSPITALISED),
        _visit(nimes, VisitChannel.REGULATION, 5, outcome=Outcome.OTHER, case_id="C3"),
    ]
    report = _report(visits)
    rows = ("returned_home", "reoriented_to_emergency", "hospitalised", "outcome_other")
    assert [report[key] for key in rows] == [1, 1, 1, 1]
    assert report["outcome_missing"] == 2
    assert sum(report[key] for key in (*rows, "outcome_missing")) == 6
    assert report["persons_seen"]["total"] == 6


def test_outcomes_outside_the_circular_are_set_apart_under_their_own_heading() -> None:
    circular_keys = {i.key for section in CIRCULAR_SECTIONS for i in section.indicators}
    apart = {i.key for i in OTHER_OUTCOMES.indicators}
    assert {"returned_home", "reoriented_to_emergency", "acts"} <= circular_keys
    assert apart == {"hospitalised", "outcome_other", "outcome_missing"}
    assert not circular_keys & apart
    assert "hors tableau de la circulaire" in OTHER_OUTCOMES.title


def test_markdown_has_the_circular_headings_the_share_and_the_rows_set_apart(
    nimes: Protocol,
) -> None:
    visits = [_arrived(nimes, "C1"), _visit(nimes, VisitChannel.DIRECT, 2)]
    text = report_markdown(_report(visits), nimes.name)
    a = text.index("## A- Régulation à l'accès à la MMG")
    one = text.index("## 1- L'activité de la MMG répond-t-elle à sa vocation première")
    apart = text.index("## Autres issues de consultation (hors tableau de la circulaire)")
    assert a < one < apart
    assert "| Part des personnes vues venues via la régulation de la PDS | 50,0\u00a0% |" in text
    assert "| Nombre de consultations dont l'issue n'est pas renseignée | 1 |" in text
    assert text.index("hospitalisés") > apart
    assert "(0 appel)" in text


def test_csv_has_the_share_and_the_missing_outcome_row(nimes: Protocol) -> None:
    visits = [_arrived(nimes, "C1"), *(_visit(nimes, VisitChannel.DIRECT, m) for m in (1, 2))]
    text = report_csv(_report(visits))
    assert text.startswith("\ufeffIndicateur;Valeur;Clé\r\n")
    rows = {row[2]: row[1] for row in csv.reader(io.StringIO(text[1:]), delimiter=";")}
    assert rows[SHARE_REGULATED.key] == "33,33"  # percent, decimal comma
    assert rows["outcome_missing"] == "1"
    assert rows["persons_seen.total"] == "3"
    empty = report_csv(_report([]))
    empty_rows = {row[2]: row[1] for row in csv.reader(io.StringIO(empty[1:]), delimiter=";")}
    assert empty_rows[SHARE_REGULATED.key] == ""


def test_arrived_referral_visit_carries_the_case_id_through_the_codec(nimes: Protocol) -> None:
    visit = _arrived(nimes, "DRFR15030000042")
    assert visit.case_id == "DRFR15030000042"
    assert visit_from_dict(visit_to_dict(visit)) == visit


@pytest.mark.parametrize(
    ("channel", "expected"),
    [("regulation", True), ("direct", False), ("emergency_reorientation", False)],
)
def test_visit_stored_before_tiers_payant_existed_reads_back_by_rule(
    nimes: Protocol, channel: str, expected: bool
) -> None:
    stored = visit_to_dict(_visit(nimes, VisitChannel(channel)))
    del stored["tiers_payant"], stored["case_id"]
    decoded = visit_from_dict(stored)
    assert (decoded.tiers_payant, decoded.case_id) == (expected, None)


def test_report_month_facts_are_computed_in_the_mmg_zone(nimes: Protocol) -> None:
    visit = _visit(nimes, VisitChannel.REGULATION, case_id="C1")
    assert (visit.month, visit.hour) == (MONTH, 20)
    assert visit.at == datetime.fromisoformat("2026-11-24T20:30+01:00")


def test_holiday_total_keeps_the_circulars_jf_and_splits_holidays_and_bridges(
    nimes: Protocol,
) -> None:
    def seen_on(at: str) -> Visit:
        return make_visit(nimes, channel=VisitChannel.DIRECT, at=paris(at), outcome=Outcome.HOME)

    visits = [
        seen_on("2026-05-14T10:00"),  # Ascension
        seen_on("2026-05-15T10:00"),  # its Friday bridge
        seen_on("2026-05-16T10:00"),  # its Saturday bridge
        seen_on("2026-05-17T10:00"),  # Sunday
        seen_on("2026-05-19T21:00"),  # Tuesday
    ]
    seen = build_report("nimes", "2026-05", {}, visits)["persons_seen"]
    assert (seen["holiday"], seen["public_holiday"], seen["bridge"]) == (3, 1, 2)
    assert (seen["weekend"], seen["weekday"], seen["total"]) == (1, 1, 5)
