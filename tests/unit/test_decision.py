"""Routing decisions: grounds for direct access, menu, pharmacy roster, closed hours."""

from __future__ import annotations

from datetime import datetime

import pytest

from regulator.core.decision import decide
from regulator.core.models import (
    DayType,
    Decision,
    DecisionContext,
    Destination,
    Ground,
    MenuPrompt,
    Route,
    Stage,
)
from regulator.core.protocol import Protocol
from tests.support.clock import paris, reunion
from tests.unit.helpers import ORDINARY_CALLER, call, variant

NIMES_OPEN = "2026-11-24T21:00"  # Tuesday evening, weekday slot 20:00-24:00
NIMES_CLOSED = "2026-11-24T10:00"  # Tuesday morning
NIMES_REGULATION = Destination(
    number="+33466000015", sip="sip:sas30@regulation.example", label="centre 15 / SAS"
)
NIMES_FRONT_DESK = Destination(number="+33466123400", label="accueil MMG")
METZ_REGULATION = Destination(number="+33387000015", label="centre 15 / SAS")


def _decide(
    proto: Protocol,
    at: datetime,
    caller: str = ORDINARY_CALLER,
    *,
    stage: Stage = Stage.INCOMING,
    digits: str | None = None,
    pending_referral: bool = False,
    regulation_failed: bool = False,
    failed_route: Route | None = None,
) -> Decision:
    ctx = DecisionContext(
        pending_referral=pending_referral,
        regulation_failed=regulation_failed,
        failed_route=failed_route,
    )
    decision = decide(proto, call(caller, stage=stage, digits=digits), at, ctx)
    assert not decision.failsafe, decision.failsafe_reason
    return decision


class TestProfessionals:
    @pytest.mark.parametrize("caller", ["+33612345678", "06 12 34 56 78", "0033612345678"])
    def test_professional_calling_while_open_gets_direct_access(
        self, nimes: Protocol, caller: str
    ) -> None:
        decision = _decide(nimes, paris(NIMES_OPEN), caller)
        assert (decision.route, decision.ground) == (Route.DIRECT_ACCESS, Ground.PROFESSIONAL)
        assert decision.destination == NIMES_FRONT_DESK
        assert decision.open

    def test_professional_calling_while_closed_is_regulated(self, nimes: Protocol) -> None:
        decision = _decide(nimes, paris(NIMES_CLOSED), "+33612345678")
        assert (decision.route, decision.ground) == (Route.REGULATION, None)
        assert decision.destination == NIMES_REGULATION
        assert not decision.open

    def test_metz_professional_reaches_front_desk_sip(self, metz: Protocol) -> None:
        decision = _decide(metz, paris("2026-11-24T21:00"), "03 87 00 00 18")
        assert (decision.route, decision.ground) == (Route.DIRECT_ACCESS, Ground.PROFESSIONAL)
        assert decision.destination is not None
        assert decision.destination.display() == "sip:accueil@mmg-metz.example"

    def test_reunion_mobile_professional_in_national_notation(self, reunion_mmg: Protocol) -> None:
        decision = _decide(reunion_mmg, reunion("2026-11-24T20:00"), "0692 12 34 56")
        assert (decision.route, decision.ground) == (Route.DIRECT_ACCESS, Ground.PROFESSIONAL)


class TestPendingReferral:
    def test_pending_referral_while_open_gets_direct_access(self, nimes: Protocol) -> None:
        decision = _decide(nimes, paris(NIMES_OPEN), pending_referral=True)
        assert (decision.route, decision.ground) == (Route.DIRECT_ACCESS, Ground.PENDING_REFERRAL)
        assert decision.destination == NIMES_FRONT_DESK

    def test_pending_referral_while_closed_is_regulated(self, nimes: Protocol) -> None:
        decision = _decide(nimes, paris(NIMES_CLOSED), pending_referral=True)
        assert (decision.route, decision.ground) == (Route.REGULATION, None)

    def test_pending_referral_ground_disabled_by_protocol_goes_to_menu(self) -> None:
        proto = variant("nimes", **{"routing.direct_access.pending_referral": False})
        decision = _decide(proto, paris(NIMES_OPEN), pending_referral=True)
        assert (decision.route, decision.ground) == (Route.MENU, None)


class TestRegulationOverflow:
    def test_dial_failed_while_open_overflows_to_front_desk(self, nimes: Protocol) -> None:
        decision = _decide(
            nimes, paris(NIMES_OPEN), stage=Stage.DIAL_FAILED, failed_route=Route.REGULATION
        )
        assert (decision.route, decision.ground) == (
            Route.DIRECT_ACCESS,
            Ground.REGULATION_OVERFLOW,
        )
        assert decision.destination == NIMES_FRONT_DESK
        assert "90 s" in decision.rule

    def test_regulation_failed_context_overflows_like_dial_failed(self, nimes: Protocol) -> None:
        decision = _decide(nimes, paris(NIMES_OPEN), regulation_failed=True)
        assert decision.ground is Ground.REGULATION_OVERFLOW

    def test_regulation_failed_while_closed_asks_to_dial_15(self, nimes: Protocol) -> None:
        decision = _decide(
            nimes, paris(NIMES_CLOSED), stage=Stage.DIAL_FAILED, failed_route=Route.REGULATION
        )
        assert (decision.route, decision.ground) == (Route.REGULATION, None)
        assert decision.destination == Destination(announce="15", label="centre 15")
        assert "Raccrochez et composez le 15" in " ".join(decision.say)
        assert "MMG fermée" in decision.rule

    def test_regulation_failed_without_overflow_in_protocol_asks_to_dial_15(
        self, metz: Protocol
    ) -> None:
        assert metz.routing.direct_access.regulation_overflow is None
        decision = _decide(
            metz, paris("2026-11-24T21:00"), stage=Stage.DIAL_FAILED, failed_route=Route.REGULATION
        )
        assert (decision.route, decision.ground) == (Route.REGULATION, None)
        assert decision.open
        assert decision.destination is not None and not decision.destination.dialable
        assert "débordement non prévu" in decision.rule

    @pytest.mark.parametrize(
        ("mmg_fixture", "at", "timeout"),
        [
            ("nimes", NIMES_OPEN, 90),  # overflow after 90 s when open
            ("nimes", NIMES_CLOSED, None),  # no overflow while closed
            ("metz", "2026-11-24T21:00", None),  # overflow disabled
        ],
    )
    def test_regulation_dial_timeout_follows_overflow_setting(
        self, request: pytest.FixtureRequest, mmg_fixture: str, at: str, timeout: int | None
    ) -> None:
        proto: Protocol = request.getfixturevalue(mmg_fixture)
        decision = _decide(proto, paris(at), digits="1", stage=Stage.DIGITS)
        assert decision.route is Route.REGULATION
        assert decision.dial_timeout_s == timeout


class TestMenu:
    def test_no_digits_while_open_asks_the_menu(self, nimes: Protocol) -> None:
        decision = _decide(nimes, paris(NIMES_OPEN))
        assert decision.route is Route.MENU
        assert decision.destination is None
        assert decision.menu == MenuPrompt(
            text="Pour un médecin, tapez 1. Pour la pharmacie de garde, tapez 2.",
            timeout_s=6,
            options=("1", "2"),
        )
        assert decision.say == (nimes.messages.welcome,)

    @pytest.mark.parametrize(
        ("digits", "route"),
        [
            ("1", Route.REGULATION),
            ("2", Route.PHARMACY),
            ("9", Route.REGULATION),  # unknown key → default (regulation)
            ("*", Route.REGULATION),
            ("", Route.REGULATION),  # timeout, nothing typed → default
            ("21", Route.PHARMACY),  # only the first key counts
        ],
    )
    def test_menu_key_routes_to_its_choice_or_the_default(
        self, nimes: Protocol, digits: str, route: Route
    ) -> None:
        decision = _decide(nimes, paris(NIMES_OPEN), digits=digits, stage=Stage.DIGITS)
        assert decision.route is route
        assert decision.menu is None
        assert decision.destination is not None

    def test_digit_one_goes_to_regulation_line(self, nimes: Protocol) -> None:
        decision = _decide(nimes, paris(NIMES_OPEN), digits="1", stage=Stage.DIGITS)
        assert decision.destination == NIMES_REGULATION
        assert decision.rule.startswith("menu : touche 1")

    def test_unknown_digit_names_the_default_in_the_rule(self, nimes: Protocol) -> None:
        decision = _decide(nimes, paris(NIMES_OPEN), digits="7", stage=Stage.DIGITS)
        assert "touche « 7 » inconnue" in decision.rule
        assert "choix par défaut" in decision.rule

    def test_digits_stage_without_digits_takes_the_default(self, nimes: Protocol) -> None:
        decision = _decide(nimes, paris(NIMES_OPEN), stage=Stage.DIGITS)
        assert decision.route is Route.REGULATION
        assert "aucune touche" in decision.rule

    def test_default_can_be_the_pharmacy(self) -> None:
        proto = variant("nimes", **{"routing.menu.default": "pharmacy"})
        decision = _decide(proto, paris(NIMES_OPEN), digits="5", stage=Stage.DIGITS)
        assert decision.route is Route.PHARMACY

    def test_menu_is_not_offered_while_closed(self, nimes: Protocol) -> None:
        decision = _decide(nimes, paris(NIMES_CLOSED))
        assert decision.route is Route.REGULATION
        assert decision.menu is None

    def test_protocol_without_menu_routes_open_calls_to_regulation(self, metz: Protocol) -> None:
        decision = _decide(metz, paris("2026-11-24T21:00"), digits="2")
        assert (decision.route, decision.open) == (Route.REGULATION, True)
        assert decision.destination == METZ_REGULATION


class TestPharmacyRoster:
    """The roster is read with [from, to) semantics in the MMG's local time."""

    @pytest.mark.parametrize(
        ("at", "name"),
        [
            ("2026-11-23T08:59", "Pharmacie des Arènes"),
            ("2026-11-23T09:00", None),  # Arènes ends at 09:00 exactly
            ("2026-11-23T18:59", None),
            ("2026-11-23T19:00", "Pharmacie de la Maison Carrée"),
            ("2026-11-24T08:59", "Pharmacie de la Maison Carrée"),
            ("2026-11-24T09:00", None),  # handover gap 09:00-19:00
            ("2026-11-24T18:59", None),
            ("2026-11-24T19:00", "Pharmacie du Jardin de la Fontaine"),
            ("2026-11-21T18:59", None),
            ("2026-11-21T19:00", "Pharmacie des Arènes"),
        ],
    )
    def test_on_duty_entry_at_instant(self, nimes: Protocol, at: str, name: str | None) -> None:
        entry = nimes.destinations.pharmacy.on_duty(datetime.fromisoformat(at))
        assert (entry.name if entry else None) == name

    @pytest.mark.parametrize(
        ("at", "number", "announce"),
        [
            ("2026-11-24T08:59", "+33466222222", None),  # Maison Carrée until 09:00
            ("2026-11-24T09:00", None, "3237"),  # nobody on the roster
            ("2026-11-24T18:59", None, "3237"),
            ("2026-11-24T19:00", "+33466333333", None),  # Jardin de la Fontaine from 19:00
        ],
    )
    def test_pharmacy_choice_hands_over_at_the_exact_minute(
        self, at: str, number: str | None, announce: str | None
    ) -> None:
        always_open = variant("nimes", **{"opening.weekdays": ["00:00-24:00"]})
        decision = _decide(always_open, paris(at), digits="2", stage=Stage.DIGITS)
        assert decision.route is Route.PHARMACY
        assert decision.destination is not None
        assert (decision.destination.number, decision.destination.announce) == (number, announce)

    def test_saturday_roster_starts_at_seven_pm_in_real_protocol(self, nimes: Protocol) -> None:
        before = _decide(nimes, paris("2026-11-21T18:59"), digits="2", stage=Stage.DIGITS)
        after = _decide(nimes, paris("2026-11-21T19:00"), digits="2", stage=Stage.DIGITS)
        assert before.destination is not None
        assert after.destination is not None
        assert before.destination.announce == "3237"
        assert not before.destination.dialable
        assert after.destination == Destination(number="+33466111111", label="Pharmacie des Arènes")
        assert after.destination.dialable

    def test_fallback_3237_is_announced_never_dialled(self, nimes: Protocol) -> None:
        decision = _decide(nimes, paris("2026-12-01T21:00"), digits="2", stage=Stage.DIGITS)
        assert decision.route is Route.PHARMACY
        assert decision.destination is not None
        assert decision.destination.announce == "3237"
        assert decision.destination.number is None
        assert "composez le 3237" in decision.say[0]
        assert "repli sur le 3237" in decision.rule

    def test_roster_is_read_in_reunion_local_time(self, reunion_mmg: Protocol) -> None:
        decision = _decide(reunion_mmg, reunion("2026-12-20T10:00"), digits="2", stage=Stage.DIGITS)
        assert decision.route is Route.PHARMACY
        assert decision.day_type is DayType.HOLIDAY
        assert decision.destination is not None
        assert decision.destination.number == "+262262222222"


class TestClosedAndInflux:
    def test_reunion_closed_message_when_closed(self, reunion_mmg: Protocol) -> None:
        decision = _decide(reunion_mmg, reunion("2026-11-24T10:00"))
        assert decision.route is Route.CLOSED
        assert decision.destination == Destination(announce="15", label="centre 15")
        assert reunion_mmg.messages.closed in decision.say
        assert not decision.open

    def test_closed_message_applies_to_professionals_too(self, reunion_mmg: Protocol) -> None:
        decision = _decide(reunion_mmg, reunion("2026-11-24T10:00"), "+262692123456")
        assert decision.route is Route.CLOSED

    def test_nimes_closed_goes_to_regulation(self, nimes: Protocol) -> None:
        decision = _decide(nimes, paris(NIMES_CLOSED))
        assert (decision.route, decision.day_type) == (Route.REGULATION, DayType.WEEKDAY)
        assert decision.destination == NIMES_REGULATION

    def test_declared_influx_gives_direct_access_to_anyone(self, nimes: Protocol) -> None:
        decision = _decide(nimes, paris("2027-01-14T20:30"))
        assert (decision.route, decision.ground) == (Route.DIRECT_ACCESS, Ground.DECLARED_INFLUX)
        assert "Épidémie de grippe" in decision.rule
        assert decision.destination == NIMES_FRONT_DESK

    def test_declared_influx_reunion_covers_daytime(self, reunion_mmg: Protocol) -> None:
        decision = _decide(reunion_mmg, reunion("2027-02-10T10:00"))
        assert decision.ground is Ground.DECLARED_INFLUX

    def test_closing_override_routes_to_regulation(self, metz: Protocol) -> None:
        decision = _decide(metz, paris("2026-12-31T21:00"), "03 87 00 00 18")
        assert (decision.route, decision.open) == (Route.REGULATION, False)

    @pytest.mark.parametrize(
        ("at", "route"),
        [
            ("2026-12-31T23:59", Route.MENU),
            ("2027-01-01T00:00", Route.REGULATION),
            ("2027-01-01T08:00", Route.MENU),
        ],
    )
    def test_new_year_night_routes_menu_then_regulation_then_menu(
        self, nimes: Protocol, at: str, route: Route
    ) -> None:
        assert _decide(nimes, paris(at)).route is route


class TestFailSafe:
    def test_naive_instant_fails_safe_to_regulation(self, nimes: Protocol) -> None:
        decision = decide(nimes, call(), datetime(2026, 11, 24, 21, 0))
        assert decision.failsafe
        assert decision.route is Route.REGULATION
        assert decision.destination == NIMES_REGULATION
        assert decision.failsafe_reason is not None

    @pytest.mark.parametrize("caller", ["", "anonymous", "+", "0000", "not a number"])
    def test_unknown_or_hidden_caller_is_routed_normally(
        self, nimes: Protocol, caller: str
    ) -> None:
        decision = _decide(nimes, paris(NIMES_OPEN), caller)
        assert decision.route is Route.MENU

    def test_decision_is_pure(self, nimes: Protocol) -> None:
        at = paris(NIMES_OPEN)
        assert decide(nimes, call(digits="2"), at) == decide(nimes, call(digits="2"), at)

    def test_trace_explains_open_state_and_rule(self, nimes: Protocol) -> None:
        decision = _decide(nimes, paris("2026-05-15T10:00"))
        text = "\n".join(decision.trace)
        assert "type de jour : pont" in text
        assert "pont (art. R.6315-1)" in text
        assert text.endswith(f"règle : {decision.rule}")
        assert ORDINARY_CALLER not in text  # callers are masked in the trace
