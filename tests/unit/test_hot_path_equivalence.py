"""Shortcuts taken on the webhook path give exactly what the generic code gives."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st

from regulator.core import phone
from regulator.core.decision import decide
from regulator.core.protocol import Protocol
from regulator.protocols import load_protocols
from regulator.web.hooks import parse_form
from tests.support.paths import PROTOCOLS_DIR
from tests.unit.helpers import call

_FORM_CHARS = st.sampled_from(list("ab=&+%2B0Fé;Z %C3%A9"))


@given(st.lists(_FORM_CHARS, max_size=40).map("".join))
def test_parse_form_is_parse_qsl_with_blank_values(text: str) -> None:
    assert parse_form(text) == dict(parse_qsl(text, keep_blank_values=True))


_FORM_TOKENS = st.sampled_from(["%2B", "%2b", "%2", "%", "33", "6", "=", "&", "+", "%C3%A9", "a"])


@given(st.lists(_FORM_TOKENS, max_size=30).map("".join))
def test_parse_form_escaped_numbers_are_parse_qsl_too(text: str) -> None:
    # Values starting %2B take a shortcut when that is their only escape.
    assert parse_form(text) == dict(parse_qsl(text, keep_blank_values=True))


def test_parse_form_on_a_twilio_body() -> None:
    body = (
        "AccountSid=AC123&CallSid=CAabc&Called=%2B33466123456&CallerCity=&"
        "From=%2B33612345678&Digits=1&SpeechResult=Bonjour+%C3%A0+vous"
    )
    assert parse_form(body) == dict(parse_qsl(body, keep_blank_values=True))


def _mask_by_reparsing(value: str) -> str:
    """``phone.mask`` as first written: parse the normalised number again."""
    digits = "".join(c for c in value if c.isdigit() or c == "+")
    if digits in phone.SHORT_CODES:
        return digits
    e164 = phone.try_normalize(digits)
    if e164 is None:
        return "•" * min(len(digits), 8)
    parsed = phonenumbers.parse(e164)
    national = str(parsed.national_number)
    if len(national) < 5:
        return f"+{parsed.country_code} ••"
    groups = " ".join("••" for _ in range((len(national) - 2) // 2))
    return f"+{parsed.country_code} {national[0]} {groups} {national[-2:]}"


def _nimes() -> Protocol:
    proto = load_protocols(PROTOCOLS_DIR).get("nimes")
    assert proto is not None
    return proto


_NIMES = _nimes()

_PREFIXES = ("+336", "+337", "06", "07", "04", "0262", "0692", "0590", "0596", "+44 7", "+39 06")


@settings(max_examples=300)
@given(st.sampled_from(_PREFIXES), st.text("0123456789", min_size=4, max_size=10))
def test_mask_reuses_the_normalising_parse(prefix: str, rest: str) -> None:
    number = prefix + rest
    assert phone.mask(number) == _mask_by_reparsing(number)


@settings(max_examples=200)
@given(
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 12, 31)),
    st.sampled_from(["Europe/Paris", "Indian/Reunion", "America/Martinique", "UTC"]),
)
def test_decision_trace_time_is_the_strftime_text(moment: datetime, zone: str) -> None:
    local = moment.replace(tzinfo=ZoneInfo(zone))
    proto = _NIMES
    decision = decide(proto, call(), local)
    paris = local.astimezone(proto.tz)
    assert f"heure locale {paris:%Y-%m-%d %H:%M %Z}" in decision.trace[0]
