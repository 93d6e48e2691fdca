"""Vonage adapter: signed-webhook JWTs (real PyJWT tokens), parsing, NCCO."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import jwt
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regulator.core.decision import decide, failsafe
from regulator.core.models import (
    Call,
    Decision,
    DecisionContext,
    Destination,
    Ground,
    MenuPrompt,
    Platform,
    Route,
    Stage,
)
from regulator.core.protocol import Protocol
from regulator.platforms import vonage
from regulator.platforms.base import (
    BadHookRequest,
    HookRequest,
    HookUrls,
    RenderContext,
    SignatureError,
)
from regulator.protocols import load_protocol_file
from tests.support.clock import PARIS
from tests.support.paths import PROTOCOLS_DIR
from tests.support.vonage_ncco import NccoRejected, check_ncco
from tests.unit.helpers import AUDIO_BASE, decision, recorded, variant


def _json_bytes(value: object) -> bytes:
    """Any JSON document, including integers too large for 64 bits."""
    return json.dumps(value).encode()


SECRET = "vonage-signature-secret-of-32-bytes!"
NOW = 1_800_000_000.0
BASE = "https://regulator.example/hooks/vonage"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def token(payload: bytes, *, secret: str = SECRET, **claims: Any) -> str:
    """A webhook JWT as Vonage signs it: HS256 with iat, jti and payload_hash."""
    body: dict[str, Any] = {
        "iat": int(NOW),
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
        "payload_hash": sha256_hex(payload),
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, secret, algorithm="HS256")


def post(path: str, payload: Mapping[str, Any], *, query: str = "") -> HookRequest:
    """A signed POST webhook with a JSON body (``query`` is our own callback's query)."""
    body = orjson.dumps(payload)
    headers = {"authorization": f"Bearer {token(body)}"}
    url = f"{BASE}/{path}" + (f"?{query}" if query else "")
    params = dict(pair.split("=", 1) for pair in query.split("&")) if query else {}
    return HookRequest("POST", url, headers, params, body, {}, NOW)


def get(path: str, params: Mapping[str, str], *, auth: str | None = None) -> HookRequest:
    url = f"{BASE}/{path}?{urlencode(params)}"
    headers = {"authorization": auth} if auth is not None else {}
    return HookRequest("GET", url, headers, dict(params), b"", {}, NOW)


ANSWER = {
    "from": "33612345678",
    "to": "33466123456",
    "uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    "conversation_uuid": "CON-aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    "region_url": "https://api-eu-3.vonage.com",
}


# --------------------------------------------------------------- signed webhooks


def test_signed_post_webhook_is_accepted_and_claims_returned() -> None:
    req = post("event", {"uuid": "u1", "status": "answered"})
    vonage.verify(req, SECRET)
    claims = vonage.decode_claims(req, SECRET)
    assert claims["iss"] == "Vonage"
    assert isinstance(claims["jti"], str)


def test_get_answer_webhook_signed_over_empty_body_is_accepted() -> None:
    req = get("answer", ANSWER, auth=f"Bearer {token(b'')}")
    vonage.verify(req, SECRET)


def test_get_answer_webhook_signed_over_its_query_as_json_is_accepted() -> None:
    # Vonage support: for GET, the hash is over the query parameters as compact JSON.
    query_json = orjson.dumps(ANSWER)
    req = get("answer", ANSWER, auth=f"Bearer {token(query_json)}")
    vonage.verify(req, SECRET)
    tampered = get("answer", {**ANSWER, "from": "33600000000"}, auth=f"Bearer {token(query_json)}")
    with pytest.raises(SignatureError, match="payload_hash"):
        vonage.verify(tampered, SECRET)


def test_token_signed_with_another_secret_is_refused() -> None:
    body = orjson.dumps({"uuid": "u1", "status": "answered"})
    forged = token(body, secret="another-secret-also-32-bytes-long!!")
    req = HookRequest(
        "POST", f"{BASE}/event", {"authorization": f"Bearer {forged}"}, {}, body, {}, NOW
    )
    with pytest.raises(SignatureError):
        vonage.verify(req, SECRET)


def test_tampered_body_does_not_match_payload_hash() -> None:
    body = orjson.dumps({"uuid": "u1", "status": "busy"})
    tampered = orjson.dumps({"uuid": "u1", "status": "answered"})
    req = HookRequest(
        "POST", f"{BASE}/event", {"authorization": f"Bearer {token(body)}"}, {}, tampered, {}, NOW
    )
    with pytest.raises(SignatureError, match="payload_hash"):
        vonage.verify(req, SECRET)


def test_respaced_json_body_still_matches_its_compact_hash() -> None:
    compact = orjson.dumps({"uuid": "u1", "status": "busy"})
    spaced = b'{ "uuid": "u1",  "status": "busy" }'
    req = HookRequest(
        "POST", f"{BASE}/event", {"authorization": f"Bearer {token(compact)}"}, {}, spaced, {}, NOW
    )
    vonage.verify(req, SECRET)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iat": int(NOW) - 301}, "too old"),
        ({"iat": int(NOW) + 120}, "future"),
        ({"iat": None}, "iat"),
        ({"iat": "yesterday"}, "iat"),
        ({"exp": int(NOW) - 60}, "expired"),
        ({"nbf": int(NOW) + 120}, "not yet valid"),
        ({"payload_hash": None}, "payload_hash"),
        ({"payload_hash": 42}, "payload_hash"),
    ],
)
def test_stale_or_incomplete_tokens_are_refused(claims: dict[str, Any], reason: str) -> None:
    body = b'{"uuid":"u1","status":"busy"}'
    req = HookRequest(
        "POST",
        f"{BASE}/event",
        {"authorization": f"Bearer {token(body, **claims)}"},
        {},
        body,
        {},
        NOW,
    )
    with pytest.raises(SignatureError, match=reason):
        vonage.verify(req, SECRET)


def test_recent_token_within_leeway_is_accepted() -> None:
    body = b'{"uuid":"u1","status":"busy"}'
    for iat in (int(NOW) - 299, int(NOW) + 10):
        req = HookRequest(
            "POST",
            f"{BASE}/event",
            {"authorization": f"Bearer {token(body, iat=iat)}"},
            {},
            body,
            {},
            NOW,
        )
        vonage.verify(req, SECRET)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_unsigned_alg_none_and_other_algorithms_are_refused() -> None:
    body = b'{"uuid":"u1","status":"busy"}'
    claims = orjson.dumps({"iat": int(NOW), "payload_hash": sha256_hex(body)})
    none_header = b64url(b'{"alg":"none","typ":"JWT"}')
    hs512_header = b64url(b'{"alg":"HS512","typ":"JWT"}')
    unsigned = f"{none_header}.{b64url(claims)}."
    signing_input = f"{hs512_header}.{b64url(claims)}".encode()
    hs512 = hmac.new(SECRET.encode(), signing_input, hashlib.sha512).digest()
    other_alg = f"{signing_input.decode()}.{b64url(hs512)}"
    for forged in (unsigned, other_alg):
        req = HookRequest(
            "POST", f"{BASE}/event", {"authorization": f"Bearer {forged}"}, {}, body, {}, NOW
        )
        with pytest.raises(SignatureError):
            vonage.verify(req, SECRET)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer not.a.jwt",
        "Bearer \u00e9\u00e9.\u00e9.\u00e9",
    ],
)
def test_missing_or_malformed_authorization_is_refused(authorization: str | None) -> None:
    body = b'{"uuid":"u1","status":"busy"}'
    headers = {"authorization": authorization} if authorization is not None else {}
    with pytest.raises(SignatureError):
        vonage.verify(HookRequest("POST", f"{BASE}/event", headers, {}, body, {}, NOW), SECRET)


def test_unconfigured_secret_refuses_everything() -> None:
    with pytest.raises(SignatureError):
        vonage.verify(post("event", {"uuid": "u1", "status": "busy"}), "")


def test_short_signature_secret_verifies_without_warnings() -> None:
    # PyJWT warns about HMAC keys shorter than 32 bytes; Vonage chooses the secret, so the
    # verifier must stay quiet (warnings are errors in this test suite).
    short = "short-secret"
    body = b'{"uuid":"u1","status":"busy"}'
    with pytest.warns(jwt.InsecureKeyLengthWarning):
        signed = token(body, secret=short)
    req = HookRequest(
        "POST", f"{BASE}/event", {"authorization": f"Bearer {signed}"}, {}, body, {}, NOW
    )
    vonage.verify(req, short)


# --------------------------------------------------------------- parsing


def test_get_answer_webhook_becomes_an_incoming_call() -> None:
    call = vonage.parse_call(get("answer", ANSWER), Stage.INCOMING)
    assert call.call_id == ANSWER["conversation_uuid"]
    assert call.caller == "33612345678"
    assert call.called == "33466123456"
    assert call.platform is Platform.VONAGE
    assert call.stage is Stage.INCOMING
    assert call.digits is None


def test_post_answer_webhook_becomes_an_incoming_call() -> None:
    call = vonage.parse_call(post("answer", ANSWER), Stage.INCOMING)
    assert call.call_id == ANSWER["conversation_uuid"]
    assert call.called == "33466123456"


def test_leg_uuid_is_the_call_id_without_conversation() -> None:
    payload = {k: v for k, v in ANSWER.items() if k != "conversation_uuid"}
    assert vonage.parse_call(post("answer", payload), Stage.INCOMING).call_id == ANSWER["uuid"]


def test_input_webhook_carries_the_digit() -> None:
    payload = {**ANSWER, "dtmf": {"digits": "2", "timed_out": False}}
    call = vonage.parse_call(post("input", payload), Stage.DIGITS)
    assert call.stage is Stage.DIGITS
    assert call.digits == "2"


def test_input_timeout_means_no_choice() -> None:
    payload = {**ANSWER, "dtmf": {"digits": "", "timed_out": True}}
    assert vonage.parse_call(post("input", payload), Stage.DIGITS).digits is None
    legacy = {**ANSWER, "dtmf": "1", "timed_out": False}
    assert vonage.parse_call(post("input", legacy), Stage.DIGITS).digits == "1"


@pytest.mark.parametrize("missing", ["to", "uuid"])
def test_missing_required_field_is_named(missing: str) -> None:
    payload = {k: v for k, v in ANSWER.items() if k not in (missing, "conversation_uuid")}
    with pytest.raises(BadHookRequest) as err:
        vonage.parse_call(post("answer", payload), Stage.INCOMING)
    assert err.value.field == missing


@pytest.mark.parametrize(
    ("vonage_status", "status", "failed"),
    [
        ("started", "started", False),
        ("ringing", "ringing", False),
        ("answered", "answered", False),
        ("completed", "completed", False),
        ("busy", "busy", True),
        ("rejected", "busy", True),
        ("timeout", "no-answer", True),
        ("unanswered", "no-answer", True),
        ("failed", "failed", True),
        ("cancelled", "canceled", False),
        ("machine", "machine", False),
    ],
)
def test_event_statuses_are_mapped(vonage_status: str, status: str, failed: bool) -> None:
    payload = {**ANSWER, "status": vonage_status, "duration": "12", "direction": "outbound"}
    event = vonage.parse_event(post("event", payload, query="target=regulation"))
    assert event.status == status
    assert event.dial_failed is failed
    assert event.target is Route.REGULATION
    assert event.duration_s == 12
    assert event.call_id == ANSWER["conversation_uuid"]


def test_event_call_id_from_our_callback_url_wins() -> None:
    payload = {"uuid": "leg-2", "status": "timeout"}
    event = vonage.parse_event(
        post("event", payload, query="target=direct_access&call_id=inbound-1")
    )
    assert event.call_id == "inbound-1"
    assert event.target is Route.DIRECT_ACCESS


def test_event_without_status_is_not_a_call_event() -> None:
    with pytest.raises(BadHookRequest) as err:
        vonage.parse_event(post("event", {"uuid": "u1", "recording_url": "https://x"}))
    assert err.value.field == "status"


@settings(max_examples=300, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=80),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False)
            | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "uuid",
                            "conversation_uuid",
                            "from",
                            "to",
                            "status",
                            "duration",
                            "dtmf",
                            "digits",
                        ]
                    ),
                    inner,
                    max_size=6,
                )
            ),
            max_leaves=12,
        ).map(_json_bytes),
    ),
    query=st.dictionaries(
        st.sampled_from(["target", "call_id", "to", "uuid"]), st.text(max_size=20), max_size=3
    ),
)
def test_parsing_garbage_raises_only_bad_hook_request(body: bytes, query: dict[str, str]) -> None:
    req = HookRequest("POST", f"{BASE}/event", {}, query, body, {}, NOW)
    for parse in (lambda: vonage.parse_call(req, Stage.DIGITS), lambda: vonage.parse_event(req)):
        with contextlib.suppress(BadHookRequest):
            parse()


@settings(max_examples=200, deadline=None)
@given(
    authorization=st.text(max_size=120)
    | st.just("Bearer ")
    | st.text(max_size=120).map(lambda t: f"Bearer {t}"),
    body=st.binary(max_size=40),
)
def test_verifying_garbage_raises_only_signature_error(authorization: str, body: bytes) -> None:
    req = HookRequest("POST", f"{BASE}/event", {"authorization": authorization}, {}, body, {}, NOW)
    with pytest.raises(SignatureError):
        vonage.verify(req, SECRET)


# --------------------------------------------------------------- rendering

URLS = HookUrls(event=f"{BASE}/event", input=f"{BASE}/input")


def ncco(decision_: Decision, **kwargs: Any) -> list[dict[str, Any]]:
    answer = vonage.render(decision_, RenderContext(URLS, **kwargs))
    assert answer.content_type == vonage.CONTENT_TYPE
    actions = orjson.loads(answer.body)
    assert isinstance(actions, list)
    return actions


def test_menu_talks_then_collects_one_dtmf_digit() -> None:
    menu = decision(
        Route.MENU,
        None,
        say=("Bienvenue à la MMG de Nîmes.",),
        menu=MenuPrompt("Pour un médecin, tapez 1.", 6, ("1", "2")),
    )
    welcome, prompt, collect = ncco(menu)
    assert welcome == {
        "action": "talk",
        "text": "Bienvenue à la MMG de Nîmes.",
        "language": "fr-FR",
    }
    assert prompt == {
        "action": "talk",
        "text": "Pour un médecin, tapez 1.",
        "language": "fr-FR",
        "bargeIn": True,
    }
    assert collect == {
        "action": "input",
        "type": ["dtmf"],
        "dtmf": {"maxDigits": 1, "timeOut": 6},
        "eventUrl": [f"{BASE}/input"],
    }


def test_menu_timeout_is_kept_within_vonage_limits() -> None:
    menu = decision(Route.MENU, None, menu=MenuPrompt("Tapez 1.", 30, ("1",)))
    assert ncco(menu)[-1]["dtmf"]["timeOut"] == 10


def test_phone_destination_is_connected_synchronously_without_plus() -> None:
    regulation = decision(
        Route.REGULATION,
        Destination(number="+33466000015", sip="sip:sas30@regulation.example"),
        say=("Nous vous mettons en relation avec le centre 15.",),
        dial_timeout_s=90,
    )
    talk, connect = ncco(regulation, own_number="+33466123456")
    assert talk["action"] == "talk"
    assert connect == {
        "action": "connect",
        "endpoint": [{"type": "phone", "number": "33466000015"}],
        "timeout": 90,
        "eventType": "synchronous",
        "eventUrl": [f"{BASE}/event?target=regulation"],
        "from": "33466123456",  # the MMG's own number: Vonage refuses any other
    }


def test_sip_only_destination_uses_a_sip_endpoint_and_default_timeout() -> None:
    direct = decision(Route.DIRECT_ACCESS, Destination(sip="sip:accueil@mmg.example"))
    (connect,) = ncco(direct, own_number="+33466123456")
    assert connect["endpoint"] == [{"type": "sip", "uri": "sip:accueil@mmg.example"}]
    assert connect["timeout"] == vonage.DEFAULT_DIAL_TIMEOUT_S
    assert connect["eventUrl"] == [f"{BASE}/event?target=direct_access"]
    assert connect["from"] == "33466123456"


@pytest.mark.parametrize("unusable", [None, "", "3237", "33466123456", "+0466123456", "+1234"])
def test_connect_without_a_usable_mmg_number_lets_vonage_pick_one_of_the_application(
    unusable: str | None,
) -> None:
    regulation = decision(Route.REGULATION, Destination(number="+33466000099"))
    (connect,) = ncco(regulation, own_number=unusable)
    assert connect["randomFromNumber"] is True
    assert "from" not in connect


def test_connect_leg_event_does_not_take_our_number_for_the_caller() -> None:
    leg = {**ANSWER, "from": "33466123456", "to": "33466000015", "status": "timeout"}
    event = vonage.parse_event(post("event", leg, query="target=regulation"))
    assert event.target is Route.REGULATION
    assert event.caller is None
    assert event.called == "33466000015"
    whole_call = vonage.parse_event(post("event", {**ANSWER, "status": "completed"}))
    assert whole_call.caller == ANSWER["from"]


def test_short_code_destination_is_only_announced() -> None:
    pharmacy = decision(Route.PHARMACY, Destination(announce="3237"), say=("Composez le 32 37.",))
    assert ncco(pharmacy) == [{"action": "talk", "text": "Composez le 32 37.", "language": "fr-FR"}]


def test_nothing_to_say_or_dial_still_gives_a_valid_ncco() -> None:
    assert ncco(decision(Route.CLOSED, None)) == orjson.loads(vonage.render_hangup().body)
    assert orjson.loads(vonage.render_hangup().body)[0]["action"] == "talk"


# --------------------------------------------------------------- every NCCO vs the SDK

#: Where each example MMG can be: every hour of a week with pharmacy rosters, a
#: public holiday, and the start of every dated override and roster entry.
_WEEK = [datetime(2026, 11, 21) + timedelta(hours=h) for h in range(8 * 24)]
_HOLIDAY = [datetime(2026, 12, 25, 10), datetime(2026, 12, 25, 21)]


def _instants(proto: Protocol) -> list[datetime]:
    zone = ZoneInfo(proto.timezone)
    starts = [o.from_ for o in proto.opening.overrides]
    starts += [r.from_ for r in proto.destinations.pharmacy.roster]
    local = [*_WEEK, *_HOLIDAY, *(s + timedelta(minutes=30) for s in starts)]
    return [t.replace(tzinfo=zone) for t in local]


def _sip_only(mmg: str) -> Protocol:
    """An example protocol whose desk and regulation are SIP URIs only."""
    return variant(
        mmg,
        **{
            "destinations.regulation": {"sip": "sip:sas@regulation.example"},
            "destinations.front_desk": {"sip": "sip:accueil@mmg.example"},
        },
    )


def _protocols() -> list[Protocol]:
    examples = [load_protocol_file(p) for p in sorted(PROTOCOLS_DIR.glob("*.yaml"))]
    assert {p.id for p in examples} >= {"nimes", "metz", "saint-denis-reunion"}
    # Each example again with every message a recording: every NCCO with stream actions.
    return [
        *examples,
        *(_sip_only(p.id) for p in examples),
        *(recorded(p.id) for p in examples),
    ]


def _scenarios(proto: Protocol) -> Iterator[tuple[Call, DecisionContext]]:
    """Every kind of webhook a call can bring: callers × stages × digits × failures."""
    menu = proto.routing.menu
    keys = [*(menu.options if menu else ()), "9", None]
    callers = ["+33612000001", "", "anonymous", *proto.routing.direct_access.professionals]
    for number in proto.numbers:
        for caller in callers:
            for pending in (False, True):
                ctx = DecisionContext(pending_referral=pending)
                yield _call(caller, number, Stage.INCOMING), ctx
                for digits in keys:
                    yield _call(caller, number, Stage.DIGITS, digits), ctx
                for failed in (None, *Route):
                    failure = DecisionContext(pending_referral=pending, failed_route=failed)
                    yield _call(caller, number, Stage.DIAL_FAILED), failure


def _call(caller: str, called: str, stage: Stage, digits: str | None = None) -> Call:
    return Call("CON-1", caller, called, Platform.VONAGE, stage, digits)


def _every_ncco() -> Iterator[tuple[str | None, Decision]]:
    """Every decision the service can render for Vonage, with the MMG number it has."""
    for proto in _protocols():
        for now in _instants(proto):
            for call, ctx in _scenarios(proto):
                # The number the caller dialled: what the webhooks pass as from_number.
                yield call.called, decide(proto, call, now, ctx)
        yield proto.numbers[0], failsafe(proto, "internal_error")
    yield "+33499999999", failsafe(None, "unknown_number", "+33466000099")
    yield None, failsafe(None, "bad_request", "+33466000099")  # nothing readable
    yield None, failsafe(None, "bad_request")


def _last_action(body: bytes, mmg_number: str | None) -> str:
    """What the NCCO ends with (``connect:phone``…), after the SDK's and our checks."""
    last = check_ncco(body)[-1]
    kind = str(last["action"])
    if kind == "connect":
        kind += ":" + last["endpoint"][0]["type"]
        # The MMG's own number (a number of the application), never the caller's;
        # with no MMG number known, Vonage picks one of the application's.
        expected = {"from": mmg_number[1:]} if mmg_number else {"randomFromNumber": True}
        presented = {k: last[k] for k in ("from", "randomFromNumber") if k in last}
        if presented != expected:
            raise NccoRejected(f"connect presents {presented}, expected {expected}")
    return kind


def test_every_ncco_the_service_can_produce_is_accepted_by_vonages_sdk() -> None:
    seen: set[tuple[str, str, str]] = set()
    actions: set[str] = set()
    refused: dict[str, str] = {}
    kinds: dict[tuple[bytes, str | None], str] = {}
    for mmg_number, decision_ in _every_ncco():
        body = vonage.render(decision_, RenderContext(URLS, own_number=mmg_number)).body
        kind = kinds.get((body, mmg_number))
        if kind is None:
            try:
                kind = kinds[body, mmg_number] = _last_action(body, mmg_number)
            except NccoRejected as exc:
                refused.setdefault(str(exc).split("\n")[0], body.decode())
                continue
        ground = decision_.ground.value if decision_.ground else "-"
        seen.add((decision_.route.value, ground, kind))
        actions.update(str(a["action"]) for a in orjson.loads(body))
    check_ncco(vonage.render_hangup().body)
    assert not refused, "\n".join(f"{why}\n  {body}" for why, body in refused.items())
    # The enumeration reached every route, every ground and both endpoint types.
    assert {r for r, _, _ in seen} == {r.value for r in Route}
    assert {g for _, g, _ in seen} == {"-", *(g.value for g in Ground)}
    # A recorded closed message ends the NCCO with its stream.
    assert {k for _, _, k in seen} == {
        "talk",
        "stream",
        "input",
        "connect:phone",
        "connect:sip",
    }
    assert actions == {"talk", "stream", "input", "connect"}


# --------------------------------------------------------------- recorded prompts


def _ncco_of(proto: Protocol, at: datetime, **call: Any) -> list[dict[str, Any]]:
    args = {"call_id": "CON-1", "caller": "+33612000001", "called": proto.numbers[0], **call}
    result = decide(proto, Call(platform=Platform.VONAGE, **args), at)
    return check_ncco(vonage.render(result, RenderContext(URLS, own_number=proto.numbers[0])).body)


def test_recorded_menu_is_streamed_and_the_menu_prompt_can_be_interrupted() -> None:
    nimes = recorded("nimes")
    welcome, prompt, collect = _ncco_of(nimes, datetime(2026, 11, 24, 21, 0, tzinfo=PARIS))
    assert welcome == {"action": "stream", "streamUrl": [f"{AUDIO_BASE}/nimes/welcome.mp3"]}
    assert prompt == {
        "action": "stream",
        "streamUrl": [f"{AUDIO_BASE}/nimes/menu.mp3"],
        "bargeIn": True,
    }
    assert collect["action"] == "input"


def test_recorded_regulation_message_is_streamed_before_the_connect() -> None:
    metz = recorded("metz")
    welcome, regulation, connect = _ncco_of(metz, datetime(2026, 11, 24, 21, 0, tzinfo=PARIS))
    assert welcome["streamUrl"] == [f"{AUDIO_BASE}/metz/welcome.mp3"]
    assert regulation["streamUrl"] == [f"{AUDIO_BASE}/metz/regulation.mp3"]
    assert connect["action"] == "connect"
    assert connect["endpoint"] == [{"type": "phone", "number": "33387000015"}]


def test_recorded_closed_message_ends_the_ncco() -> None:
    reunion = recorded("saint-denis-reunion")
    at = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Indian/Reunion"))
    assert _ncco_of(reunion, at) == [
        {"action": "stream", "streamUrl": [f"{AUDIO_BASE}/saint-denis-reunion/welcome.mp3"]},
        {"action": "stream", "streamUrl": [f"{AUDIO_BASE}/saint-denis-reunion/closed.mp3"]},
    ]


def test_plain_text_messages_are_still_talked() -> None:
    metz = load_protocol_file(PROTOCOLS_DIR / "metz.yaml")
    talks = _ncco_of(metz, datetime(2026, 11, 24, 21, 0, tzinfo=PARIS))[:-1]
    assert [a["action"] for a in talks] == ["talk", "talk"]
