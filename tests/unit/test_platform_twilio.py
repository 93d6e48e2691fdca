"""Twilio adapter: signature compatibility with Twilio's algorithm, parsing, TwiML."""

from __future__ import annotations

import contextlib
import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regulator.core.decision import decide
from regulator.core.models import (
    Call,
    Decision,
    Destination,
    MenuPrompt,
    Platform,
    Prompt,
    Route,
    Stage,
)
from regulator.platforms import twilio
from regulator.platforms.base import (
    BadHookRequest,
    HookRequest,
    HookUrls,
    RenderContext,
    SignatureError,
)
from tests.unit.helpers import AUDIO_BASE, PARIS, REUNION, decision, recorded

TOKEN = "12345"
NOW = 1_800_000_000.0


def hook(
    url: str,
    form: Mapping[str, str] | None = None,
    *,
    signature: str | None = None,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> HookRequest:
    all_headers = dict(headers or {})
    if signature is not None:
        all_headers["x-twilio-signature"] = signature
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    return HookRequest(
        method="POST",
        url=url,
        headers=all_headers,
        query=query,
        body=body,
        form=dict(form or {}),
        now=NOW,
    )


# --------------------------------------------------------------- documented vectors

DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"


def doc_params(caller: str) -> dict[str, str]:
    return {
        "CallSid": "CA1234567890ABCDE",
        "Caller": caller,
        "Digits": "1234",
        "From": caller,
        "To": "+18005551212",
    }


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        # twilio.com/docs/usage/security, current edition.
        ("+12349013030", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
        # The same page, earlier edition (caller +14158675310).
        ("+14158675310", "GvWf1cFY/Q7PnoempGyD5oXAezc="),
        # twilio-php "Validate Incoming Requests" documentation.
        ("+14158675309", "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
    ],
)
def test_documented_twilio_signatures_are_reproduced_and_accepted(
    caller: str, expected: str
) -> None:
    params = doc_params(caller)
    assert twilio.compute_signature(TOKEN, DOC_URL, params) == expected
    twilio.verify(hook(DOC_URL, params, signature=expected), TOKEN)


def test_documented_signature_is_refused_for_another_caller() -> None:
    params = doc_params("+12349013031")
    with pytest.raises(SignatureError):
        twilio.verify(hook(DOC_URL, params, signature="0/KCTR6DLpKmkAf8muzZqo1nDgQ="), TOKEN)


# --------------------------------------------------------------- oracle: Twilio's library


@pytest.fixture(scope="module")
def validator() -> Any:
    """Twilio's own RequestValidator (dev dependency ``twilio``), as an oracle."""
    module = pytest.importorskip("twilio.request_validator")
    return module.RequestValidator(TOKEN)


VOICE_PARAMS = {
    "AccountSid": "AC0000",
    "CallSid": "CA42",
    "From": "+33612345678",
    "To": "+33466123456",
    "CallStatus": "ringing",
    "Direction": "inbound",
}


@pytest.mark.parametrize(
    ("signed_url", "request_url"),
    [
        (
            "https://regulator.example/hooks/twilio/voice",
            "https://regulator.example/hooks/twilio/voice",
        ),
        (
            "https://regulator.example/hooks/twilio/dial-status?target=regulation&x=%2B1",
            "https://regulator.example/hooks/twilio/dial-status?target=regulation&x=%2B1",
        ),
        # Twilio sometimes signs with the default port, sometimes without it.
        (
            "https://regulator.example:443/hooks/twilio/voice",
            "https://regulator.example/hooks/twilio/voice",
        ),
        (
            "https://regulator.example/hooks/twilio/voice",
            "https://regulator.example:443/hooks/twilio/voice",
        ),
        (
            "http://regulator.example:80/hooks/twilio/voice?a=b",
            "http://regulator.example/hooks/twilio/voice?a=b",
        ),
        (
            "http://regulator.example/hooks/twilio/voice",
            "http://regulator.example:80/hooks/twilio/voice",
        ),
    ],
)
def test_signature_made_by_twilio_library_is_accepted(
    signed_url: str, request_url: str, validator: Any
) -> None:
    signature = validator.compute_signature(signed_url, VOICE_PARAMS)
    assert validator.validate(request_url, VOICE_PARAMS, signature)  # the oracle agrees
    twilio.verify(hook(request_url, VOICE_PARAMS, signature=signature), TOKEN)


def test_json_body_signed_with_body_sha256_is_accepted(validator: Any) -> None:
    body = b'{"CallSid": "CA42", "To": "+33466123456", "note": "\xc3\xa9t\xc3\xa9"}'
    digest = hashlib.sha256(body).hexdigest()
    url = f"https://regulator.example/hooks/twilio/voice?bodySHA256={digest}"
    signature = validator.compute_signature(url, {})
    assert validator.validate(url, body.decode("utf-8"), signature)
    twilio.verify(hook(url, {}, signature=signature, body=body), TOKEN)


def test_json_body_that_does_not_match_body_sha256_is_refused(validator: Any) -> None:
    body = b'{"CallSid": "CA42"}'
    url = f"https://regulator.example/hooks/twilio/voice?bodySHA256={hashlib.sha256(body).hexdigest()}"
    signature = validator.compute_signature(url, {})
    tampered = b'{"CallSid": "CA43"}'
    assert not validator.validate(url, tampered.decode(), signature)
    with pytest.raises(SignatureError, match="bodySHA256"):
        twilio.verify(hook(url, {}, signature=signature, body=tampered), TOKEN)


def test_shared_key_hmac_sha256_signature_is_accepted(validator: Any) -> None:
    url = "https://regulator.example/hooks/twilio/voice"
    signature = validator.compute_signature(url, VOICE_PARAMS, "HMAC_SHA256")
    settings_header = {"x-twilio-webhooks-signature-settings": "key=KS1,algorithm=HMAC_SHA256"}
    twilio.verify(hook(url, VOICE_PARAMS, signature=signature, headers=settings_header), TOKEN)
    with pytest.raises(SignatureError):  # the same signature read as SHA-1
        twilio.verify(hook(url, VOICE_PARAMS, signature=signature), TOKEN)


_BASES = st.sampled_from(
    [
        "https://regulator.example",
        "https://regulator.example:443",
        "https://regulator.example:8443",
        "http://regulator.example",
        "http://regulator.example:80",
        "http://127.0.0.1:8080",
    ]
)
_PATHS = st.sampled_from(["/hooks/twilio/voice", "/hooks/twilio/gather?x=1&y=%20z", "/"])
_PARAM_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    signed_base=_BASES,
    request_base=_BASES,
    path=_PATHS,
    params=st.dictionaries(_PARAM_TEXT, _PARAM_TEXT, max_size=6),
    tamper=st.booleans(),
)
def test_verify_agrees_with_twilio_request_validator(
    validator: Any,
    signed_base: str,
    request_base: str,
    path: str,
    params: dict[str, str],
    tamper: bool,
) -> None:
    signature = validator.compute_signature(signed_base + path, params)
    if tamper:
        signature = signature[::-1]
    request_url = request_base + path
    expected = validator.validate(request_url, params, signature)
    try:
        twilio.verify(hook(request_url, params, signature=signature), TOKEN)
        accepted = True
    except SignatureError:
        accepted = False
    assert accepted == expected


# --------------------------------------------------------------- refusals


def test_missing_signature_header_is_refused() -> None:
    with pytest.raises(SignatureError, match="missing"):
        twilio.verify(hook(DOC_URL, doc_params("+12349013030")), TOKEN)


def test_wrong_auth_token_is_refused() -> None:
    req = hook(DOC_URL, doc_params("+12349013030"), signature="0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    with pytest.raises(SignatureError):
        twilio.verify(req, "54321")
    with pytest.raises(SignatureError):
        twilio.verify(req, "")


def test_signature_for_another_url_is_refused() -> None:
    params = doc_params("+12349013030")
    req = hook(
        "https://mycompany.com/myapp.php?foo=1&bar=3",
        params,
        signature="0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
    )
    with pytest.raises(SignatureError):
        twilio.verify(req, TOKEN)


def test_non_ascii_signature_and_unknown_algorithm_are_refused() -> None:
    params = doc_params("+12349013030")
    with pytest.raises(SignatureError):
        twilio.verify(hook(DOC_URL, params, signature="0/KCTR6DLpKmkAf8muzZqo1nDgQ=é"), TOKEN)
    bad_algorithm = {"x-twilio-webhooks-signature-settings": "algorithm=HMAC_MD5"}
    req = hook(DOC_URL, params, signature="0/KCTR6DLpKmkAf8muzZqo1nDgQ=", headers=bad_algorithm)
    with pytest.raises(SignatureError, match="algorithm"):
        twilio.verify(req, TOKEN)


# --------------------------------------------------------------- parsing

VOICE_URL = "https://regulator.example/hooks/twilio/voice"


def test_voice_webhook_becomes_an_incoming_call() -> None:
    call = twilio.parse_call(hook(VOICE_URL, VOICE_PARAMS), Stage.INCOMING)
    assert call.call_id == "CA42"
    assert call.caller == "+33612345678"
    assert call.called == "+33466123456"
    assert call.platform is Platform.TWILIO
    assert call.stage is Stage.INCOMING
    assert call.digits is None


def test_gather_callback_carries_the_digits() -> None:
    call = twilio.parse_call(hook(VOICE_URL, {**VOICE_PARAMS, "Digits": "2"}), Stage.DIGITS)
    assert call.stage is Stage.DIGITS
    assert call.digits == "2"


def test_gather_redirect_without_digits_means_no_choice() -> None:
    call = twilio.parse_call(hook(VOICE_URL, VOICE_PARAMS), Stage.DIGITS)
    assert call.digits is None
    call = twilio.parse_call(hook(VOICE_URL, {**VOICE_PARAMS, "Digits": ""}), Stage.DIGITS)
    assert call.digits is None


def test_withheld_caller_is_an_empty_caller() -> None:
    params = {k: v for k, v in VOICE_PARAMS.items() if k != "From"}
    assert twilio.parse_call(hook(VOICE_URL, params), Stage.INCOMING).caller == ""


@pytest.mark.parametrize("missing", ["CallSid", "To"])
def test_missing_required_field_is_named(missing: str) -> None:
    params = {k: v for k, v in VOICE_PARAMS.items() if k != missing}
    with pytest.raises(BadHookRequest) as err:
        twilio.parse_call(hook(VOICE_URL, params), Stage.INCOMING)
    assert err.value.field == missing


def test_garbage_digits_are_refused() -> None:
    with pytest.raises(BadHookRequest) as err:
        twilio.parse_call(hook(VOICE_URL, {**VOICE_PARAMS, "Digits": "1; DROP"}), Stage.DIGITS)
    assert err.value.field == "Digits"


def test_dial_status_callback_names_the_dialled_route() -> None:
    url = "https://regulator.example/hooks/twilio/dial-status?target=regulation"
    form = {
        **VOICE_PARAMS,
        "CallStatus": "in-progress",
        "DialCallStatus": "no-answer",
        "DialCallDuration": "0",
    }
    event = twilio.parse_event(hook(url, form))
    assert event.call_id == "CA42"
    assert event.status == "no-answer"
    assert event.dial_failed
    assert event.target is Route.REGULATION
    assert event.duration_s == 0
    assert event.caller == "+33612345678"
    assert event.called == "+33466123456"


@pytest.mark.parametrize(
    ("twilio_status", "status", "failed"),
    [
        ("queued", "started", False),
        ("ringing", "ringing", False),
        ("in-progress", "answered", False),
        ("completed", "completed", False),
        ("busy", "busy", True),
        ("no-answer", "no-answer", True),
        ("failed", "failed", True),
        ("canceled", "canceled", False),
    ],
)
def test_status_callback_statuses(twilio_status: str, status: str, failed: bool) -> None:
    url = "https://regulator.example/hooks/twilio/status"
    event = twilio.parse_event(
        hook(url, {**VOICE_PARAMS, "CallStatus": twilio_status, "CallDuration": "42"})
    )
    assert event.status == status
    assert event.dial_failed is failed
    assert event.target is None
    assert event.duration_s == 42


def test_event_with_unknown_target_or_no_status_is_refused() -> None:
    url = "https://regulator.example/hooks/twilio/dial-status?target=elsewhere"
    with pytest.raises(BadHookRequest) as err:
        twilio.parse_event(hook(url, {**VOICE_PARAMS, "DialCallStatus": "busy"}))
    assert err.value.field == "target"
    params = {k: v for k, v in VOICE_PARAMS.items() if k != "CallStatus"}
    with pytest.raises(BadHookRequest) as err:
        twilio.parse_event(hook("https://regulator.example/hooks/twilio/status", params))
    assert err.value.field == "CallStatus"


_ANY_TEXT = st.text(max_size=40)
_FIELDS = st.sampled_from(
    [
        "CallSid",
        "From",
        "To",
        "Digits",
        "CallStatus",
        "DialCallStatus",
        "CallDuration",
        "DialCallDuration",
        "x",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    form=st.dictionaries(_FIELDS, _ANY_TEXT, max_size=9),
    query=st.dictionaries(st.sampled_from(["target", "CallSid", "To"]), _ANY_TEXT, max_size=3),
    body=st.binary(max_size=64),
)
def test_parsing_garbage_raises_only_bad_hook_request(
    form: dict[str, str], query: dict[str, str], body: bytes
) -> None:
    req = HookRequest("POST", VOICE_URL, {}, query, body, form, NOW)
    for parse in (lambda: twilio.parse_call(req, Stage.DIGITS), lambda: twilio.parse_event(req)):
        with contextlib.suppress(BadHookRequest):
            parse()


# --------------------------------------------------------------- rendering

URLS = HookUrls(
    gather="https://regulator.example/hooks/twilio/gather?mmg=nimes&x=1",
    dial_status="https://regulator.example/hooks/twilio/dial-status",
)


def twiml(body: bytes) -> ET.Element:
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(body)  # our own output
    assert root.tag == "Response"
    return root


def test_menu_gathers_one_digit_then_redirects_without_digits() -> None:
    menu = decision(
        Route.MENU,
        None,
        say=("Bienvenue à la MMG de Nîmes.",),
        menu=MenuPrompt("Pour un médecin, tapez 1.", 6, ("1", "2")),
    )
    root = twiml(twilio.render(menu, RenderContext(URLS)).body)
    gather, redirect = list(root)
    assert gather.tag == "Gather"
    assert gather.attrib == {
        "input": "dtmf",
        "numDigits": "1",
        "timeout": "6",
        "action": URLS.gather,
        "method": "POST",
    }
    says = list(gather)
    assert [s.tag for s in says] == ["Say", "Say"]
    assert [s.text for s in says] == ["Bienvenue à la MMG de Nîmes.", "Pour un médecin, tapez 1."]
    assert all(s.attrib == {"language": "fr-FR"} for s in says)
    assert redirect.tag == "Redirect"
    assert redirect.attrib == {"method": "POST"}
    assert redirect.text == URLS.gather


def test_dialable_destination_is_dialled_with_overflow_callback() -> None:
    regulation = decision(
        Route.REGULATION,
        Destination(number="+33466000015", sip="sip:sas30@regulation.example"),
        say=("Nous vous mettons en relation avec le centre 15.",),
        dial_timeout_s=90,
    )
    root = twiml(twilio.render(regulation, RenderContext(URLS)).body)
    say, dial = list(root)
    assert say.tag == "Say"
    assert say.text == "Nous vous mettons en relation avec le centre 15."
    assert dial.tag == "Dial"
    assert dial.attrib == {
        "action": "https://regulator.example/hooks/twilio/dial-status?target=regulation",
        "method": "POST",
        "timeout": "90",
        "answerOnBridge": "true",
    }
    (number,) = list(dial)
    assert number.tag == "Number"
    assert number.text == "+33466000015"


def test_sip_only_destination_uses_sip_and_default_timeout() -> None:
    direct = decision(Route.DIRECT_ACCESS, Destination(sip="sip:accueil@mmg.example"))
    root = twiml(twilio.render(direct, RenderContext(URLS)).body)
    (dial,) = list(root)
    assert dial.attrib["timeout"] == str(twilio.DEFAULT_DIAL_TIMEOUT_S)
    assert dial.attrib["action"].endswith("?target=direct_access")
    (sip,) = list(dial)
    assert sip.tag == "Sip"
    assert sip.text == "sip:accueil@mmg.example"


MMG = "+33466123456"
REGULATION = decision(Route.REGULATION, Destination(number="+33466000015"), dial_timeout_s=90)
DESK_SIP = decision(Route.DIRECT_ACCESS, Destination(sip="sip:accueil@mmg.example"))


def dial_of(body: bytes) -> ET.Element:
    dial = twiml(body).find("Dial")
    assert dial is not None
    return dial


@pytest.mark.parametrize("target", [REGULATION, DESK_SIP], ids=["number", "sip"])
@pytest.mark.parametrize("caller", ["+33611223344", "0611223344", "33611223344"])
def test_forwarded_call_presents_the_callers_own_number(target: Decision, caller: str) -> None:
    body = twilio.render(target, RenderContext(URLS, caller=caller, own_number=MMG)).body
    dial = dial_of(body)
    assert dial.attrib["callerId"] == "+33611223344"
    assert list(dial.attrib) == ["action", "method", "timeout", "answerOnBridge", "callerId"]


@pytest.mark.parametrize("target", [REGULATION, DESK_SIP], ids=["number", "sip"])
@pytest.mark.parametrize(
    "caller",
    [None, "", "anonymous", "Restricted", "+266696687", "client:accueil", "sip:x@h", "3237"],
)
def test_withheld_or_invalid_caller_presents_the_mmg_number(
    target: Decision, caller: str | None
) -> None:
    body = twilio.render(target, RenderContext(URLS, caller=caller, own_number=MMG)).body
    assert dial_of(body).attrib["callerId"] == MMG


def test_without_any_presentable_number_twilio_keeps_its_default() -> None:
    for own in (None, "", "3237"):
        dial = dial_of(
            twilio.render(REGULATION, RenderContext(URLS, caller="anonymous", own_number=own)).body
        )
        assert "callerId" not in dial.attrib


@settings(max_examples=200, deadline=None)
@given(caller=st.one_of(st.none(), st.text(max_size=40)))
def test_caller_id_is_always_the_callers_valid_number_or_the_mmgs(caller: str | None) -> None:
    dial = dial_of(
        twilio.render(REGULATION, RenderContext(URLS, caller=caller, own_number=MMG)).body
    )
    presented = dial.attrib["callerId"]
    assert presented == MMG or (caller is not None and presented.startswith("+"))
    assert re.fullmatch(r"\+[1-9][0-9]{6,14}", presented)


def test_short_code_destination_is_announced_then_hung_up() -> None:
    pharmacy = decision(
        Route.PHARMACY,
        Destination(announce="3237"),
        say=("Raccrochez et composez le 32 37.",),
    )
    root = twiml(twilio.render(pharmacy, RenderContext(URLS)).body)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert b"Dial" not in twilio.render(pharmacy, RenderContext(URLS)).body


def test_texts_and_urls_are_escaped() -> None:
    tricky = "Tapez <1> & \"2\" 'ou' ]]> \x07fin"
    urls = HookUrls(gather='https://h.example/g?a=1&b="2"<', dial_status="https://h.example/d")
    menu = decision(Route.MENU, None, say=(tricky,), menu=MenuPrompt(tricky, 5, ("1",)))
    root = twiml(twilio.render(menu, RenderContext(urls)).body)
    gather = root[0]
    assert gather.attrib["action"] == urls.gather
    assert gather[0].text == "Tapez <1> & \"2\" 'ou' ]]> fin"  # control character dropped
    assert root[1].text == urls.gather


def test_render_hangup_is_a_single_hangup() -> None:
    answer = twilio.render_hangup()
    assert answer.content_type == twilio.CONTENT_TYPE
    assert [child.tag for child in twiml(answer.body)] == ["Hangup"]


# --------------------------------------------------------------- recorded prompts


def _twiml_of(proto: Any, at: datetime, **call: Any) -> ET.Element:
    args = {"call_id": "CA1", "caller": "+33612000001", "called": proto.numbers[0], **call}
    result = decide(proto, Call(platform=Platform.TWILIO, **args), at)
    return twiml(twilio.render(result, RenderContext(URLS, own_number=proto.numbers[0])).body)


def test_recorded_menu_prompts_are_played_inside_the_gather() -> None:
    nimes = recorded("nimes")
    root = _twiml_of(nimes, datetime(2026, 11, 24, 21, 0, tzinfo=PARIS))
    gather, redirect = list(root)
    assert [(v.tag, v.text) for v in gather] == [
        ("Play", f"{AUDIO_BASE}/nimes/welcome.mp3"),
        ("Play", f"{AUDIO_BASE}/nimes/menu.mp3"),
    ]
    assert redirect.tag == "Redirect"


def test_recorded_pharmacy_message_is_played_before_the_dial() -> None:
    nimes = recorded("nimes")
    at = datetime(2026, 11, 23, 21, 0, tzinfo=PARIS)
    play, dial = list(_twiml_of(nimes, at, stage=Stage.DIGITS, digits="2"))
    assert (play.tag, play.text) == ("Play", f"{AUDIO_BASE}/nimes/pharmacy.mp3")
    assert dial.tag == "Dial"
    assert [n.text for n in dial] == ["+33466222222"]


def test_recorded_closed_message_is_played_then_the_call_ends() -> None:
    reunion = recorded("saint-denis-reunion")
    root = _twiml_of(reunion, datetime(2026, 11, 24, 10, 0, tzinfo=REUNION))
    assert [(v.tag, v.text) for v in root] == [
        ("Play", f"{AUDIO_BASE}/saint-denis-reunion/welcome.mp3"),
        ("Play", f"{AUDIO_BASE}/saint-denis-reunion/closed.mp3"),
        ("Hangup", None),
    ]


def test_text_and_recorded_prompts_mix_and_never_share_a_cache_entry() -> None:
    same_words = "Bienvenue à la MMG."
    spoken = decision(Route.MENU, None, say=(same_words,), menu=MenuPrompt("Tapez 1.", 6, ("1",)))
    played = decision(
        Route.MENU,
        None,
        say=(Prompt(same_words, f"{AUDIO_BASE}/a.mp3?v=1&lang=fr"),),
        menu=MenuPrompt("Tapez 1.", 6, ("1",)),
    )
    (gather, _) = list(twiml(twilio.render(spoken, RenderContext(URLS)).body))
    assert [v.tag for v in gather] == ["Say", "Say"]
    (gather, _) = list(twiml(twilio.render(played, RenderContext(URLS)).body))
    assert [(v.tag, v.text) for v in gather] == [
        ("Play", f"{AUDIO_BASE}/a.mp3?v=1&lang=fr"),  # the & was escaped, parsed back
        ("Say", "Tapez 1."),
    ]
