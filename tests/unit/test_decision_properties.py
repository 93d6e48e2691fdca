"""Property tests: ``decide`` never raises and always routes the caller somewhere."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regulator.core.decision import decide
from regulator.core.models import Call, DecisionContext, Platform, Route, Stage
from regulator.core.protocol import Protocol
from tests.unit.helpers import protocol

MMGS = ("nimes", "metz", "saint-denis-reunion")
PROTOCOLS: dict[str, Protocol] = {mmg: protocol(mmg) for mmg in MMGS}

instants = st.datetimes(
    min_value=datetime(2020, 1, 1),
    max_value=datetime(2035, 12, 31, 23, 59, 59),
    timezones=st.one_of(st.timezones(), st.just(UTC)),
)
callers = st.one_of(
    st.text(),
    st.sampled_from(["+33612345678", "06 12 34 56 78", "+262692123456", "0387000018", ""]),
)
digits = st.one_of(st.none(), st.text(max_size=3), st.sampled_from(["1", "2", "9"]))
calls = st.builds(
    Call,
    call_id=st.text(min_size=1, max_size=8),
    caller=callers,
    called=st.text(max_size=16),
    platform=st.sampled_from(Platform),
    stage=st.sampled_from(Stage),
    digits=digits,
)
contexts = st.from_type(DecisionContext)

PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize("mmg", MMGS)
@PROPERTY_SETTINGS
@given(now=instants, call=calls, context=contexts)
def test_decide_always_routes_somewhere(
    mmg: str, now: datetime, call: Call, context: DecisionContext
) -> None:
    proto = PROTOCOLS[mmg]
    decision = decide(proto, call, now, context)

    assert decision.mmg == mmg
    if decision.route is Route.MENU:
        assert decision.menu is not None
        assert decision.menu.options
        assert decision.open
    else:
        assert decision.destination is not None
        assert decision.destination.dialable or decision.destination.announce is not None
    if decision.failsafe:
        assert decision.route is Route.REGULATION
    assert decision.rule
    assert decision.trace


@pytest.mark.parametrize("mmg", MMGS)
@PROPERTY_SETTINGS
@given(now=instants, call=calls, context=contexts)
def test_well_formed_inputs_never_need_the_failsafe(
    mmg: str, now: datetime, call: Call, context: DecisionContext
) -> None:
    decision = decide(PROTOCOLS[mmg], call, now, context)
    assert not decision.failsafe, decision.failsafe_reason
    assert decision.day_type is not None


@pytest.mark.parametrize("mmg", MMGS)
@settings(max_examples=100, deadline=None)
@given(
    now=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31)),
    call=calls,
)
def test_naive_instant_fails_safe_to_regulation(mmg: str, now: datetime, call: Call) -> None:
    proto = PROTOCOLS[mmg]
    decision = decide(proto, call, now)
    assert decision.failsafe
    assert decision.route is Route.REGULATION
    assert decision.destination is not None
    assert decision.destination.dialable


@pytest.mark.parametrize("mmg", MMGS)
@PROPERTY_SETTINGS
@given(now=instants, call=calls, context=contexts)
def test_closed_mmg_never_gives_direct_access(
    mmg: str, now: datetime, call: Call, context: DecisionContext
) -> None:
    proto = PROTOCOLS[mmg]
    decision = decide(proto, call, now, context)
    if not proto.schedule.state(now).open:
        assert decision.route is not Route.DIRECT_ACCESS
        assert decision.ground is None
