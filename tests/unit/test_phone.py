"""Phone numbers: French and overseas notations to E.164, short codes, masking."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regulator.core.phone import (
    SHORT_CODES,
    InvalidNumber,
    is_short_code,
    mask,
    normalize,
    try_normalize,
)


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("04 66 12 34 56", "+33466123456"),
        ("+33 4 66 12 34 56", "+33466123456"),
        ("0033466123456", "+33466123456"),
        ("04.66.12.34.56", "+33466123456"),
        ("(04) 66-12-34-56", "+33466123456"),
        ("+33466123456", "+33466123456"),
        ("33466123456", "+33466123456"),  # platform style, no +
        ("+262 262 90 12 34", "+262262901234"),
        ("0262 90 12 34", "+262262901234"),  # Réunion landline, national notation
        ("262262901234", "+262262901234"),  # Vonage style, no +
        ("0692 12 34 56", "+262692123456"),  # Réunion mobile
        ("+262 692 12 34 56", "+262692123456"),
        ("0590 12 34 56", "+590590123456"),  # Guadeloupe
        ("06 12 34 56 78", "+33612345678"),
    ],
)
def test_french_and_overseas_notations_normalize_to_e164(raw: str, e164: str) -> None:
    assert normalize(raw) == e164


@pytest.mark.parametrize("code", ["15", "112", "116117", "3237", "17", "18", " 32 37 "])
def test_short_codes_are_kept(code: str) -> None:
    kept = normalize(code)
    assert kept == code.replace(" ", "")
    assert is_short_code(kept)
    assert kept in SHORT_CODES


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "abc",
        "12",
        "0466",
        "+33",
        "04 66 12 34 5",  # one digit short
        "+33 4 66 12 34 56 78",  # one digit too many
        "+999123456789",  # no such country code
        "+33466123456abc",
        "hello 0466123456",
        "0" * 40,
    ],
)
def test_garbage_raises_invalid_number(raw: str) -> None:
    with pytest.raises(InvalidNumber):
        normalize(raw)
    assert try_normalize(raw) is None


def test_invalid_number_is_a_value_error() -> None:
    assert issubclass(InvalidNumber, ValueError)


def test_try_normalize_none_is_none() -> None:
    assert try_normalize(None) is None


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("+33612345642", "+33 6 •• •• •• 42"),
        ("06 12 34 56 42", "+33 6 •• •• •• 42"),
        ("0262 90 12 34", "+262 2 •• •• •• 34"),
        ("+262692123456", "+262 6 •• •• •• 56"),
        ("3237", "3237"),
        ("15", "15"),
        (None, "anonyme"),
        ("", "anonyme"),
        ("garbage", "•••••••"),
        ("0612", "••••"),
    ],
)
def test_mask_keeps_country_code_first_digit_and_last_two(raw: str | None, masked: str) -> None:
    assert mask(raw) == masked


def _revealed_national_digits(masked: str) -> str:
    """Digits shown by ``mask`` after the country code."""
    without_cc = re.sub(r"^\+\d+ ", "", masked)
    return re.sub(r"\D", "", without_cc)


@pytest.mark.parametrize(
    "raw",
    ["+33612345678", "04 66 12 34 56", "0692 12 34 56", "+44 20 7946 0958", "262262901234"],
)
def test_mask_reveals_only_first_and_last_two_digits(raw: str) -> None:
    national = normalize(raw)
    masked = mask(raw)
    shown = _revealed_national_digits(masked)
    assert len(shown) <= 3
    assert masked.endswith(national[-2:])
    assert national not in masked


french_numbers = st.builds(
    lambda first, rest: f"0{first}{rest}",
    st.sampled_from("1234567"),
    st.text(alphabet="0123456789", min_size=8, max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), french_numbers, st.from_regex(r"\+?\d{6,15}", fullmatch=True)))
def test_mask_never_reveals_more_than_first_digit_and_last_two(raw: str) -> None:
    masked = mask(raw)
    if _strip(raw) in SHORT_CODES:
        assert masked == _strip(raw)
        return
    assert len(_revealed_national_digits(masked)) <= 3


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), french_numbers, st.from_regex(r"\+?\d{2,15}", fullmatch=True)))
def test_normalize_returns_e164_or_short_code_or_raises_invalid_number(raw: str) -> None:
    try:
        value = normalize(raw)
    except InvalidNumber:
        return
    assert value in SHORT_CODES or re.fullmatch(r"\+[1-9]\d{5,14}", value)
    assert normalize(value) == value  # idempotent


def _strip(raw: str) -> str:
    return re.sub(r"[\s.\-()/\u00a0]", "", raw)
