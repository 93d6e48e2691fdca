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


FRENCH_CODES = ("33", "262", "508", "590", "594", "596", "681", "687", "689")


def _parsed(value: str) -> tuple[str, int, int] | None:
    """What phonenumbers' own parser reads from an E.164 string (None: not valid)."""
    import phonenumbers

    try:
        number = phonenumbers.parse(value, "FR")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    assert number.country_code is not None and number.national_number is not None
    return e164, number.country_code, number.national_number


@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from(FRENCH_CODES),
    st.from_regex(r"[0-9]{1,14}", fullmatch=True),
)
def test_the_french_e164_shortcut_reads_what_phonenumbers_parse_reads(
    code: str, national: str
) -> None:
    from regulator.core.phone import french_e164

    value = f"+{code}{national}"
    fast = french_e164(value)
    # The shortcut may decline (None: the full parse decides), never disagree.
    if fast is not None:
        assert fast == _parsed(value)
    elif not national.startswith("0"):
        assert _parsed(value) is None, f"{value}: valid, but the shortcut declined"


@pytest.mark.parametrize(
    "value",
    [
        "+33612345678",  # mobile
        "+33466123456",  # Nîmes
        "+262692123456",  # Réunion mobile
        "+262269612345",  # Mayotte
        "+590690123456",  # Guadeloupe mobile
        "+596696123456",  # Martinique mobile
        "+594694123456",  # Guyane mobile
        "+508551234",  # Saint-Pierre-et-Miquelon
        "+687751234",  # Nouvelle-Calédonie
        "+68987123456",  # Polynésie
        "+681721234",  # Wallis-et-Futuna
    ],
)
def test_real_french_and_overseas_lines_take_the_shortcut(value: str) -> None:
    from regulator.core.phone import french_e164

    fast = french_e164(value)
    assert fast is not None and fast[0] == value
    assert fast == _parsed(value)
    assert normalize(value) == value


def test_the_compiled_validity_check_agrees_with_phonenumbers_is_valid_number() -> None:
    """phone._validity (a single-region French code's patterns, compiled once) against
    ``phonenumbers.is_valid_number``: for each leading pair of digits, 30 random national
    numbers of each length the region's metadata allows and 2 of every other length from
    1 to 12. The shared codes (+262, +590) have no such check."""
    import random

    import phonenumbers

    from regulator.core.phone import _validity

    rng = random.Random(33)
    assert _validity(262) is None and _validity(590) is None
    disagree: list[str] = []
    checked = valid = 0
    for code in (33, 508, 594, 596, 681, 687, 689):
        check = _validity(code)
        assert check is not None
        region = phonenumbers.region_code_for_country_code(code)
        meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
        assert meta is not None and meta.general_desc is not None
        allowed = set(meta.general_desc.possible_length or ())
        lengths = allowed | set(range(1, 13))
        samples = [
            f"{lead:02d}"[:length] + "".join(rng.choice("0123456789") for _ in range(length - 2))
            for length in sorted(lengths)
            for lead in range(10, 100)
            for _ in range(30 if length in allowed else 2)
        ]
        for national in samples:
            number = phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
            expected = phonenumbers.is_valid_number(number)
            checked += 1
            valid += expected
            if check(national) != expected:
                disagree.append(f"+{code} {national}: phonenumbers says {expected}")
    print(f"{checked:,} numbers checked, {valid:,} valid, {len(disagree)} disagreements")
    assert valid > 1000 and disagree == []


@pytest.mark.parametrize("value", ["+33٦١١٢٢٣٣٤٤", "+3361١٢٢٣٣٤٤", "+33６１１２２３３４４"])
def test_digits_other_than_ascii_come_out_as_ascii_e164(value: str) -> None:
    """``\\d`` matches Arabic-Indic and full-width digits: the shortcut leaves them to the
    full parse, which reads them, so what is stored and compared is ASCII E.164."""
    from regulator.core.phone import french_e164

    assert french_e164(value) is None
    assert normalize(value) == "+33611223344"
