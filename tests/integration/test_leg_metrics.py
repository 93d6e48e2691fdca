"""The dial-leg metrics on the real app's ``/metrics``: counted in the write path, once per
leg, labelled by MMG and line, with the issue's answer-delay buckets."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from regulator.core.legs import LegEvent, LegStatus
from regulator.core.models import Route
from regulator.ports import FixedClock
from regulator.web import keys
from tests.support.app import NIMES, AppClient, post_twilio

CALLER = "+33611223344"
BUCKETS = ["5.0", "10.0", "15.0", "20.0", "30.0", "60.0", "90.0", "120.0", "300.0", "+Inf"]


async def samples(client: AppClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = await (await client.get("/metrics")).text()
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def labels(target: str, mmg: str = "nimes", **more: str) -> frozenset[tuple[str, str]]:
    return frozenset({"mmg": mmg, "target": target, **more}.items())


async def test_leg_metrics_through_the_app(client: AppClient, clock: FixedClock) -> None:
    router = client.app[keys.ROUTER]
    t0 = clock.now()

    def ev(call_id: str, target: Route, status: LegStatus, s: float, **kw: object) -> LegEvent:
        return LegEvent(
            call_id=call_id,
            target=target,
            status=status,
            at=t0 + timedelta(seconds=s),
            platform="twilio",
            **kw,  # type: ignore[arg-type]
        )

    # A real call first: its leg events below carry no MMG, the router fills it in.
    status, _ = await post_twilio(
        client, "/hooks/twilio/voice", {"CallSid": "CA1", "From": CALLER, "To": NIMES}
    )
    assert status == 200
    await client.app[keys.WRITER].flush()  # leg callbacks come seconds after the call's
    reg, desk, pharmacy = Route.REGULATION, Route.DIRECT_ACCESS, Route.PHARMACY
    events = [
        # CA1: regulation answered at 25 s, in disorder, every callback twice.
        ev("CA1", reg, LegStatus.ANSWERED, 25),
        ev("CA1", reg, LegStatus.OFFERED, 0),
        ev("CA1", reg, LegStatus.RINGING, 1),
        ev("CA1", reg, LegStatus.COMPLETED, 85, duration_s=60),
        # Other calls carry their MMG (a callback URL's ``mmg=``).
        ev("CA2", reg, LegStatus.OFFERED, 0, mmg="nimes"),
        ev("CA2", reg, LegStatus.ANSWERED, 75, mmg="nimes"),
        ev("CA3", reg, LegStatus.OFFERED, 0, mmg="nimes"),
        ev("CA3", reg, LegStatus.ABANDONED, 40, mmg="nimes"),  # counted abandon
        ev("CA4", reg, LegStatus.OFFERED, 0, mmg="nimes"),
        ev("CA4", reg, LegStatus.ABANDONED, 8, mmg="nimes"),  # short: not counted
        ev("CA5", desk, LegStatus.OFFERED, 0, mmg="nimes"),
        ev("CA5", desk, LegStatus.NO_ANSWER, 30, mmg="nimes"),
        # A completed without answered: the answer is its instant minus its talk time.
        ev("CA6", desk, LegStatus.OFFERED, 0, mmg="nimes"),
        ev("CA6", desk, LegStatus.COMPLETED, 130, mmg="nimes", duration_s=100),
        ev("CA7", pharmacy, LegStatus.OFFERED, 0, mmg="metz"),
        ev("CA7", pharmacy, LegStatus.BUSY, 2, mmg="metz"),
    ]
    for event in events + events:
        await router.leg_event(event)
    await client.app[keys.WRITER].flush()
    got = await samples(client)

    def value(name: str, lab: frozenset[tuple[str, str]]) -> float:
        return got.get((name, lab), 0.0)

    offered = "regulator_legs_offered_total"
    abandoned = "regulator_legs_abandoned_total"
    assert value(offered, labels("regulation")) == 3  # CA1, CA2, CA3 (CA4 short)
    assert value(abandoned, labels("regulation")) == 1
    assert value(offered, labels("front_desk")) == 2
    assert value(abandoned, labels("front_desk")) == 0
    assert value(offered, labels("pharmacy", mmg="metz")) == 1

    delay = "regulator_answer_delay_seconds"
    # Regulation: 25 s (CA1, filled from the route) and 75 s (CA2); the front desk 30 s.
    reg_buckets = [value(f"{delay}_bucket", labels("regulation", le=le)) for le in BUCKETS]
    assert reg_buckets == [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert value(f"{delay}_count", labels("regulation")) == 2
    assert value(f"{delay}_sum", labels("regulation")) == 100
    desk_buckets = [value(f"{delay}_bucket", labels("front_desk", le=le)) for le in BUCKETS]
    assert desk_buckets == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    # The QS60 the alert computes: answered within 60 s / offered.
    assert (
        value(f"{delay}_bucket", labels("regulation", le="60.0"))
        / value(offered, labels("regulation"))
        == 1 / 3
    )
    # Only bounded labels: no call id, no phone number, no "unknown" MMG here.
    names = {lab for (name, lab) in got if name.startswith("regulator_legs_")}
    assert all(dict(lab)["mmg"] in {"nimes", "metz"} for lab in names)

    # The stored legs read as the metrics do.
    legs = await client.app[keys.STORE].legs("nimes", t0, t0 + timedelta(hours=1))
    assert [(leg.call_id, leg.line, leg.wait_s) for leg in legs] == [
        ("CA1", "regulation", 25.0),
        ("CA2", "regulation", 75.0),
        ("CA3", "regulation", None),
        ("CA4", "regulation", None),
        ("CA5", "front_desk", None),
        ("CA6", "front_desk", 30.0),
    ]
