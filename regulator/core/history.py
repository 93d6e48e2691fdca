"""Versions of a usage protocol: their identity, their stored document, what changed.

The traceability of PDS calls (arrêté of 20 October 2011) asks which rules decided a
call months later. Each protocol as loaded (its YAML with the roster file's stretches
merged in) is serialised to one canonical JSON document; its sha256 is the version
that call records name, and the document is what ``regulator explain`` loads back to
re-run a decision. :func:`diff_protocols` says in French what changed between two
versions. Pure functions: the files are hashed by the caller (:mod:`regulator.reload`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from regulator.core.protocol import Protocol, RosterEntry, Slot, parse_protocol

#: Hex digits of the document's sha256 kept as the version id: 64 bits, enough to
#: never collide among the few hundred versions an MMG has in a retention period.
VERSION_LENGTH = 16


@dataclass(frozen=True, slots=True)
class ProtocolVersion:
    """One version of one MMG's protocol, as the history keeps it."""

    mmg: str
    version: str  # VERSION_LENGTH hex digits of sha256(document)
    loaded_at: datetime  # aware, UTC: when it came into force (first load or reload)
    file: str  # the protocol file it was loaded from
    file_sha256: str
    summary: tuple[str, ...]  # French, one change per line (see diff_protocols)
    document: str  # canonical JSON of the protocol as loaded (protocol_document)
    roster_file: str = ""  # destinations.pharmacy.roster_file, resolved; "" if none
    roster_sha256: str = ""


def protocol_document(protocol: Protocol) -> str:
    """The protocol as loaded, as canonical JSON (sorted keys, no spaces).

    Self-contained: the roster file's stretches are in ``roster`` and ``roster_file``
    is dropped, so the document loads back (:func:`protocol_from_document`) without
    the files, which may have changed or gone since.
    """
    data: dict[str, Any] = protocol.model_dump(mode="json", by_alias=True)
    data["destinations"]["pharmacy"].pop("roster_file", None)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def version_id(document: str) -> str:
    return hashlib.sha256(document.encode()).hexdigest()[:VERSION_LENGTH]


def protocol_from_document(document: str, where: str) -> Protocol:
    """Load a stored document back (raises ProtocolLoadError if it no longer validates)."""
    return parse_protocol(json.loads(document), where)


# ------------------------------------------------------------------------ diff


def _slots(slots: Sequence[Slot] | None) -> str:
    if slots is None:
        return "comme un jour ordinaire"
    return ", ".join(str(s) for s in slots) if slots else "fermé"


def _local(moment: datetime) -> str:
    return moment.strftime("%d/%m/%Y %H:%M")


def _stretch(entry: RosterEntry) -> str:
    return f"{entry.name} ({entry.number}) du {_local(entry.from_)} au {_local(entry.to)}"


def _changed(label: str, old: object, new: object) -> list[str]:
    return [] if old == new else [f"{label} : {old} → {new}"]


def _dest(dest: Any) -> str:
    parts = [p for p in (getattr(dest, "number", None), getattr(dest, "sip", None)) if p]
    return " / ".join(parts) or "—"


_DAY_SLOTS = (
    ("weekdays", "jours ouvrés"),
    ("saturday", "samedi"),
    ("sunday", "dimanche"),
    ("holiday", "jours fériés"),
    ("bridge", "ponts"),
)


def _opening_changes(old: Protocol, new: Protocol) -> list[str]:
    out: list[str] = []
    for attr, label in _DAY_SLOTS:
        before, after = getattr(old.opening, attr), getattr(new.opening, attr)
        if before != after:
            out.append(f"créneaux {label} : {_slots(before)} → {_slots(after)}")
    old_periods = {p.name: p for p in old.opening.periods}
    new_periods = {p.name: p for p in new.opening.periods}
    for name, period in new_periods.items():
        span = f"du {period.from_:%d/%m/%Y} au {period.to:%d/%m/%Y}"
        if name not in old_periods:
            out.append(f"période ajoutée : « {name} » {span}")
        elif old_periods[name] != period:
            out.append(f"période modifiée : « {name} » {span}")
    out += [f"période retirée : « {name} »" for name in old_periods if name not in new_periods]
    old_over = {(o.from_, o.to): o for o in old.opening.overrides}
    new_over = {(o.from_, o.to): o for o in new.opening.overrides}

    def over(o: Any) -> str:
        state = "ouverture" if o.open else "fermeture"
        return f"{state} du {_local(o.from_)} au {_local(o.to)} ({o.reason})"

    for key, o in new_over.items():
        if key not in old_over:
            out.append(f"exception ajoutée : {over(o)}")
        elif old_over[key] != o:
            out.append(f"exception modifiée : {over(old_over[key])} → {over(o)}")
    out += [f"exception retirée : {over(o)}" for key, o in old_over.items() if key not in new_over]
    return out


def _stretch_key(entry: RosterEntry) -> tuple[datetime, datetime, str, str]:
    return (entry.from_, entry.to, entry.name, entry.number)  # its source is not content


def _roster_changes(old: Protocol, new: Protocol) -> list[str]:
    before, after = old.destinations.pharmacy, new.destinations.pharmacy
    old_keys = {_stretch_key(e): e for e in before.roster}
    new_keys = {_stretch_key(e): e for e in after.roster}
    added = [e for k, e in new_keys.items() if k not in old_keys]
    removed = [e for k, e in old_keys.items() if k not in new_keys]
    out = _changed("pharmacie, numéro national", before.fallback, after.fallback)
    limit = 10  # a new year of roster is hundreds of stretches: a few, then a count
    for verb, entries in (("ajoutée", added), ("retirée", removed)):
        out += [f"garde de pharmacie {verb} : {_stretch(e)}" for e in entries[:limit]]
        if len(entries) > limit:
            out.append(f"… et {len(entries) - limit} autre(s) garde(s) {verb}(s)")
    return out


def _routing_changes(old: Protocol, new: Protocol) -> list[str]:
    a, b = old.routing, new.routing
    out = _changed("orientation à l'ouverture", a.when_open, b.when_open)
    out += _changed("orientation à la fermeture", a.when_closed, b.when_closed)
    if a.menu != b.menu:
        out.append("menu vocal modifié")
    da, db = a.direct_access, b.direct_access
    out += _changed(
        "accès direct sur orientation en attente", da.pending_referral, db.pending_referral
    )
    for number in sorted(set(db.professionals) - set(da.professionals)):
        out.append(f"professionnel ajouté : {number}")
    for number in sorted(set(da.professionals) - set(db.professionals)):
        out.append(f"professionnel retiré : {number}")
    if da.regulation_overflow != db.regulation_overflow:
        out.append("débordement de la régulation modifié")
    return out


def diff_protocols(old: Protocol | None, new: Protocol) -> list[str]:
    """What changed from ``old`` to ``new``, in French, one line per change.

    ``old`` None: the first version known. Same content: one line saying so (a file
    rewritten identically is not a new version, but a reload can bring back an older
    one). Lines in document order: identity, numbers, calendar, opening (slots,
    periods, overrides), destinations, pharmacy roster, routing, messages.
    """
    if old is None:
        return ["première version enregistrée"]
    out: list[str] = []
    out += _changed("nom", old.name, new.name)
    out += _changed("fuseau horaire", old.timezone, new.timezone)
    for number in new.numbers:
        if number not in old.numbers:
            out.append(f"numéro ajouté : {number}")
    out += [f"numéro retiré : {n}" for n in old.numbers if n not in new.numbers]
    if old.calendar != new.calendar:
        out.append("calendrier modifié (département ou ponts)")
    out += _opening_changes(old, new)
    d_old, d_new = old.destinations, new.destinations
    out += _changed("centre 15 / SAS", _dest(d_old.regulation), _dest(d_new.regulation))
    out += _changed("accueil", _dest(d_old.front_desk), _dest(d_new.front_desk))
    out += _roster_changes(old, new)
    out += _routing_changes(old, new)
    for name in type(new.messages).model_fields:
        before, after = getattr(old.messages, name), getattr(new.messages, name)
        # A Prompt equals its text: its recording is compared too. Not every field is
        # a text (whisper_caller is a switch; regulation_whisper may be null).
        if (before, getattr(before, "audio", None)) != (after, getattr(after, "audio", None)):
            out.append(f"message « {name} » modifié")
    return out or ["aucun changement de contenu"]


__all__ = [
    "VERSION_LENGTH",
    "ProtocolVersion",
    "diff_protocols",
    "protocol_document",
    "protocol_from_document",
    "version_id",
]
