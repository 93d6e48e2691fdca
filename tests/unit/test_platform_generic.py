"""Generic PBX adapter: timestamped HMAC-SHA256 signature, JSON in, decision JSON out."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regulator.core.models import Decision, Destination, Ground, MenuPrompt, Platform, Route, Stage
from regulator.platforms import generic
from regulator.platforms.base import (
    BadHookRequest,
    HookRequest,
    HookUrls,
    RenderContext,
    SignatureError,
)


def _json_bytes(value: object) -> bytes:
    """Any JSON document, including integers too large for 64 bits."""
    return json.dumps(value).encode()


SECRET = "generic-pbx-secret"
NOW = 1_800_000_000.0
T = int(NOW)
URL = "https://regulator.example/hooks/generic/call"
BODY = orjson.dumps({"call_id": "pbx-1", "from": "+33612345678", "to": "+33466123456"})


PATH = "/hooks/generic/call"


def request(
    body: bytes, signature: str | None, method: str = "POST", url: str = URL
) -> HookRequest:
    headers = {"x-regulator-signature": signature} if signature is not None else {}
    return HookRequest(method, url, headers, {}, body, {}, NOW)


def reference_hmac(secret: str, t: int, body: bytes, method: str = "POST", path: str = PATH) -> str:
    """The documented scheme written out independently: HMAC-SHA256 over
    "<t>\\n<METHOD>\\n<path?query>\\n<body>"."""
    signed = f"{t}\n{method}\n{path}\n".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signed(body: bytes, t: int = T, secret: str = SECRET) -> str:
    return generic.sign(secret, body, t, method="POST", path=PATH)


# --------------------------------------------------------------- signature


def test_sign_follows_the_documented_scheme() -> None:
    assert signed(BODY) == f"t={T},v2={reference_hmac(SECRET, T, BODY)}"


def test_fixed_vector_matches_openssl() -> None:
    # printf '1800000000\nPOST\n/hooks/generic/call\n{}' | openssl dgst -sha256 -hmac secret
    expected = "b205b34773e25060cc69d99319e1ac00fc548c28df1f3a8db2bdd602961ac500"
    got = generic.sign("secret", b"{}", 1_800_000_000, method="POST", path=PATH)
    assert got == f"t=1800000000,v2={expected}"


def test_signed_request_is_accepted() -> None:
    generic.verify(request(BODY, signed(BODY)), SECRET)


def test_the_query_is_signed_as_sent() -> None:
    url = URL + "?target=pharmacy&mmg=nimes"
    header = generic.sign(SECRET, BODY, T, method="POST", path=PATH + "?target=pharmacy&mmg=nimes")
    generic.verify(request(BODY, header, url=url), SECRET)
    with pytest.raises(SignatureError):
        generic.verify(request(BODY, header, url=URL + "?target=regulation&mmg=nimes"), SECRET)
    with pytest.raises(SignatureError):
        generic.verify(request(BODY, header), SECRET)


def test_method_and_path_are_signed() -> None:
    header = signed(BODY)
    with pytest.raises(SignatureError, match="does not match"):
        generic.verify(request(BODY, header, method="PUT"), SECRET)
    with pytest.raises(SignatureError, match="does not match"):
        generic.verify(
            request(BODY, header, url="https://regulator.example/hooks/generic/event"), SECRET
        )


def test_the_old_body_only_scheme_is_refused_with_its_own_reason() -> None:
    old = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    with pytest.raises(SignatureError, match=r"v1 \(body only\) is no longer accepted"):
        generic.verify(request(BODY, f"t={T},v1={old}"), SECRET)


def test_any_matching_v2_is_enough_during_secret_rotation() -> None:
    old = reference_hmac("old-secret", T, BODY)
    new = reference_hmac(SECRET, T, BODY)
    generic.verify(request(BODY, f"t={T},v2={old},v2={new}"), SECRET)
    generic.verify(request(BODY, f"t={T}, v2={new.upper()}, v0=ignored"), SECRET)


@pytest.mark.parametrize("skew", [-299, 0, 299])
def test_timestamp_inside_the_window_is_accepted(skew: int) -> None:
    generic.verify(request(BODY, signed(BODY, T + skew)), SECRET)


@pytest.mark.parametrize("skew", [-301, 301, -86_400])
def test_timestamp_outside_the_window_is_refused(skew: int) -> None:
    with pytest.raises(SignatureError, match="window"):
        generic.verify(request(BODY, signed(BODY, T + skew)), SECRET)


def test_tampered_body_wrong_secret_and_moved_timestamp_are_refused() -> None:
    header = signed(BODY)
    with pytest.raises(SignatureError):
        generic.verify(request(BODY + b" ", header), SECRET)
    with pytest.raises(SignatureError):
        generic.verify(request(BODY, header), "another-secret")
    v2 = header.split(",v2=")[1]
    with pytest.raises(SignatureError):
        generic.verify(request(BODY, f"t={T + 1},v2={v2}"), SECRET)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "v2=abc",
        f"t={T}",
        f"t={T},v2=nothex",
        f"t=soon,v2={'0' * 64}",
        f"t={T},t={T},v2={'0' * 64}",
        f"t=-{T},v2={'0' * 64}",
        ",".join(["v2=" + "0" * 64] * 40),
    ],
)
def test_malformed_header_is_refused(header: str | None) -> None:
    with pytest.raises(SignatureError):
        generic.verify(request(BODY, header), SECRET)


def test_unconfigured_secret_refuses_everything() -> None:
    with pytest.raises(SignatureError):
        generic.verify(request(BODY, signed(BODY, secret="")), "")


@settings(max_examples=200, deadline=None)
@given(header=st.text(max_size=200), body=st.binary(max_size=40))
def test_verifying_garbage_raises_only_signature_error(header: str, body: bytes) -> None:
    with pytest.raises(SignatureError):
        generic.verify(request(body, header), SECRET)


# --------------------------------------------------------------- parsing


def test_call_request_becomes_a_call() -> None:
    call = generic.parse_call(request(BODY, None), Stage.INCOMING)
    assert call.call_id == "pbx-1"
    assert call.caller == "+33612345678"
    assert call.called == "+33466123456"
    assert call.platform is Platform.GENERIC
    assert call.stage is Stage.INCOMING
    assert call.digits is None


def test_stage_and_digits_in_the_body_win() -> None:
    body = orjson.dumps(
        {"call_id": "pbx-1", "from": "", "to": "0466123456", "digits": "2", "stage": "digits"}
    )
    call = generic.parse_call(request(body, None), Stage.INCOMING)
    assert call.stage is Stage.DIGITS
    assert call.digits == "2"
    assert call.caller == ""
    body = orjson.dumps({"call_id": "pbx-1", "to": "0466123456", "stage": "dial_failed"})
    assert generic.parse_call(request(body, None), Stage.INCOMING).stage is Stage.DIAL_FAILED


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"from": "+33612345678", "to": "+33466123456"}, "call_id"),
        ({"call_id": "pbx-1", "from": "+33612345678"}, "to"),
        ({"call_id": "pbx-1", "to": "+33466123456", "stage": "hangup"}, "stage"),
        ({"call_id": "pbx-1", "to": "+33466123456", "digits": 1}, "digits"),
        ({"call_id": "pbx-1", "to": "+33466123456", "digits": "one"}, "digits"),
        ({"call_id": "x" * 300, "to": "+33466123456"}, "call_id"),
        ({"call_id": ["pbx-1"], "to": "+33466123456"}, "call_id"),
    ],
)
def test_bad_call_request_names_the_field(payload: dict[str, object], field: str) -> None:
    with pytest.raises(BadHookRequest) as err:
        generic.parse_call(request(orjson.dumps(payload), None), Stage.INCOMING)
    assert err.value.field == field


def test_body_too_large_or_not_json_is_refused() -> None:
    for body in (b"x" * (70 * 1024), b"not json", b'"a string"', b"\xc3\x28"):
        with pytest.raises(BadHookRequest) as err:
            generic.parse_call(request(body, None), Stage.INCOMING)
        assert err.value.field == "body"


@pytest.mark.parametrize("target", ["front_desk", "menu", "closed", 3, None, ["regulation"]])
def test_event_target_that_names_no_destination_reads_as_absent(target: object) -> None:
    # A typo must not turn a failed dial into a bad request (whose fail-safe answer
    # could dial centre 15 twice): the call's route history decides instead.
    body = orjson.dumps({"call_id": "pbx-1", "status": "busy", "target": target})
    assert generic.parse_event(request(body, None)).target is None


@pytest.mark.parametrize("target", ["regulation", "direct_access", "pharmacy"])
def test_dial_failed_call_carries_the_failed_target(target: str) -> None:
    body = orjson.dumps(
        {"call_id": "pbx-1", "to": "0466123456", "stage": "dial_failed", "target": target}
    )
    call, failed = generic.parse_call_target(request(body, None), Stage.INCOMING)
    assert call.stage is Stage.DIAL_FAILED
    assert failed is Route(target)
    body = orjson.dumps({"call_id": "pbx-1", "to": "0466123456", "stage": "dial_failed"})
    assert generic.parse_call_target(request(body, None), Stage.INCOMING)[1] is None


def test_dial_failed_report_may_leave_out_the_called_number() -> None:
    body = orjson.dumps({"call_id": "pbx-1", "stage": "dial_failed", "target": "pharmacy"})
    call, failed = generic.parse_call_target(request(body, None), Stage.INCOMING)
    assert (call.call_id, call.called, call.stage, failed) == (
        "pbx-1",
        "",
        Stage.DIAL_FAILED,
        Route.PHARMACY,
    )
    with pytest.raises(BadHookRequest) as err:  # an incoming call still needs it
        generic.parse_call_target(request(orjson.dumps({"call_id": "pbx-1"}), None), Stage.DIGITS)
    assert err.value.field == "to"


def test_event_is_parsed_with_its_target() -> None:
    body = orjson.dumps(
        {"call_id": "pbx-1", "status": "busy", "duration_s": 3, "target": "regulation"}
    )
    event = generic.parse_event(request(body, None))
    assert event.call_id == "pbx-1"
    assert event.status == "busy"
    assert event.dial_failed
    assert event.duration_s == 3
    assert event.target is Route.REGULATION


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"call_id": "pbx-1"}, "status"),
        ({"call_id": "pbx-1", "status": "BUSY!!"}, "status"),
        ({"call_id": "pbx-1", "status": "busy", "duration_s": -1}, "duration_s"),
        ({"call_id": "pbx-1", "status": "busy", "duration_s": True}, "duration_s"),
        ({"call_id": "pbx-1", "status": "busy", "duration_s": "3s"}, "duration_s"),
    ],
)
def test_bad_event_names_the_field(payload: dict[str, object], field: str) -> None:
    with pytest.raises(BadHookRequest) as err:
        generic.parse_event(request(orjson.dumps(payload), None))
    assert err.value.field == field


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["call_id", "from", "to", "digits", "stage", "status", "duration_s", "target"]
            ),
            inner,
            max_size=8,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(body=st.binary(max_size=80) | _JSON.map(_json_bytes))
def test_parsing_garbage_raises_only_bad_hook_request(body: bytes) -> None:
    req = request(body, None)
    for parse in (
        lambda: generic.parse_call(req, Stage.INCOMING),
        lambda: generic.parse_event(req),
    ):
        with contextlib.suppress(BadHookRequest):
            parse()


# --------------------------------------------------------------- rendering


def render(decision: Decision, call_id: str | None = None) -> dict[str, object]:
    answer = generic.render(decision, RenderContext(HookUrls()), call_id=call_id)
    assert answer.content_type == generic.CONTENT_TYPE
    document = orjson.loads(answer.body)
    assert isinstance(document, dict)
    return document


def test_dial_decision_is_rendered_in_full() -> None:
    decision = Decision(
        mmg="nimes",
        route=Route.DIRECT_ACCESS,
        rule="professionnel de santé référencé",
        destination=Destination(number="+33466123400", label="accueil MMG"),
        ground=Ground.PROFESSIONAL,
        say=("Nous vous mettons en relation avec l'accueil.",),
        dial_timeout_s=25,
    )
    assert render(decision, call_id="pbx-1") == {
        "call_id": "pbx-1",
        "action": "dial",
        "mmg": "nimes",
        "route": "direct_access",
        "ground": "professional",
        "destination": {
            "number": "+33466123400",
            "sip": None,
            "announce": None,
            "label": "accueil MMG",
        },
        "say": ["Nous vous mettons en relation avec l'accueil."],
        "play": [None],
        "menu": None,
        "dial_timeout_s": 25,
        "rule": "professionnel de santé référencé",
        "failsafe": False,
    }


def test_menu_and_announce_decisions() -> None:
    menu = Decision(
        mmg="nimes",
        route=Route.MENU,
        rule="menu",
        destination=None,
        say=("Bienvenue.",),
        menu=MenuPrompt("Tapez 1 ou 2.", 6, ("1", "2")),
    )
    document = render(menu)
    assert "call_id" not in document
    assert document["action"] == "menu"
    assert document["destination"] is None
    assert document["menu"] == {
        "text": "Tapez 1 ou 2.",
        "play": None,
        "timeout_s": 6,
        "options": ["1", "2"],
    }
    failsafe = Decision(
        mmg=None,
        route=Route.REGULATION,
        rule="sécurité",
        destination=Destination(announce="15", label="centre 15"),
        failsafe=True,
        say=("Raccrochez et composez le 15.",),
    )
    document = render(failsafe)
    assert document["action"] == "announce"
    assert document["failsafe"] is True
    assert document["mmg"] is None


def test_render_hangup_keeps_the_shape() -> None:
    document = orjson.loads(generic.render_hangup().body)
    assert document["action"] == "hangup"
    assert document["destination"] is None
    assert document["say"] == []
