"""What the engine decides after a failed dial, for every (failed destination,
destinations already offered) pair: never a destination twice, centre 15 first."""

from __future__ import annotations

from datetime import datetime
from itertools import combinations

import pytest

from regulator.core.decision import DIAL_15, decide
from regulator.core.models import (
    DESTINATION_ROUTES,
    HISTORY_ROUTES,
    Decision,
    DecisionContext,
    Destination,
    Ground,
    Route,
    Stage,
)
from regulator.core.protocol import Protocol
from tests.support.clock import paris
from tests.unit.helpers import call, protocol

PROTOCOLS = {mmg: protocol(mmg) for mmg in ("nimes", "metz")}
INSTANTS = {"open": paris("2026-11-24T21:00"), "closed": paris("2026-11-24T10:00")}
FAILED: tuple[Route | None, ...] = (
    None,  # nobody can say which destination failed
    Route.REGULATION,
    Route.DIRECT_ACCESS,
    Route.PHARMACY,
    Route.MENU,  # not a destination: read as unknown
)
# Every subset of what a route history can hold (CLOSED: already told to dial 15).
OFFERED = [frozenset(c) for n in range(5) for c in combinations(sorted(HISTORY_ROUTES), n)]


def _after_failure(
    proto: Protocol, now: datetime, failed: Route | None, offered: frozenset[Route]
) -> Decision:
    ctx = DecisionContext(failed_route=failed, offered=offered)
    return decide(proto, call(called=proto.numbers[0], stage=Stage.DIAL_FAILED), now, ctx)


def _expected(
    proto: Protocol, is_open: bool, failed: Route | None, offered: frozenset[Route]
) -> Route | None:
    """The destination dialled next (None: the announcement), as the issue states it."""
    if failed not in DESTINATION_ROUTES:
        failed = None
    tried = offered | ({failed} if failed else set())
    if Route.CLOSED in tried:
        return None
    if failed is not Route.REGULATION:
        return Route.REGULATION if Route.REGULATION not in tried else None
    overflow = proto.routing.direct_access.regulation_overflow is not None
    return (
        Route.DIRECT_ACCESS if is_open and overflow and Route.DIRECT_ACCESS not in tried else None
    )


@pytest.mark.parametrize("offered", OFFERED, ids=lambda o: "+".join(sorted(o)) or "none")
@pytest.mark.parametrize("failed", FAILED, ids=lambda f: f.value if f else "unknown")
@pytest.mark.parametrize("when", sorted(INSTANTS))
@pytest.mark.parametrize("mmg", sorted(PROTOCOLS))
def test_failed_dial_table(
    mmg: str, when: str, failed: Route | None, offered: frozenset[Route]
) -> None:
    proto = PROTOCOLS[mmg]
    decision = _after_failure(proto, INSTANTS[when], failed, offered)
    assert not decision.failsafe
    assert decision.destination is not None
    dialled = decision.route if decision.destination.dialable else None
    assert dialled == _expected(proto, when == "open", failed, offered), decision.rule
    assert dialled not in offered and (dialled is None or dialled is not failed)
    if dialled is None:
        assert decision.route is Route.REGULATION
        assert decision.destination == Destination(announce="15", label="centre 15")
        assert decision.say == (DIAL_15,)
        assert "raccrochez et composez le 15" in decision.rule
    elif dialled is Route.DIRECT_ACCESS:
        assert decision.ground is Ground.REGULATION_OVERFLOW


@pytest.mark.parametrize(
    ("failed", "rule"),
    [
        (Route.DIRECT_ACCESS, "l'accueil de la MMG sans réponse : renvoi vers la régulation"),
        (Route.PHARMACY, "la pharmacie de garde sans réponse : renvoi vers la régulation"),
        (None, "destination inconnue sans réponse : renvoi vers la régulation"),
    ],
)
def test_desk_or_pharmacy_failure_names_its_rule(failed: Route | None, rule: str) -> None:
    decision = _after_failure(PROTOCOLS["nimes"], INSTANTS["open"], failed, frozenset())
    assert decision.rule.startswith(rule)
    assert decision.destination is not None and decision.destination.number == "+33466000015"
    assert decision.ground is None


def test_regulation_after_the_desk_failed_waits_for_no_overflow() -> None:
    # The desk already failed: no overflow callback can follow, so no overflow timer.
    nimes = PROTOCOLS["nimes"]
    after_desk = _after_failure(nimes, INSTANTS["open"], Route.DIRECT_ACCESS, frozenset())
    after_pharmacy = _after_failure(nimes, INSTANTS["open"], Route.PHARMACY, frozenset())
    assert after_desk.dial_timeout_s is None
    assert after_pharmacy.dial_timeout_s == 90


def test_regulation_failed_flag_is_the_same_as_a_failed_regulation_dial() -> None:
    nimes = PROTOCOLS["nimes"]
    flagged = decide(nimes, call(), INSTANTS["open"], DecisionContext(regulation_failed=True))
    assert flagged.ground is Ground.REGULATION_OVERFLOW
    again = decide(
        nimes,
        call(),
        INSTANTS["open"],
        DecisionContext(regulation_failed=True, offered=frozenset({Route.DIRECT_ACCESS})),
    )
    assert again.destination is not None and not again.destination.dialable


def test_internal_error_after_centre_15_was_offered_announces_instead_of_redialling() -> None:
    naive = datetime(2026, 11, 24, 21, 0)  # the engine refuses naive instants: fail-safe
    nimes = PROTOCOLS["nimes"]
    first = decide(nimes, call(stage=Stage.DIAL_FAILED), naive, DecisionContext())
    assert first.failsafe and first.destination is not None and first.destination.dialable
    again = decide(
        nimes,
        call(stage=Stage.DIAL_FAILED),
        naive,
        DecisionContext(failed_route=Route.REGULATION),
    )
    assert again.failsafe
    assert again.destination == Destination(announce="15", label="centre 15")
