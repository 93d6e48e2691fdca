"""Kamailio adapter: shared-secret header, routing request, rtjson document."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regulator.core.models import Decision, Destination, Ground, MenuPrompt, Platform, Route, Stage
from regulator.platforms import kamailio
from regulator.platforms.base import (
    BadHookRequest,
    HookRequest,
    HookUrls,
    RenderContext,
    SignatureError,
)
from regulator.settings import Settings
from tests.unit.helpers import decision as base_decision
from tests.unit.helpers import variant


def _json_bytes(value: object) -> bytes:
    """Any JSON document, including integers too large for 64 bits."""
    return json.dumps(value).encode()


SECRET = "kamailio-shared-secret"
NOW = 1_800_000_000.0
URL = "https://regulator.example/hooks/kamailio/route"
GATEWAY = "trunk.operator.example"
REGULATION = Destination(
    number="+33466000015", sip="sip:sas30@regulation.example", label="centre 15"
)
#: The headers of a route to the regulation line for a call of the test MMG (nimes).
REGULATION_EXTRA = "X-Regulator-Route: regulation\r\nX-Regulator-Origin: mmg=nimes\r\n"


def decision(route: Route, destination: Destination | None, **kwargs: Any) -> Decision:
    """A decision that says one message (Kamailio ignores it: nothing to play)."""
    return base_decision(route, destination, say=("message",), **kwargs)


def request(body: bytes, secret: str | None = SECRET) -> HookRequest:
    headers = {"x-regulator-secret": secret} if secret is not None else {}
    return HookRequest("POST", URL, headers, {}, body, {}, NOW)


ROUTE_REQUEST = orjson.dumps(
    {
        "call_id": "a84b4c76e66710@pc33.example",
        "from": "0612345678",
        "to": "0466123456",
        "source_ip": "192.0.2.10",
    }
)


def rtjson(
    decision_: Decision, gateway: str | None = GATEWAY, regulation: Destination | None = REGULATION
) -> Any:
    answer = kamailio.render(
        decision_, RenderContext(HookUrls(), sip_gateway=gateway, regulation=regulation)
    )
    assert answer.content_type == kamailio.CONTENT_TYPE
    document = orjson.loads(answer.body)
    assert document["version"] == "1.0"
    assert document["routing"] == "serial"
    return document


def uris(document: Any) -> list[str]:
    return [route["uri"] for route in document["routes"]]


# --------------------------------------------------------------- secret


def test_matching_secret_is_accepted() -> None:
    kamailio.verify(request(ROUTE_REQUEST), SECRET)


@pytest.mark.parametrize(
    "given_secret", [None, "", "kamailio-shared-secreT", "kamailio-shared-secret-2", "é"]
)
def test_missing_or_wrong_secret_is_refused(given_secret: str | None) -> None:
    with pytest.raises(SignatureError):
        kamailio.verify(request(ROUTE_REQUEST, given_secret), SECRET)


def test_unconfigured_secret_refuses_everything() -> None:
    with pytest.raises(SignatureError):
        kamailio.verify(request(ROUTE_REQUEST, ""), "")


# --------------------------------------------------------------- parsing


def test_routing_request_becomes_a_call() -> None:
    call = kamailio.parse_call(request(ROUTE_REQUEST), Stage.DIGITS)
    assert call.call_id == "a84b4c76e66710@pc33.example"
    assert call.caller == "0612345678"
    assert call.called == "0466123456"
    assert call.platform is Platform.KAMAILIO
    assert call.stage is Stage.DIGITS
    assert call.digits is None


def test_null_pseudo_variable_caller_is_an_empty_caller() -> None:
    body = orjson.dumps({"call_id": "c1", "from": "<null>", "to": "0466123456"})
    assert kamailio.parse_call(request(body), Stage.INCOMING).caller == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", "body"),
        (b"call_id=c1", "body"),
        (b"\xff\xfe", "body"),
        (b"[1, 2]", "body"),
        (orjson.dumps({"from": "0612345678", "to": "0466123456"}), "call_id"),
        (orjson.dumps({"call_id": "c1", "from": "0612345678", "to": "<null>"}), "to"),
        (orjson.dumps({"call_id": 12, "to": "0466123456"}), "call_id"),
        (orjson.dumps({"call_id": "c1\r\nX-Injected: 1", "to": "0466123456"}), "call_id"),
    ],
)
def test_bad_routing_request_names_the_field(body: bytes, field: str) -> None:
    with pytest.raises(BadHookRequest) as err:
        kamailio.parse_call(request(body), Stage.INCOMING)
    assert err.value.field == field


def test_event_from_the_script_is_parsed() -> None:
    body = orjson.dumps(
        {"call_id": "c1", "status": "no-answer", "target": "regulation", "duration_s": 0}
    )
    event = kamailio.parse_event(request(body))
    assert event.dial_failed
    assert event.target is Route.REGULATION


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=80)
    | st.dictionaries(
        st.sampled_from(
            ["call_id", "from", "to", "source_ip", "status", "target", "duration_s", "digits"]
        ),
        st.none()
        | st.booleans()
        | st.integers()
        | st.text(max_size=30)
        | st.lists(st.integers(), max_size=2),
        max_size=8,
    ).map(_json_bytes)
)
def test_parsing_garbage_raises_only_bad_hook_request(body: bytes) -> None:
    req = request(body)
    for parse in (
        lambda: kamailio.parse_call(req, Stage.DIGITS),
        lambda: kamailio.parse_event(req),
    ):
        with contextlib.suppress(BadHookRequest):
            parse()


# --------------------------------------------------------------- rtjson


def test_regulation_decision_routes_to_its_sip_uri_then_number_without_duplicates() -> None:
    document = rtjson(decision(Route.REGULATION, REGULATION, dial_timeout_s=90))
    assert uris(document) == ["sip:sas30@regulation.example", f"sip:+33466000015@{GATEWAY}"]
    for route in document["routes"]:
        assert route["headers"] == {"extra": REGULATION_EXTRA}
        assert route["fr_inv_timer"] == 90_000


def test_direct_access_goes_first_and_regulation_is_the_failover() -> None:
    front_desk = Destination(number="+33466123400", label="accueil MMG")
    document = rtjson(
        decision(Route.DIRECT_ACCESS, front_desk, ground=Ground.PROFESSIONAL, dial_timeout_s=20)
    )
    assert uris(document) == [
        f"sip:+33466123400@{GATEWAY}",
        "sip:sas30@regulation.example",
        f"sip:+33466000015@{GATEWAY}",
    ]
    first, *failover = document["routes"]
    assert first["headers"]["extra"] == "X-Regulator-Route: direct_access\r\n"
    assert first["fr_inv_timer"] == 20_000
    for route in failover:
        assert route["headers"]["extra"] == REGULATION_EXTRA
        assert "fr_inv_timer" not in route


def test_announce_only_destination_is_replaced_by_the_regulation_line() -> None:
    document = rtjson(decision(Route.PHARMACY, Destination(announce="3237")))
    assert uris(document) == ["sip:sas30@regulation.example", f"sip:+33466000015@{GATEWAY}"]
    assert all(r["headers"]["extra"] == REGULATION_EXTRA for r in document["routes"])
    assert "announce" not in document


def test_menu_decision_without_ivr_goes_to_regulation() -> None:
    menu = decision(Route.MENU, None, menu=MenuPrompt("Tapez 1.", 6, ("1", "2")))
    assert uris(rtjson(menu)) == ["sip:sas30@regulation.example", f"sip:+33466000015@{GATEWAY}"]


def test_numbers_need_a_gateway() -> None:
    document = rtjson(
        decision(Route.DIRECT_ACCESS, Destination(number="+33466123400")), gateway=None
    )
    assert uris(document) == ["sip:sas30@regulation.example"]


def test_nothing_routable_gives_no_routes_and_the_code_to_announce() -> None:
    failsafe = decision(Route.REGULATION, Destination(announce="15"))
    document = rtjson(failsafe, regulation=Destination(announce="15"))
    assert document["routes"] == []
    assert document["announce"] == "15"


def test_render_hangup_has_no_routes() -> None:
    assert orjson.loads(kamailio.render_hangup().body) == {
        "version": "1.0",
        "routing": "serial",
        "routes": [],
    }


# --------------------------------------------------------------- no dead end
# Kamailio relays the routes in order; one it cannot relay (a host that does not
# resolve) used to end the failover. Without a configured gateway, numbers give no
# route at all, and the regulation line always closes the list.

MIXED_DESK = Destination(number="+33466123400", sip="sip:desk@mmg.example", label="accueil")


def test_default_settings_give_no_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGULATOR_SIP_GATEWAY", raising=False)
    monkeypatch.delenv("REGULATOR_CONFIG", raising=False)
    assert Settings().sip_gateway is None


@pytest.mark.parametrize("value", ["", "  "])
def test_blank_gateway_setting_is_no_gateway(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("REGULATOR_SIP_GATEWAY", value)
    assert Settings().sip_gateway is None


def test_default_settings_never_emit_a_number_route(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGULATOR_SIP_GATEWAY", raising=False)
    monkeypatch.delenv("REGULATOR_CONFIG", raising=False)
    document = rtjson(
        decision(Route.DIRECT_ACCESS, MIXED_DESK, ground=Ground.PROFESSIONAL),
        gateway=Settings().sip_gateway,
    )
    assert uris(document) == ["sip:desk@mmg.example", "sip:sas30@regulation.example"]


def test_without_a_gateway_the_desk_by_sip_is_followed_by_regulation_by_sip() -> None:
    document = rtjson(
        decision(Route.DIRECT_ACCESS, MIXED_DESK, ground=Ground.PROFESSIONAL, dial_timeout_s=20),
        gateway=None,
    )
    assert uris(document) == ["sip:desk@mmg.example", "sip:sas30@regulation.example"]
    assert [r["headers"]["extra"] for r in document["routes"]] == [
        "X-Regulator-Route: direct_access\r\n",
        REGULATION_EXTRA,
    ]


def test_without_a_gateway_a_number_only_regulation_line_gives_no_route() -> None:
    # Kamailio's own REGULATION_URI is the failover then (no route: fail-safe).
    document = rtjson(
        decision(Route.REGULATION, Destination(number="+33466000015")),
        gateway=None,
        regulation=Destination(number="+33466000015"),
    )
    assert document["routes"] == []


def test_with_a_gateway_the_regulation_number_route_closes_the_list() -> None:
    document = rtjson(
        decision(Route.DIRECT_ACCESS, MIXED_DESK, ground=Ground.PROFESSIONAL),
        regulation=Destination(number="+33466000015"),
    )
    assert uris(document) == [
        "sip:desk@mmg.example",
        f"sip:+33466123400@{GATEWAY}",
        f"sip:+33466000015@{GATEWAY}",
    ]
    assert document["routes"][-1]["headers"]["extra"] == REGULATION_EXTRA


def _destinations(sip: str, number: str) -> st.SearchStrategy[Destination | None]:
    return st.one_of(
        st.none(),
        st.builds(Destination, announce=st.sampled_from(["15", "3237"])),
        st.builds(
            Destination,
            number=st.sampled_from([None, number]),
            sip=st.sampled_from([None, sip]),
        ),
    )


@settings(max_examples=300, deadline=None)
@given(
    route=st.sampled_from([Route.DIRECT_ACCESS, Route.PHARMACY, Route.REGULATION, Route.MENU]),
    destination=_destinations("sip:desk@mmg.example", "+33466123400"),
    regulation=_destinations("sip:sas30@regulation.example", "+33466000015"),
    gateway=st.sampled_from([None, GATEWAY]),
)
def test_every_route_is_relayable_and_regulation_comes_last(
    route: Route,
    destination: Destination | None,
    regulation: Destination | None,
    gateway: str | None,
) -> None:
    document = rtjson(decision(route, destination), gateway=gateway, regulation=regulation)
    routes = uris(document)
    sips = {d.sip for d in (destination, regulation) if d is not None and d.sip}
    for uri in routes:
        # A destination's own SIP URI, or a number through the configured gateway.
        assert uri in sips or (gateway is not None and uri.endswith(f"@{gateway}")), uri
    assert len(set(routes)) == len(routes)
    reachable = (
        regulation is not None
        and regulation.dialable
        and (regulation.sip is not None or (regulation.number is not None and gateway is not None))
    )
    if reachable:
        assert document["routes"][-1]["headers"]["extra"] == REGULATION_EXTRA


# --------------------------------------------------------------- configuration check


def test_destinations_known_only_by_number_are_unreachable_without_a_gateway() -> None:
    protocol = variant(
        "nimes",
        **{
            "destinations.regulation": {"number": "+33466000015"},
            "destinations.front_desk": {"number": "+33466123400"},
            "routing.menu.default": "pharmacy",
        },
    )
    assert kamailio.unreachable_destinations(protocol, None) == [
        "regulation",
        "front_desk",
        "pharmacy",
    ]
    assert kamailio.unreachable_destinations(protocol, GATEWAY) == []


def test_sip_uris_short_codes_and_a_pharmacy_kamailio_never_rings_are_not_named() -> None:
    # The pharmacy roster has numbers, but the menu default is regulation: Kamailio
    # (no voice menu) never sends a call to the pharmacy.
    protocol = variant("nimes", **{"destinations.front_desk": {"sip": "sip:desk@mmg.example"}})
    assert protocol.destinations.pharmacy.roster
    assert kamailio.unreachable_destinations(protocol, None) == []
    only_code = variant(
        "nimes",
        **{
            "destinations.front_desk": {"sip": "sip:desk@mmg.example"},
            "destinations.pharmacy": {"fallback": "3237", "roster": []},
            "routing.menu.default": "pharmacy",
        },
    )
    assert kamailio.unreachable_destinations(only_code, None) == []


# --------------------------------------------------------------- targets and origin


def test_targets_name_each_route_in_order() -> None:
    document = rtjson(decision(Route.DIRECT_ACCESS, MIXED_DESK, ground=Ground.PROFESSIONAL))
    assert uris(document) == [
        "sip:desk@mmg.example",
        f"sip:+33466123400@{GATEWAY}",
        "sip:sas30@regulation.example",
        f"sip:+33466000015@{GATEWAY}",
    ]
    assert document["targets"].split(kamailio.TARGETS_SEPARATOR) == [
        "direct_access",
        "direct_access",
        "regulation",
        "regulation",
    ]


def test_no_routes_no_targets() -> None:
    document = rtjson(decision(Route.REGULATION, Destination(announce="15")), regulation=None)
    assert document["routes"] == []
    assert "targets" not in document


def test_only_the_regulation_routes_say_where_the_call_comes_from() -> None:
    answer = kamailio.render(
        decision(Route.DIRECT_ACCESS, MIXED_DESK, ground=Ground.PROFESSIONAL),
        RenderContext(
            HookUrls(),
            sip_gateway=None,
            regulation=REGULATION,
            mmg_name="Maison médicale de garde de Nîmes",
        ),
    )
    desk, regulation = orjson.loads(answer.body)["routes"]
    assert "X-Regulator-Origin" not in desk["headers"]["extra"]
    assert regulation["headers"]["extra"] == (
        "X-Regulator-Route: regulation\r\n"
        'X-Regulator-Origin: mmg=nimes; name="Maison medicale de garde de Nimes"\r\n'
    )


@pytest.mark.parametrize(
    ("mmg", "name", "expected"),
    [
        (
            "nimes",
            "Maison médicale de garde de Nîmes",
            'mmg=nimes; name="Maison medicale de garde de Nimes"',
        ),
        ("coeur", "MMG du Sacré-Cœur", 'mmg=coeur; name="MMG du Sacre-Coeur"'),
        ("q", 'Dite "la Gare" \\ nord\r\nX-Evil: 1', 'mmg=q; name="Dite la Gare nord X-Evil: 1"'),
        ("nimes", None, "mmg=nimes"),
        ("nimes", "日本", "mmg=nimes"),
        (None, "Nîmes", None),
        ("bad id; x=1", "Nîmes", None),
    ],
)
def test_origin_header_is_ascii_and_cannot_break_the_sip_header(
    mmg: str | None, name: str | None, expected: str | None
) -> None:
    value = kamailio.origin_header(mmg, name)
    assert value == expected
    if value is not None:
        assert value.isascii() and "\r" not in value and "\n" not in value


def test_origin_name_is_cut_to_a_sane_length() -> None:
    value = kamailio.origin_header("nimes", "é" * 500)
    assert value == 'mmg=nimes; name="' + "e" * 120 + '"'


# --------------------------------------------------------------- dial-leg events

EVENT_URL = "https://regulator.example/hooks/kamailio/event"


def leg_request(**fields: Any) -> HookRequest:
    body = {"call_id": "a84b4c76e66710@pc33.example", "target": "regulation", **fields}
    return HookRequest(
        "POST", EVENT_URL, {"x-regulator-secret": SECRET}, {}, _json_bytes(body), {}, NOW
    )


def leg(**fields: Any) -> Any:
    event = kamailio.parse_leg(leg_request(**fields))
    assert event is not None
    return event


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"event": "offered"}, "offered"),
        ({"event": "ringing", "code": 180}, "ringing"),
        ({"event": "ringing", "code": 183}, "ringing"),
        ({"event": "answered", "code": 200}, "answered"),
        ({"event": "cancel"}, "abandoned"),
        ({"event": "bye"}, "completed"),
        ({"event": "failed", "code": 486}, "busy"),
        ({"event": "failed", "code": 600}, "busy"),
        ({"event": "failed", "code": 603}, "busy"),
        ({"event": "failed", "code": 408}, "no_answer"),
        ({"event": "failed", "code": 480}, "no_answer"),
        ({"event": "failed", "code": 487, "timeout": True}, "no_answer"),
        ({"event": "failed", "code": 408, "timeout": True}, "no_answer"),
        ({"event": "failed", "code": 487}, "failed"),
        ({"event": "failed", "code": 404}, "failed"),
        ({"event": "failed", "code": 503}, "failed"),
        ({"event": "failed", "code": 302}, "failed"),
        ({"event": "failed", "code": "486"}, "busy"),
        # Nothing came back: tm's reply timer (a silent host), an unresolvable one.
        ({"event": "failed", "code": 408, "timeout": True, "replied": False}, "failed"),
        ({"event": "failed", "code": 478, "replied": False}, "failed"),
        ({"event": "failed", "code": 486, "replied": True}, "busy"),
        ({"event": "FAILED", "code": 486}, "busy"),
    ],
)
def test_sip_events_map_to_leg_statuses(fields: dict[str, Any], status: str) -> None:
    event = leg(**fields, at="1800000000.250000")
    assert event.status.value == status
    assert event.target is Route.REGULATION
    assert event.call_id == "a84b4c76e66710@pc33.example"
    assert event.platform == "kamailio"
    assert event.mmg == ""  # the router fills it from the call's route history


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("1800000000.123456", "2027-01-15T08:00:00.123456+00:00"),
        ("1800000000.5", "2027-01-15T08:00:00.500000+00:00"),
        ("1800000000.123456789", "2027-01-15T08:00:00.123456+00:00"),
        ("1800000000", "2027-01-15T08:00:00+00:00"),
        (1800000000, "2027-01-15T08:00:00+00:00"),
        (" 1800000001.000001 ", "2027-01-15T08:00:01.000001+00:00"),
    ],
)
def test_kamailio_time_is_read_to_the_microsecond(at: object, expected: str) -> None:
    assert leg(event="offered", at=at).at.isoformat() == expected


def test_without_a_time_the_receipt_time_is_used() -> None:
    assert leg(event="offered").at.timestamp() == NOW


@pytest.mark.parametrize(
    "at",
    [
        "١٨٠٠٠٠٠٠٠٠",  # Arabic-Indic digits: str.isdigit() says yes, Kamailio never sends them
        "１８００００００００",  # full-width digits
        "1800000000.",
        ".5",
        "1800000000,5",
        "-1800000000",
        "1.8e9",
        "0x6b49d200",
        "1800000000.12a",
        1800000000.5,
        True,
        [],
        "9" * 13,
        "1700000000",  # months ago: not a time this script just wrote
        "1900000000",  # years ahead
    ],
)
def test_a_time_that_is_not_kamailio_s_is_refused_naming_the_field(at: object) -> None:
    with pytest.raises(BadHookRequest) as err:
        leg(event="offered", at=at)
    assert err.value.field == "at"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"event": "ringing", "call_id": None}, "call_id"),
        ({"event": "ringing", "target": None}, "target"),
        ({"event": "ringing", "target": "menu"}, "target"),
        ({"event": "ringing", "target": "closed"}, "target"),
        ({"event": "ringing", "target": "centre15"}, "target"),
        ({"target": "regulation"}, "event"),
        ({"event": "hangup"}, "event"),
        ({"event": "failed"}, "code"),
        ({"event": "failed", "code": 200}, "code"),
        ({"event": "failed", "code": 99}, "code"),
        ({"event": "failed", "code": 700}, "code"),
        ({"event": "failed", "code": "４８６"}, "code"),
        ({"event": "failed", "code": True}, "code"),
        ({"event": "ringing", "code": 200}, "code"),
        ({"event": "answered", "code": 180}, "code"),
        ({"event": "failed", "code": 486, "timeout": "yes"}, "timeout"),
        ({"event": "failed", "code": 486, "replied": 0}, "replied"),
    ],
)
def test_unusable_leg_events_name_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(BadHookRequest) as err:
        leg(**fields)
    assert err.value.field == field


def test_a_timed_out_branch_needs_no_code() -> None:
    assert leg(event="failed", timeout=True).status.value == "no_answer"


@settings(max_examples=200, deadline=None)
@given(name=st.text())
def test_any_mmg_name_gives_a_header_value_sip_can_carry(name: str) -> None:
    value = kamailio.origin_header("nimes", name)
    assert value is not None and value.startswith("mmg=nimes")
    assert value.isascii() and value.isprintable()
    if value != "mmg=nimes":
        inner = value.removeprefix('mmg=nimes; name="').removesuffix('"')
        assert inner and '"' not in inner and "\\" not in inner
        assert len(inner) <= 120 and inner == inner.strip()
