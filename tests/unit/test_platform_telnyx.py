"""Telnyx TeXML adapter: Ed25519 webhook signature, TeXML form fields, TwiML answers."""

from __future__ import annotations

import base64
import contextlib
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from regulator.core.models import Decision, Destination, MenuPrompt, Platform, Route, Stage
from regulator.platforms import telnyx, twilio
from regulator.platforms.base import (
    BadHookRequest,
    HookRequest,
    HookUrls,
    RenderContext,
    SignatureError,
)
from regulator.settings import Settings
from tests.unit.helpers import decision
from tests.unit.platform_decisions import every_decision, failsafes

NOW = 1_800_000_000
URL = "https://regulator.example/hooks/telnyx/voice"
# A key pair of this test run: Telnyx signs with its private key, the portal shows the
# public one as base64 of its 32 raw bytes.
PRIVATE = Ed25519PrivateKey.generate()
PUBLIC_B64 = base64.b64encode(
    PRIVATE.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
).decode()

# The fields of a TeXML voice webhook, as Telnyx documents them (form-encoded).
VOICE = {
    "AccountSid": "f5586561-8ff0-4291-a51b-c7dfe4139ff9",
    "ApiVersion": "2010-04-01",
    "CallSid": "v3:9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ldNxdjWbVr9zBjbGjGsSe-aiQ",
    "CallSidLegacy": "v3:9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ldNxdjWbVr9zBjbGjGsSe-aiQ",
    "CallStatus": "ringing",
    "CallerId": "+33612345678",
    "ConnectionId": "1234567890",
    "Direction": "inbound",
    "From": "+33612345678",
    "To": "+33466123456",
}


def published_signature(timestamp: str, body: bytes, key: Ed25519PrivateKey = PRIVATE) -> str:
    """Telnyx's scheme: base64 of the Ed25519 signature of ``f"{timestamp}|{body}"``."""
    return base64.b64encode(key.sign(timestamp.encode() + b"|" + body)).decode()


def hook(
    form: dict[str, str],
    *,
    url: str = URL,
    now: float = NOW,
    timestamp: str | None = str(NOW),
    signature: str | None = "sign",
    body: bytes | None = None,
) -> HookRequest:
    raw = urlencode(form).encode() if body is None else body
    headers: dict[str, str] = {}
    if timestamp is not None:
        headers["telnyx-timestamp"] = timestamp
    if signature == "sign":
        headers["telnyx-signature-ed25519"] = published_signature(timestamp or "", raw)
    elif signature is not None:
        headers["telnyx-signature-ed25519"] = signature
    query = {}
    if "?" in url:
        query = dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))
    return HookRequest("POST", url, headers, query, raw, form, now)


# --------------------------------------------------------------- signature


def test_webhook_signed_with_the_published_scheme_is_accepted() -> None:
    telnyx.verify(hook(VOICE), PUBLIC_B64)


def test_signature_within_five_minutes_either_side_is_accepted() -> None:
    for skew in (-300, 300):
        telnyx.verify(hook(VOICE, now=NOW + skew), PUBLIC_B64)


@pytest.mark.parametrize("skew", [-301, 301, 3600])
def test_replayed_webhook_is_refused(skew: int) -> None:
    with pytest.raises(SignatureError, match="replay window"):
        telnyx.verify(hook(VOICE, now=NOW + skew), PUBLIC_B64)


def test_tampered_body_or_timestamp_is_refused() -> None:
    raw = urlencode(VOICE).encode()
    signature = published_signature(str(NOW), raw)
    tampered = raw.replace(b"%2B33612345678", b"%2B33612345679")
    with pytest.raises(SignatureError, match="does not match"):
        telnyx.verify(hook(VOICE, body=tampered, signature=signature), PUBLIC_B64)
    with pytest.raises(SignatureError, match="does not match"):
        telnyx.verify(hook(VOICE, timestamp=str(NOW + 1), signature=signature), PUBLIC_B64)


def test_signature_without_the_separator_or_by_another_key_is_refused() -> None:
    raw = urlencode(VOICE).encode()
    no_pipe = base64.b64encode(PRIVATE.sign(str(NOW).encode() + raw)).decode()
    with pytest.raises(SignatureError):
        telnyx.verify(hook(VOICE, signature=no_pipe), PUBLIC_B64)
    other = published_signature(str(NOW), raw, Ed25519PrivateKey.generate())
    with pytest.raises(SignatureError):
        telnyx.verify(hook(VOICE, signature=other), PUBLIC_B64)


@pytest.mark.parametrize(
    ("timestamp", "signature", "reason"),
    [
        (str(NOW), None, "missing telnyx-signature"),
        (None, "sign", "missing telnyx-timestamp"),
        (str(NOW), "", "missing telnyx-signature"),
        ("yesterday", "c2lnbmF0dXJl", "malformed telnyx-timestamp"),
        (str(NOW), "not base64!", "malformed"),
        (str(NOW), base64.b64encode(b"short").decode(), "does not match"),
    ],
)
def test_missing_or_malformed_headers_are_refused(
    timestamp: str | None, signature: str | None, reason: str
) -> None:
    with pytest.raises(SignatureError, match=reason):
        telnyx.verify(hook(VOICE, timestamp=timestamp, signature=signature), PUBLIC_B64)


def test_unset_or_unusable_public_key_refuses_everything() -> None:
    with pytest.raises(SignatureError, match="not configured"):
        telnyx.verify(hook(VOICE), "")
    with pytest.raises(SignatureError, match="32-byte"):
        telnyx.verify(hook(VOICE), base64.b64encode(b"x" * 16).decode())


def test_settings_refuse_a_public_key_that_is_not_one() -> None:
    assert Settings(telnyx_public_key=PUBLIC_B64).secret("telnyx_public_key") == PUBLIC_B64
    with pytest.raises(ValueError, match="TELNYX_PUBLIC_KEY"):
        Settings(telnyx_public_key="not-a-key")


@settings(max_examples=200, deadline=None)
@given(
    body=st.binary(max_size=200),
    timestamp=st.integers(min_value=NOW - 400, max_value=NOW + 400),
    tamper=st.booleans(),
)
def test_verify_accepts_exactly_fresh_untampered_signatures(
    body: bytes, timestamp: int, tamper: bool
) -> None:
    signature = published_signature(str(timestamp), body)
    sent = body + b"x" if tamper else body
    req = HookRequest(
        "POST",
        URL,
        {"telnyx-timestamp": str(timestamp), "telnyx-signature-ed25519": signature},
        {},
        sent,
        {},
        NOW,
    )
    expected = not tamper and abs(NOW - timestamp) <= telnyx.TOLERANCE_S
    try:
        telnyx.verify(req, PUBLIC_B64)
        accepted = True
    except SignatureError:
        accepted = False
    assert accepted == expected


# --------------------------------------------------------------- parsing


def test_voice_webhook_becomes_a_telnyx_incoming_call() -> None:
    call = telnyx.parse_call(hook(VOICE), Stage.INCOMING)
    assert call.call_id == VOICE["CallSid"]
    assert call.caller == "+33612345678"
    assert call.called == "+33466123456"
    assert call.platform is Platform.TELNYX
    assert call.digits is None


def test_gather_webhook_carries_the_digits() -> None:
    call = telnyx.parse_call(hook({**VOICE, "Digits": "1"}), Stage.DIGITS)
    assert (call.stage, call.digits) == (Stage.DIGITS, "1")


@pytest.mark.parametrize(
    ("dial_status", "failed"),
    [
        ("completed", False),
        ("busy", True),
        ("no-answer", True),
        ("failed", True),
        ("canceled", False),
    ],
)
def test_failed_dial_table(dial_status: str, failed: bool) -> None:
    url = "https://regulator.example/hooks/telnyx/dial-status?mmg=nimes&target=regulation"
    form = {**VOICE, "CallStatus": "in-progress", "DialCallStatus": dial_status}
    event = telnyx.parse_event(hook(form, url=url))
    assert event.status == dial_status
    assert event.dial_failed is failed
    assert event.target is Route.REGULATION


def test_status_callback_as_telnyx_documents_it() -> None:
    # The "completed" callback of Telnyx's <Hangup> documentation.
    form = {
        "AccountSid": "cb6cfbbc-eb00-41af-a3f3-0d7b32009e4b",
        "CallDuration": "2",
        "CallSid": "v2:7V3r4VFCGLTzKLOveE0-7vM9dX17-NRQgU1byo-uuOIX9JcDadLLKw",
        "CallSidLegacy": "v2:7V3r4VFCGLTzKLOveE0-7vM9dX17-NRQgU1byo-uuOIX9JcDadLLKw",
        "CallStatus": "completed",
        "CallbackSource": "call-progress-events",
        "From": "+18445931290",
        "HangupSource": "callee",
        "SequenceNumber": "0",
        "Timestamp": "2021-04-28 21:51:18.731479Z",
        "To": "+13122010055",
    }
    event = telnyx.parse_event(hook(form, url="https://regulator.example/hooks/telnyx/status"))
    assert (event.status, event.duration_s, event.target) == ("completed", 2, None)
    assert not event.dial_failed


@settings(max_examples=200, deadline=None)
@given(
    form=st.dictionaries(
        st.sampled_from(["CallSid", "From", "To", "Digits", "CallStatus", "DialCallStatus", "x"]),
        st.text(max_size=30),
        max_size=7,
    )
)
def test_parsing_garbage_raises_only_bad_hook_request(form: dict[str, str]) -> None:
    req = HookRequest("POST", URL, {}, {}, b"", form, NOW)
    for parse in (lambda: telnyx.parse_call(req, Stage.DIGITS), lambda: telnyx.parse_event(req)):
        with contextlib.suppress(BadHookRequest):
            parse()


# --------------------------------------------------------------- rendering

URLS = HookUrls(
    gather="https://regulator.example/hooks/telnyx/gather",
    dial_status="https://regulator.example/hooks/telnyx/dial-status?mmg=nimes",
)


def texml(body: bytes) -> ET.Element:
    root = ET.fromstring(body)  # our own output
    assert root.tag == "Response"
    return root


def test_texml_is_twilios_renderer_with_telnyxs_dial_timeout_bound() -> None:
    long_ring = decision(Route.REGULATION, Destination(number="+33466000015"), dial_timeout_s=600)
    dial = texml(telnyx.render(long_ring, RenderContext(URLS)).body).find("Dial")
    assert dial is not None
    assert dial.attrib["timeout"] == str(telnyx.MAX_DIAL_TIMEOUT_S)
    assert dial.attrib["action"] == URLS.dial_status + "&target=regulation"
    short = decision(Route.REGULATION, Destination(number="+33466000015"), dial_timeout_s=90)
    assert (
        telnyx.render(short, RenderContext(URLS)).body
        == twilio.render(short, RenderContext(URLS)).body
    )


def test_menu_gathers_one_digit() -> None:
    menu = decision(Route.MENU, None, menu=MenuPrompt("Tapez 1.", 6, ("1",)))
    gather, redirect = list(texml(telnyx.render(menu, RenderContext(URLS)).body))
    assert (gather.tag, gather.attrib["numDigits"], gather.attrib["action"]) == (
        "Gather",
        "1",
        URLS.gather,
    )
    assert redirect.text == URLS.gather


@pytest.mark.parametrize("failsafe_decision", failsafes(), ids=lambda d: d.failsafe_reason or "")
def test_failsafe_dials_regulation_or_says_to_dial_15(failsafe_decision: Decision) -> None:
    root = texml(telnyx.render(failsafe_decision, RenderContext(URLS)).body)
    dial = root.find("Dial")
    if dial is not None:
        assert dial.attrib["action"].endswith("target=regulation")
    else:
        assert [c.tag for c in root][-1] == "Hangup"
        assert any("15" in (c.text or "") for c in root.iter("Say"))


@pytest.mark.parametrize("route", list(Route))
def test_every_route_renders_valid_texml(route: Route) -> None:
    decisions = [d for d in every_decision() if d.route is route]
    assert decisions
    for d in decisions:
        root = texml(
            telnyx.render(
                d, RenderContext(URLS, caller="+33612000001", own_number="+33466123456")
            ).body
        )
        dial = root.find("Dial")
        if dial is not None:
            assert 5 <= int(dial.attrib["timeout"]) <= telnyx.MAX_DIAL_TIMEOUT_S
            assert (dial.findtext("Number") or dial.findtext("Sip") or "").strip()


def test_render_hangup_is_a_single_hangup() -> None:
    assert [c.tag for c in texml(telnyx.render_hangup().body)] == ["Hangup"]
