"""Phone numbers: French and overseas notations to E.164, short codes, masking.

Numbers arrive as people and platforms write them (``04 66 12 34 56``,
``+33 4 66…``, ``0033…``, ``262262…`` from Vonage without ``+``). Everything
the service compares or stores is E.164; the French short codes that platforms
can't dial (15, 112, 116117, 3237…) are kept as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache, lru_cache

import phonenumbers

#: Short numbers that are announced to callers, never dialled by a platform.
SHORT_CODES: frozenset[str] = frozenset(
    {"15", "17", "18", "112", "114", "115", "119", "116117", "3237", "3624", "3966"}
)

# Regions tried in turn for national notation (0…): metropolitan France first, then
# the overseas departments and collectivities that have their own numbering plans.
_REGIONS = ("FR", "RE", "GP", "MQ", "GF", "YT", "PM", "BL", "MF", "NC", "PF", "WF")
# National (0…) prefixes of the overseas departments and collectivities.
_OVERSEAS_PREFIXES = {
    **dict.fromkeys(("0262", "0263", "0692", "0693"), "RE"),
    **dict.fromkeys(("0269", "0639"), "YT"),
    **dict.fromkeys(("0590", "0690", "0691"), "GP"),
    **dict.fromkeys(("0594", "0694"), "GF"),
    **dict.fromkeys(("0596", "0696", "0697"), "MQ"),
    "0508": "PM",
}
_STRIP = re.compile(r"[\s.\-()/\u00a0]")
#: Country codes of France and the overseas departments and collectivities (262
#: Réunion and Mayotte, 590 Guadeloupe, 594 Guyane, 596 Martinique, 508 Saint-Pierre,
#: 681 Wallis, 687 Nouvelle-Calédonie, 689 Polynésie): their national prefix is 0 or
#: none, so under one of them an E.164 number whose national part does not start with
#: 0 is read by ``phonenumbers.parse`` as it stands (nothing stripped; tested).
_FRENCH_CODES = {c: int(c) for c in ("33", "262", "508", "590", "594", "596", "681", "687", "689")}
_DIGITS = re.compile(r"\+?\d{2,20}")


class InvalidNumber(ValueError):
    """The string is not a phone number we can route or compare."""


def is_short_code(value: str) -> bool:
    """True for a French short code such as 15 or 3237 (after removing spaces)."""
    return _STRIP.sub("", value) in SHORT_CODES


def normalize(raw: str, region: str = "FR") -> str:
    """Return ``raw`` as E.164 (``+33466123456``) or as a bare short code (``3237``).

    ``region`` is the default region for national notation; other French regions
    are tried when the number is not valid there. Raises :class:`InvalidNumber`.
    Cached: callers, professionals and destination numbers repeat a lot.
    """
    return _normalize(raw, region)[0]


# 8,192 numbers cover every caller of a busy MMG for days (each webhook of a call,
# the retries, the callbacks); a larger cache only holds memory (~200 bytes each).
@lru_cache(maxsize=8192)
def _normalize(raw: str, region: str) -> tuple[str, int | None, int | None]:
    """:func:`normalize`, with the country code and national number phonenumbers read
    (0, 0 for a short code): :func:`mask` uses them instead of parsing the number again
    (an E.164 number re-parses to the same two values)."""
    if not isinstance(raw, str):
        raise InvalidNumber(f"not a string: {raw!r}")
    value = _STRIP.sub("", raw.strip())
    if value in SHORT_CODES:
        return value, 0, 0
    if not value or len(value) > 32:
        raise InvalidNumber(f"not a phone number: {raw!r}")
    if value.startswith("00"):
        value = "+" + value[2:]
    elif value[0].isdigit() and not value.startswith("0") and len(value) >= 10:
        # Vonage and some PBXs send international numbers without the leading +.
        value = "+" + value
    if not _DIGITS.fullmatch(value):
        raise InvalidNumber(f"not a phone number: {raw!r}")
    if value[0] == "+":
        known = french_e164(value)
        if known is not None:
            return known
    if value.startswith("0") and value[:4] in _OVERSEAS_PREFIXES:
        # National notation of an overseas line: phonenumbers would read some of
        # these (0269…, 0596…) as metropolitan +33 numbers that match no caller id.
        region = _OVERSEAS_PREFIXES[value[:4]]
    regions = (region, *(r for r in _REGIONS if r != region))
    for reg in regions:
        try:
            parsed = phonenumbers.parse(value, reg)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            return e164, parsed.country_code, parsed.national_number
        if value.startswith("+"):
            break  # an explicit country code is not re-read in another region
    raise InvalidNumber(f"not a valid phone number: {raw!r}")


def french_e164(value: str) -> tuple[str, int, int] | None:
    """``value`` (``+`` and digits) as :func:`_normalize` gives it, when it is a valid
    E.164 number of a French country code with a national part not starting with 0 —
    what every platform sends for a French caller — else None (the full parse decides).

    ``phonenumbers.parse`` is half of a new caller's cost (~10 µs) and would read the
    same two values; validity is the region metadata's, as ``is_valid_number`` reads
    it (:func:`_validity`). Digits other than ASCII (``\\d`` matches ``٦``) are left to
    the full parse, which reads them as ASCII."""
    if not value.isascii():
        return None
    for length in (2, 3):
        code = _FRENCH_CODES.get(value[1 : 1 + length])
        if code is None:
            continue
        national = value[1 + length :]
        if not national or national[0] == "0":
            return None
        nsn = int(national)
        check = _validity(code)
        if check is not None:
            valid = check(national)
        else:  # several regions share the code (+262, +590): phonenumbers picks one
            number = phonenumbers.PhoneNumber(country_code=code, national_number=nsn)
            valid = phonenumbers.is_valid_number(number)
        return (value, code, nsn) if valid else None
    return None


#: The number types ``phonenumbers`` tries in ``_number_type_helper``: a number is
#: valid for a region when it matches the region's general description and one of these.
_NUMBER_TYPES = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)
_Desc = tuple[frozenset[int], re.Pattern[str]]


@cache
def _validity(code: int) -> Callable[[str], bool] | None:
    """``phonenumbers.is_valid_number`` for a national number of country code ``code``
    when one region alone has that code (+33, +508, +594, +596, +681, +687, +689), from
    that region's own metadata and patterns; None for a shared code.

    ``is_valid_number`` costs a new caller ~7 µs: it finds the region, then walks the
    number types through ``phonenumbers``' generic helpers and its pattern cache. This
    does the same matches (length, then the whole pattern) with the patterns compiled
    once; tests/unit/test_phone.py checks it against ``is_valid_number``."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
    if len(regions) != 1:
        return None
    meta = phonenumbers.PhoneMetadata.metadata_for_region(regions[0])
    if meta is None:
        return None

    def desc(d: phonenumbers.PhoneNumberDesc | None) -> _Desc | None:
        if d is None or not d.national_number_pattern:
            return None
        return frozenset(d.possible_length or ()), re.compile(d.national_number_pattern)

    general = desc(meta.general_desc)
    if general is None:
        return None
    types = [t for t in (desc(getattr(meta, name)) for name in _NUMBER_TYPES) if t]

    def matches(d: _Desc, national: str) -> bool:
        lengths, pattern = d
        if lengths and len(national) not in lengths:
            return False
        return pattern.fullmatch(national) is not None

    def valid(national: str) -> bool:
        return matches(general, national) and any(matches(t, national) for t in types)

    return valid


def try_normalize(raw: str | None, region: str = "FR") -> str | None:
    """Like :func:`normalize` but returns None for anything unparseable (anonymous callers)."""
    if not raw:
        return None
    try:
        return normalize(raw, region)
    except InvalidNumber:
        return None


def mask(value: str | None) -> str:
    """Mask a number for logs: ``+33612345642`` → ``+33 6 •• •• •• 42``.

    Keeps the country code, the first national digit and the last two digits —
    enough to tell calls apart in a log, not enough to call anyone back.
    """
    if not value:
        return "anonyme"
    return _mask(value)


@lru_cache(maxsize=4096)
def _mask(value: str) -> str:
    # Cached: one webhook masks its caller several times (decision trace, log line,
    # console event, interconnection), and parsing a number is the costly part.
    digits = _STRIP.sub("", value)
    if digits in SHORT_CODES:
        return digits
    if try_normalize(digits) is None:
        return "•" * min(len(digits), 8)
    _, country_code, national_number = _normalize(digits, "FR")  # cached just above
    cc = f"+{country_code}"
    national = str(national_number)
    if len(national) < 5:
        return f"{cc} ••"
    middle = len(national) - 3
    groups = " ".join("••" for _ in range((middle + 1) // 2))
    return f"{cc} {national[0]} {groups} {national[-2:]}"
