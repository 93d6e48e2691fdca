"""The whisper: what the regulation line hears when it answers, before the caller.

Centre 15 takes calls from many sources; the whisper tells the regulator this one
comes through an MMG's number (``messages.regulation_whisper``: "Appel transmis par
la maison médicale de garde de Metz") and, where the protocol allows it
(``messages.whisper_caller``), the caller's number, spoken digit pair by digit pair
as French people read numbers ("06 12 34 56 78"), so that the regulator can call back
if the line drops.

Pure: the platforms render the texts (TwiML ``<Say>``, an NCCO ``talk``).
"""

from __future__ import annotations

import re
from typing import Final

import phonenumbers

from regulator.core import phone
from regulator.core.models import Prompt
from regulator.core.protocol import Protocol

#: Country codes whose numbers French people read with the trunk 0 (metropolitan
#: France and the overseas departments sharing its ten-digit plan).
_TRUNK_ZERO: Final[frozenset[int]] = frozenset({33, 262, 269, 508, 590, 594, 596})

#: What any platform says when the protocol cannot be read (the whisper never fails).
FALLBACK: Final[Prompt] = Prompt("Appel transmis par une maison médicale de garde.")


def _pairs(digits: str) -> str:
    # An odd count keeps its first digit alone ("3 62 4"), as numbers are read aloud.
    head = len(digits) % 2
    groups = [digits[:head]] if head else []
    groups += [digits[i : i + 2] for i in range(head, len(digits), 2)]
    return " ".join(groups)


def spoken_number(number: str | None) -> str | None:
    """``number`` as read aloud in French, digit pair by digit pair, or None when it
    is no phone number (withheld, ``anonymous``, a SIP user).

    ``+33612345678`` → ``06 12 34 56 78``; ``+262692123456`` → ``06 92 12 34 56``;
    a foreign number keeps its country code: ``+44 20 79 46 00 00``.
    """
    e164 = phone.try_normalize(number)
    if e164 is None or not e164.startswith("+"):
        return None
    parsed = phonenumbers.parse(e164, None)
    national = phonenumbers.national_significant_number(parsed)
    if parsed.country_code in _TRUNK_ZERO:
        return _pairs("0" + national)
    return f"+{parsed.country_code} {_pairs(national)}"


_MMG_PREFIX = re.compile(r"\s*maison\s+m[ée]dicale\s+de\s+garde\s+", re.IGNORECASE)


def place_of(name: str) -> str:
    """What follows "Maison médicale de garde" in an MMG's name, its preposition kept
    ("Maison médicale de garde de Metz" → "de Metz", "… du Pays de Gex" → "du Pays de
    Gex"); a name without it is "de" + the name ("Metz" → "de Metz")."""
    match = _MMG_PREFIX.match(name)
    if match is not None and name[match.end() :].strip():
        return name[match.end() :].strip()
    return f"de {name.strip()}"


def whisper_texts(protocol: Protocol | None, caller: str | None) -> tuple[Prompt, ...]:
    """What the regulation line hears, in order; empty when the protocol plays none.

    ``protocol`` None (the MMG could not be found again): :data:`FALLBACK`, since the
    dial that asked for a whisper did so on a protocol that had one. ``caller``: the
    caller's number as recorded, spoken only when ``messages.whisper_caller`` is true.
    """
    if protocol is None:
        return (FALLBACK,)
    messages = protocol.messages
    template = messages.regulation_whisper
    if template is None or not (template.strip() or template.audio):
        return ()
    texts = [template.format(name=protocol.name, place=place_of(protocol.name))]
    spoken = spoken_number(caller) if messages.whisper_caller else None
    if spoken is not None:
        texts.append(Prompt(f"Numéro de l'appelant : {spoken}."))
    return tuple(texts)


def has_whisper(protocol: Protocol | None) -> bool:
    """Whether a dial to the regulation line of ``protocol`` asks for a whisper."""
    if protocol is None:
        return False
    template = protocol.messages.regulation_whisper
    return template is not None and bool(template.strip() or template.audio)


__all__ = ["FALLBACK", "has_whisper", "place_of", "spoken_number", "whisper_texts"]
