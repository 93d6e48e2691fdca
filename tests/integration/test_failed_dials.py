"""Failed dials on every platform: the destination given last did not answer.

What follows a failure: front desk or pharmacy → centre 15; centre 15 → the front desk
once where the protocol allows overflow (Nîmes, open); otherwise the "raccrochez et
composez le 15" announcement. No destination is ever offered twice to one call, on
any platform, whoever (replica, PBX) reports the failure and whether or not it names
the destination.
"""

from __future__ import annotations

import itertools
import shutil
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from regulator.core.models import Route
from regulator.ports import FixedClock, RouteHistory
from regulator.storage.redis import RedisStore
from regulator.storage.sqlite import SqliteStore
from regulator.web import keys
from regulator.web.app import create_app
from tests.support.app import (
    FRONT_DESK_NIMES,
    KAMAILIO_SECRET,
    METZ,
    NIMES,
    PROFESSIONAL_NIMES,
    PROTOCOLS,
    PUBLIC,
    REGULATION_NIMES,
    AppClient,
    ClientFactory,
    make_settings,
    post_generic,
    post_twilio,
    post_vonage,
)

CALLER = "+33611223344"
PROFESSIONAL_METZ = "+33387000018"
PHARMACY_NIMES = "+33466333333"

#: What each dialled number or URI is, in the two MMGs used here.
NAMES = {
    REGULATION_NIMES: "regulation",
    "sip:sas30@regulation.example": "regulation",
    FRONT_DESK_NIMES: "desk",
    PHARMACY_NIMES: "pharmacy",
    "+33387000015": "regulation",
    "+33387551200": "desk",
    "sip:accueil@mmg-metz.example": "desk",
}
ROUTE_OF = {"regulation": Route.REGULATION, "desk": Route.DIRECT_ACCESS, "pharmacy": Route.PHARMACY}
MMG_OF = {NIMES: "nimes", METZ: "metz"}

_ids = itertools.count()


def _name(dialled: str | None) -> str | None:
    if dialled is None:
        return None
    if dialled[:1].isdigit():  # Vonage numbers come without "+"
        dialled = f"+{dialled}"
    return NAMES[dialled]


@dataclass(frozen=True)
class Scenario:
    """A call's first destination and what each successive failure must lead to."""

    to: str
    caller: str
    digits: str | None  # menu key typed, when the MMG offers a menu
    chain: tuple[str | None, ...]  # destinations in order; None = the announcement


SCENARIOS = {
    # Nîmes (open, overflow to the desk allowed after 90 s).
    "nimes-desk": Scenario(NIMES, PROFESSIONAL_NIMES, None, ("desk", "regulation", None)),
    "nimes-pharmacy": Scenario(NIMES, CALLER, "2", ("pharmacy", "regulation", "desk", None)),
    "nimes-regulation": Scenario(NIMES, CALLER, "1", ("regulation", "desk", None)),
    # Metz (open, no menu, no overflow).
    "metz-desk": Scenario(METZ, PROFESSIONAL_METZ, None, ("desk", "regulation", None)),
    "metz-regulation": Scenario(METZ, CALLER, None, ("regulation", None)),
}


@dataclass(frozen=True)
class Offer:
    """One answer: the destination dialled (None: announcement) and how to report it failed."""

    dest: str | None
    route: str  # the answer's route (what a generic PBX posts back as "target")
    callback: str | None  # our own dial callback path (Twilio <Dial action>, Vonage eventUrl)
    said: str


def _new_id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


async def _history(client: AppClient, call_id: str) -> RouteHistory | None:
    await client.app[keys.WRITER].flush()
    return await client.app[keys.STORE].route_history(call_id)


def _expect_history(scenario: Scenario) -> tuple[Route, ...]:
    """The destinations dialled in order, then CLOSED: told to hang up and dial 15."""
    return (*(ROUTE_OF[d] for d in scenario.chain if d is not None), Route.CLOSED)


def _check_announcement(offer: Offer) -> None:
    assert offer.dest is None, offer
    assert offer.route == "regulation"
    assert "Raccrochez et composez le 15" in offer.said


# ------------------------------------------------------------------------ Twilio


def _twilio_offer(body: str) -> Offer:
    root = ET.fromstring(body.encode())
    said = " ".join(s.text or "" for s in root.iter("Say"))
    dial = root.find("Dial")
    if dial is None:
        assert root.find("Hangup") is not None, body
        return Offer(None, "regulation", None, said)
    target = dial.find("Number")
    if target is None:
        target = dial.find("Sip")
    assert target is not None and target.text
    action = (dial.get("action") or "").removeprefix(PUBLIC)
    route = action.partition("target=")[2].partition("&")[0]
    return Offer(_name(target.text), route, action, said)


async def _twilio_start(client: AppClient, call_id: str, s: Scenario) -> Offer:
    params = {"CallSid": call_id, "From": s.caller, "To": s.to}
    _, body = await post_twilio(client, "/hooks/twilio/voice", params)
    if s.digits is not None:
        _, body = await post_twilio(client, "/hooks/twilio/gather", {**params, "Digits": s.digits})
    return _twilio_offer(body)


@pytest.mark.parametrize("status", ["busy", "no-answer", "failed"])
@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_twilio_failed_dial_table(client: AppClient, scenario: str, status: str) -> None:
    s = SCENARIOS[scenario]
    call_id = _new_id("CAtab")
    offer = await _twilio_start(client, call_id, s)
    seen = [offer.dest]
    for _ in s.chain[1:]:
        assert offer.callback is not None and "target=" in offer.callback
        params = {"CallSid": call_id, "From": s.caller, "To": s.to, "DialCallStatus": status}
        code, body = await post_twilio(client, offer.callback, params)
        assert code == 200
        offer = _twilio_offer(body)
        seen.append(offer.dest)
    assert tuple(seen) == s.chain
    _check_announcement(offer)
    history = await _history(client, call_id)
    assert history is not None and history.routes == _expect_history(s)


async def test_twilio_dial_status_without_target_follows_the_stored_history(
    client: AppClient,
) -> None:
    # A <Dial action> written without ?target= (an older TwiML, a hand-made flow).
    s = SCENARIOS["nimes-desk"]
    offer = await _twilio_start(client, "CAnotarget", s)
    assert offer.dest == "desk"
    await client.app[keys.WRITER].flush()
    params = {"CallSid": "CAnotarget", "From": s.caller, "To": s.to, "DialCallStatus": "busy"}
    _, body = await post_twilio(client, "/hooks/twilio/dial-status?mmg=nimes", params)
    offer = _twilio_offer(body)
    assert offer.dest == "regulation"
    await client.app[keys.WRITER].flush()
    _, body = await post_twilio(client, "/hooks/twilio/dial-status?mmg=nimes", params)
    _check_announcement(_twilio_offer(body))


# ------------------------------------------------------------------------ Vonage


def _vonage_offer(ncco: list[dict[str, Any]]) -> Offer:
    said = " ".join(a["text"] for a in ncco if a["action"] == "talk")
    connect = next((a for a in ncco if a["action"] == "connect"), None)
    if connect is None:
        return Offer(None, "regulation", None, said)
    endpoint = connect["endpoint"][0]
    dialled = endpoint.get("number") or endpoint.get("uri")
    callback = connect["eventUrl"][0].removeprefix(PUBLIC)
    route = callback.partition("target=")[2].partition("&")[0]
    return Offer(_name(dialled), route, callback, said)


async def _vonage_start(client: AppClient, call_id: str, s: Scenario) -> Offer:
    leg = {"uuid": f"{call_id}-leg", "conversation_uuid": call_id}
    numbers = {"from": s.caller.lstrip("+"), "to": s.to.lstrip("+")}
    _, ncco = await post_vonage(client, "/hooks/vonage/answer", {**leg, **numbers})
    if s.digits is not None:
        payload = {**leg, **numbers, "dtmf": {"digits": s.digits, "timed_out": False}}
        _, ncco = await post_vonage(client, "/hooks/vonage/input", payload)
    return _vonage_offer(ncco)


@pytest.mark.parametrize("status", ["busy", "timeout", "failed", "rejected"])
@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_vonage_failed_dial_table(client: AppClient, scenario: str, status: str) -> None:
    s = SCENARIOS[scenario]
    call_id = _new_id("CONtab")
    offer = await _vonage_start(client, call_id, s)
    seen = [offer.dest]
    for step in s.chain[1:]:
        assert offer.callback is not None and "target=" in offer.callback
        # The failed leg reports itself: its own uuid, the dialled number as "to".
        event = {
            "uuid": f"{call_id}-out-{step}",
            "conversation_uuid": call_id,
            "from": s.to.lstrip("+"),
            "to": "33400000000",
            "status": status,
        }
        code, ncco = await post_vonage(client, offer.callback, event)
        assert code == 200
        offer = _vonage_offer(ncco)
        seen.append(offer.dest)
    assert tuple(seen) == s.chain
    _check_announcement(offer)
    history = await _history(client, call_id)
    assert history is not None and history.routes == _expect_history(s)


# ------------------------------------------------------------------------ generic


def _generic_offer(data: dict[str, Any]) -> Offer:
    said = " ".join(data["say"])
    if data["action"] != "dial":
        assert data["action"] in ("announce", "menu"), data
        return Offer(None, data["route"], None, said)
    destination = data["destination"]
    dialled = destination["number"] or destination["sip"]
    return Offer(_name(dialled), data["route"], None, said)


async def _generic_post(client: AppClient, path: str, payload: dict[str, Any]) -> Offer:
    code, data = await post_generic(client, path, payload)
    assert code == 200, data
    assert isinstance(data, dict), data
    return _generic_offer(data)


async def _generic_start(client: AppClient, call_id: str, s: Scenario) -> Offer:
    base = {"call_id": call_id, "from": s.caller, "to": s.to}
    offer = await _generic_post(client, "/hooks/generic/call", base)
    if s.digits is not None:
        offer = await _generic_post(
            client, "/hooks/generic/call", {**base, "stage": "digits", "digits": s.digits}
        )
    return offer


async def _generic_fail(
    client: AppClient, call_id: str, s: Scenario, offer: Offer, how: str, target: bool
) -> Offer:
    """Report ``offer`` failed: on /call ("stage": "dial_failed") or /event (a failed
    status), naming the destination (``target``) or not."""
    payload: dict[str, Any] = {"call_id": call_id, "from": s.caller, "to": s.to}
    if target:
        payload["target"] = offer.route
    if how == "call":
        return await _generic_post(
            client, "/hooks/generic/call", {**payload, "stage": "dial_failed"}
        )
    return await _generic_post(client, "/hooks/generic/event", {**payload, "status": how})


GENERIC_REPORTS = {
    # name: (call or the /event status, target posted?)
    "call-with-target": ("call", True),
    "call-without-target": ("call", False),
    "event-busy-with-target": ("busy", True),
    "event-no-answer-without-target": ("no-answer", False),
    "event-failed-with-target": ("failed", True),
}


@pytest.mark.parametrize("report", GENERIC_REPORTS)
@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_generic_failed_dial_table(client: AppClient, scenario: str, report: str) -> None:
    s = SCENARIOS[scenario]
    how, target = GENERIC_REPORTS[report]
    call_id = _new_id("gtab")
    offer = await _generic_start(client, call_id, s)
    seen = [offer.dest]
    for _ in s.chain[1:]:
        if not target:  # the service reads the call's last route from the store
            await client.app[keys.WRITER].flush()
        offer = await _generic_fail(client, call_id, s, offer, how, target)
        seen.append(offer.dest)
    assert tuple(seen) == s.chain
    _check_announcement(offer)
    # A PBX that reports a failure after the announcement still gets no dial.
    await client.app[keys.WRITER].flush()
    _check_announcement(await _generic_fail(client, call_id, s, offer, how, target))
    history = await _history(client, call_id)
    assert history is not None and history.routes == _expect_history(s)


async def test_generic_professional_whose_desk_dial_fails_goes_to_centre_15(
    client: AppClient,
) -> None:
    first = await _generic_start(client, "g-desk", SCENARIOS["nimes-desk"])
    assert first.dest == "desk"
    await client.app[keys.WRITER].flush()
    code, after = await post_generic(
        client,
        "/hooks/generic/call",
        {"call_id": "g-desk", "from": PROFESSIONAL_NIMES, "to": NIMES, "stage": "dial_failed"},
    )
    assert code == 200
    assert (after["route"], after["ground"], after["destination"]["number"]) == (
        "regulation",
        None,
        REGULATION_NIMES,
    ), after["rule"]
    rule = "l'accueil de la MMG sans réponse : renvoi vers la régulation (centre 15)"
    assert after["rule"] == rule


async def test_generic_caller_whose_pharmacy_dial_fails_goes_to_centre_15(
    client: AppClient,
) -> None:
    first = await _generic_start(client, "g-ph", SCENARIOS["nimes-pharmacy"])
    assert first.dest == "pharmacy"
    await client.app[keys.WRITER].flush()
    code, after = await post_generic(
        client,
        "/hooks/generic/call",
        {"call_id": "g-ph", "from": CALLER, "to": NIMES, "stage": "dial_failed"},
    )
    assert code == 200
    assert (after["route"], after["ground"], after["destination"]["number"]) == (
        "regulation",
        None,
        REGULATION_NIMES,
    ), after["rule"]
    # The ARS figures count no overflow: the call moved from pharmacy to regulation.
    from tests.support.app import report

    data = await report(client)
    assert data["calls_by_ground"].get("regulation_overflow", 0) == 0
    assert data["calls_by_route"]["regulation"] == 1


async def test_generic_report_without_the_called_number_uses_the_recorded_mmg(
    client: AppClient,
) -> None:
    offer = await _generic_start(client, "g-noto", SCENARIOS["nimes-desk"])
    assert offer.dest == "desk"
    await client.app[keys.WRITER].flush()
    report = {"call_id": "g-noto", "stage": "dial_failed"}
    offer = await _generic_post(client, "/hooks/generic/call", report)
    assert offer.dest == "regulation"
    await client.app[keys.WRITER].flush()
    _check_announcement(await _generic_post(client, "/hooks/generic/call", report))


async def test_report_for_a_call_nobody_knows_dials_the_failsafe_once(client: AppClient) -> None:
    # No number, no record, no MMG: the fail-safe line, then never again.
    report = {"call_id": "g-nobody", "stage": "dial_failed"}
    code, first = await post_generic(client, "/hooks/generic/call", report)
    assert code == 200 and first["failsafe"] is True
    assert first["action"] == "dial" and first["destination"]["number"] == "+33466000099"
    code, again = await post_generic(client, "/hooks/generic/call", report)
    assert code == 200 and again["action"] == "announce"
    assert again["destination"]["announce"] == "15"


# ------------------------------------------------------------------------ Kamailio


@pytest_asyncio.fixture
async def kamailio_client(
    aiohttp_client: ClientFactory, tmp_path: Path, clock: FixedClock
) -> AppClient:
    """Nîmes with a gateway for its numbers, and a menu whose default is the pharmacy
    (Kamailio has no voice menu: the default is what it routes)."""
    protocols = tmp_path / "protocols"
    shutil.copytree(PROTOCOLS, protocols)
    nimes = protocols / "nimes.yaml"
    nimes.write_text(
        nimes.read_text(encoding="utf-8").replace("default: regulation}", "default: pharmacy}"),
        encoding="utf-8",
    )
    settings = make_settings(tmp_path, protocols_dir=protocols, sip_gateway="gw.example")
    store = SqliteStore(tmp_path / "k.sqlite3")
    return await aiohttp_client(create_app(settings, store, clock))


@pytest.mark.parametrize(
    ("caller", "to", "first"),
    [
        (PROFESSIONAL_NIMES, NIMES, "direct_access"),  # desk first
        (CALLER, NIMES, "pharmacy"),  # the menu default (pharmacy in this variant)
        (PROFESSIONAL_METZ, METZ, "direct_access"),
        (CALLER, METZ, "regulation"),
    ],
)
async def test_kamailio_fails_over_from_the_decision_to_regulation_last(
    kamailio_client: AppClient, caller: str, to: str, first: str
) -> None:
    """Kamailio fails over inside the proxy (serial rtjson routes): the table is the
    route order it is given. Every failure of a route moves on to the next; the
    decision's routes come first, regulation's close the list, nothing is listed twice."""
    resp = await kamailio_client.post(
        "/hooks/kamailio/route",
        json={"call_id": _new_id("k"), "from": caller, "to": to, "source_ip": "127.0.0.1"},
        headers={"X-Regulator-Secret": KAMAILIO_SECRET},
    )
    assert resp.status == 200
    doc = orjson.loads(await resp.read())
    assert doc["routing"] == "serial"
    routes: list[dict[str, Any]] = doc["routes"]
    # The first extra header names the route (regulation routes add X-Regulator-Origin);
    # the document's targets say the same, for the script's dial-leg notifications.
    labels = [r["headers"]["extra"].split("\r\n")[0].split(":", 1)[1].strip() for r in routes]
    assert doc["targets"].split("|") == labels
    uris = [r["uri"] for r in routes]
    assert len(set(uris)) == len(uris), uris
    assert labels[0] == first
    assert labels[-1] == "regulation"
    # Once regulation starts, only regulation follows: a failed regulation route never
    # leads back to the desk or the pharmacy.
    start = labels.index("regulation")
    assert set(labels[:start]) <= {first} and set(labels[start:]) == {"regulation"}


# ------------------------------------------------------------------ across replicas


async def test_failed_dial_reported_to_another_replica_follows_the_stored_history(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    clock: FixedClock,
    redis_url: str,
    redis_prefix: str,
) -> None:
    replicas: list[AppClient] = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        settings = make_settings(tmp_path / name)
        store = RedisStore(redis_url, prefix=redis_prefix)
        replicas.append(await aiohttp_client(create_app(settings, store, clock)))
    a, b = replicas
    s = SCENARIOS["nimes-pharmacy"]
    offer = await _generic_start(a, "rep-1", s)
    assert offer.dest == "pharmacy"
    await a.app[keys.WRITER].flush()
    # Replica B never saw the call: the store tells it the pharmacy failed.
    offer = await _generic_fail(b, "rep-1", s, offer, "call", target=False)
    assert offer.dest == "regulation"
    await b.app[keys.WRITER].flush()
    # Back on A, whose memory still says "pharmacy": the store says regulation failed.
    offer = await _generic_fail(a, "rep-1", s, offer, "no-answer", target=False)
    assert offer.dest == "desk"
    await a.app[keys.WRITER].flush()
    offer = await _generic_fail(b, "rep-1", s, offer, "call", target=False)
    _check_announcement(offer)
    history = await _history(b, "rep-1")
    assert history is not None
    assert history.routes == (Route.PHARMACY, Route.REGULATION, Route.DIRECT_ACCESS, Route.CLOSED)


# ------------------------------------------------------- when the store cannot tell


@pytest_asyncio.fixture
async def down_client(
    aiohttp_client: ClientFactory, tmp_path: Path, clock: FixedClock
) -> AsyncIterator[AppClient]:
    """The app on a real Redis store pointed at a socket where no server listens."""
    dead = RedisStore(f"unix://{tmp_path}/no-redis.sock", prefix="dead")
    (tmp_path / "down").mkdir()
    client = await aiohttp_client(create_app(make_settings(tmp_path / "down"), dead, clock))
    yield client


async def test_store_down_failed_dials_never_offer_a_destination_twice(
    down_client: AppClient,
) -> None:
    s = SCENARIOS["nimes-desk"]
    offer = await _generic_start(down_client, "down-1", s)
    # The pending-referral look-up fails: the call goes to centre 15 (fail-safe).
    assert offer.dest == "regulation"
    # Centre 15 named as failed: the desk, once (overflow allowed in Nîmes).
    offer = await _generic_fail(down_client, "down-1", s, offer, "call", target=True)
    assert offer.dest == "desk"
    # Unnamed failures: unknown destination, and this replica remembers both offers.
    for how in ("call", "busy"):
        offer = await _generic_fail(down_client, "down-1", s, offer, how, target=False)
        _check_announcement(offer)


async def test_unknown_destination_without_a_record_goes_to_centre_15_then_announces(
    client: AppClient,
) -> None:
    # The first webhook this service sees of the call is a failure nobody names
    # (record not stored yet, or lost): centre 15, then never centre 15 again.
    s = SCENARIOS["nimes-desk"]
    offer = Offer("desk", "direct_access", None, "")
    offer = await _generic_fail(client, "norec-1", s, offer, "call", target=False)
    assert offer.dest == "regulation"
    offer = await _generic_fail(client, "norec-1", s, offer, "call", target=False)
    _check_announcement(offer)


# ---------------------------------------------------------------- property: no loop

reports = st.lists(
    st.tuples(
        st.sampled_from(["call", "busy", "no-answer", "failed"]),  # where it is posted
        st.sampled_from(["true", "none", "regulation", "direct_access", "pharmacy", "bogus"]),
        st.booleans(),  # the store has caught up before the report
    ),
    min_size=1,
    max_size=5,
)

NO_LOOP = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@NO_LOOP
@given(
    scenario=st.sampled_from(sorted(SCENARIOS)),
    store_up=st.booleans(),
    sequence=reports,
)
async def test_any_sequence_of_failures_ends_on_regulation_or_an_announcement(
    client: AppClient,
    down_client: AppClient,
    scenario: str,
    store_up: bool,
    sequence: list[tuple[str, str, bool]],
) -> None:
    """Reports name the destination given last ("true"), none, or any other (a PBX
    that gets it wrong). Whatever they say, no destination is dialled twice; while they
    are right or silent, a failed desk or pharmacy leads to centre 15 or the
    announcement, and the third failure at the latest ends on the announcement."""
    note(f"scenario={scenario} store_up={store_up} sequence={sequence}")
    app = client if store_up else down_client
    s = SCENARIOS[scenario]
    call_id = _new_id("prop")
    base = {"call_id": call_id, "from": s.caller, "to": s.to}
    offer = await _generic_post(app, "/hooks/generic/call", base)
    dialled = [offer.dest] if offer.dest else []
    if offer.route == "menu":  # (with the store down, the fail-safe dials at once)
        assert s.digits is not None
        offer = await _generic_post(
            app, "/hooks/generic/call", {**base, "stage": "digits", "digits": s.digits}
        )
        dialled += [offer.dest] if offer.dest else []
    truthful = True
    for step, (how, target, caught_up) in enumerate(sequence, start=1):
        if caught_up:
            await app.app[keys.WRITER].flush()
        payload: dict[str, Any] = dict(base)
        if target == "true":
            payload["target"] = offer.route
        elif target != "none":
            payload["target"] = target  # whatever the PBX posts, right or wrong
            truthful = False
        if how == "call":
            after = await _generic_post(
                app, "/hooks/generic/call", {**payload, "stage": "dial_failed"}
            )
        else:
            after = await _generic_post(app, "/hooks/generic/event", {**payload, "status": how})
        if truthful and offer.dest in ("desk", "pharmacy"):
            assert after.dest in ("regulation", None), (step, offer, after)
        if truthful and step >= 3:
            assert after.dest is None, (step, after)
        if after.dest is None:
            _check_announcement(after)
        else:
            dialled.append(after.dest)
        assert len(dialled) == len(set(dialled)), dialled
        offer = after
