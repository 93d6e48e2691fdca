"""``regulator explain --call-id ID``: re-run a recorded call's decisions against the
protocol version that made them.

The traceability of PDS calls (arrêté of 20 October 2011): months later a regulator
or an ARS asks why a call went where it went. The call record names its protocol
version (``CallRecord.protocol_version``); the store keeps that version's document
(:mod:`regulator.core.history`). The call's decisions are rebuilt from what the record
holds, as far as it can be:

1. the first webhook: the caller, the MMG's number (the record keeps the MMG, not the
   number dialled: any of its numbers decides alike), the call's instant, the
   platform (a SIP proxy has no voice menu); a pending referral if the recorded ground
   says so or the first destination was the front desk;
2. a menu: the choice whose destination is the first one of the route history (no
   destination: the caller hung up in the menu);
3. each later destination of the route history: a failed dial of the one before,
   with every earlier one already offered (at the call's instant: the record keeps
   no time for them).

The last decision rebuilt is compared with the recorded route and rule.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson

from regulator.core.decision import decide
from regulator.core.history import ProtocolVersion, protocol_from_document
from regulator.core.models import Call as EngineCall
from regulator.core.models import (
    CallRecord,
    Decision,
    DecisionContext,
    Ground,
    Platform,
    Route,
    Stage,
    offered_by,
)
from regulator.core.protocol import Protocol, ProtocolLoadError
from regulator.ports import Store, StoreError
from regulator.storage import codec

_STAGE_LABELS = {
    Stage.INCOMING: "appel entrant",
    Stage.DIGITS: "choix au menu",
    Stage.DIAL_FAILED: "échec de la mise en relation",
}


class ExplainError(Exception):
    """The call cannot be explained (unknown call, version not kept…), in French."""


@dataclass(frozen=True, slots=True)
class Step:
    stage: Stage
    detail: str  # what was replayed ("touche 2", "échec : regulation"), in French
    decision: Decision


@dataclass(frozen=True, slots=True)
class Explanation:
    record: CallRecord
    version: ProtocolVersion
    #: How the version was found: "enregistrée" (named by the record) or "déduite"
    #: (a record older than versions: the one in force at the call's instant).
    found: str
    steps: tuple[Step, ...]
    #: Why the replay may differ from the original, in French (empty: full replay).
    notes: tuple[str, ...]

    @property
    def final(self) -> Decision:
        return self.steps[-1].decision

    @property
    def matches(self) -> bool:
        return (self.final.route, self.final.rule) == (self.record.route, self.record.rule)


def _platform(name: str) -> Platform:
    try:
        return Platform(name)
    except ValueError:
        return Platform.GENERIC


def replay(record: CallRecord, protocol: Protocol) -> tuple[tuple[Step, ...], tuple[str, ...]]:
    """The call's decisions rebuilt from its record (steps 1–3 of the module doc)."""
    history = codec.history_of(record.route, record.routes)
    platform = _platform(record.platform)
    notes: list[str] = []
    call = EngineCall(record.call_id, record.caller, protocol.numbers[0], platform)
    at = record.at
    pending = record.ground is Ground.PENDING_REFERRAL or (
        bool(history) and history[0] is Route.DIRECT_ACCESS
    )
    engine_call = call
    if platform is Platform.KAMAILIO:  # no voice menu: the menu's default (calls.py)
        engine_call = dataclasses.replace(call, stage=Stage.DIGITS, digits=None)
    first = decide(protocol, engine_call, at, DecisionContext(pending_referral=pending))
    steps = [Step(Stage.INCOMING, "", first)]
    offered: list[Route] = []
    entry = offered_by(first)
    if entry is not None:
        offered.append(entry)
    elif first.route is Route.MENU and history:
        menu = protocol.routing.menu
        keys: list[str | None] = [*(menu.options if menu is not None else {}), None]
        chosen: tuple[str | None, Decision] | None = None
        for key in keys:
            candidate = decide(
                protocol, dataclasses.replace(call, stage=Stage.DIGITS, digits=key), at
            )
            if offered_by(candidate) is history[0]:
                chosen = (key, candidate)
                break
        if chosen is None:
            notes.append(f"aucun choix du menu ne mène à « {history[0].value} » dans cette version")
        else:
            key, decision = chosen
            steps.append(Step(Stage.DIGITS, f"touche {key}" if key else "sans choix", decision))
            entry = offered_by(decision)
            if entry is not None:
                offered.append(entry)
    while offered and len(offered) < len(history) and offered == list(history[: len(offered)]):
        failed = offered[-1]
        ctx = DecisionContext(failed_route=failed, offered=frozenset(offered))
        decision = decide(protocol, dataclasses.replace(call, stage=Stage.DIAL_FAILED), at, ctx)
        steps.append(Step(Stage.DIAL_FAILED, f"échec : {failed.value}", decision))
        entry = offered_by(decision)
        if entry is None:
            break
        offered.append(entry)
    if history and offered != list(history):
        notes.append(
            "destinations rejouées "
            f"({', '.join(r.value for r in offered) or 'aucune'}) ≠ enregistrées "
            f"({', '.join(r.value for r in history)})"
        )
    if len(steps) > 1 and steps[-1].stage is Stage.DIAL_FAILED:
        notes.append("échecs de mise en relation rejoués à l'instant de l'appel")
    if record.failsafe:
        notes.append(
            "l'appel a été orienté par le secours (centre 15) pour une raison hors du "
            f"protocole (règle {record.rule}) : le protocole seul ne la reproduit pas"
        )
    return tuple(steps), tuple(notes)


async def _version_for(store: Store, record: CallRecord) -> tuple[ProtocolVersion, str]:
    if record.protocol_version:
        version = await store.get_protocol_version(record.mmg, record.protocol_version)
        if version is None:
            raise ExplainError(
                f"la version {record.protocol_version} du protocole de {record.mmg} "
                "n'est plus conservée (ou pas encore enregistrée par le service)"
            )
        return version, "enregistrée"
    # A record from before versions: the newest version in force at its instant.
    for version in await store.protocol_history(record.mmg, limit=1000):
        if version.loaded_at <= record.at:
            return version, "déduite (appel enregistré sans version)"
    raise ExplainError(
        f"l'appel ne nomme pas de version et aucune version de {record.mmg} "
        "n'était enregistrée à sa date"
    )


async def explain_call(store: Store, call_id: str) -> Explanation:
    record = await store.get_call(call_id)
    if record is None:
        raise ExplainError(f"appel inconnu : {call_id!r} (ou purgé après la durée de conservation)")
    version, found = await _version_for(store, record)
    try:
        protocol = protocol_from_document(version.document, f"version {version.version}")
    except ProtocolLoadError as exc:
        raise ExplainError(
            f"la version {version.version} ne se charge plus avec ce service : {exc}"
        ) from None
    steps, notes = replay(record, protocol)
    return Explanation(record, version, found, steps, notes)


def _local(moment: datetime, protocol_tz: str) -> str:
    return moment.astimezone(ZoneInfo(protocol_tz)).strftime("%d/%m/%Y %H:%M:%S %Z")


def render_text(expl: Explanation) -> str:
    """The explanation for a person (French), one fact a line."""
    rec, ver = expl.record, expl.version
    tz = protocol_from_document(ver.document, ver.version).timezone
    lines = [
        f"appel          : {rec.call_id} ({rec.platform}), {rec.mmg}, {_local(rec.at, tz)}",
        f"version        : {ver.version} ({expl.found}), en vigueur depuis "
        f"{_local(ver.loaded_at, tz)}",
        f"fichier        : {ver.file} (sha256 {ver.file_sha256[:16]}…)"
        if ver.file_sha256
        else f"fichier        : {ver.file}",
    ]
    if ver.roster_file:
        lines.append(f"tableau de garde : {ver.roster_file} (sha256 {ver.roster_sha256[:16]}…)")
    lines.append("décisions rejouées :")
    for step in expl.steps:
        d = step.decision
        detail = f" ({step.detail})" if step.detail else ""
        lines.append(f"  - {_STAGE_LABELS[step.stage]}{detail} : {d.route.value} — règle {d.rule}")
    final = expl.final
    lines.append(f"règle appliquée : {final.rule}")
    lines.append(f"enregistré      : {rec.route.value} — règle {rec.rule}")
    verdict = "oui" if expl.matches else "NON"
    lines.append(f"identique       : {verdict}")
    lines += [f"remarque        : {note}" for note in expl.notes]
    return "\n".join(lines) + "\n"


def as_json(expl: Explanation) -> dict[str, object]:
    return {
        "call_id": expl.record.call_id,
        "mmg": expl.record.mmg,
        "version": expl.version.version,
        "version_found": expl.found,
        "steps": [
            {
                "stage": s.stage.value,
                "detail": s.detail,
                "route": s.decision.route.value,
                "rule": s.decision.rule,
            }
            for s in expl.steps
        ],
        "rule": expl.final.rule,
        "route": expl.final.route.value,
        "recorded": {"route": expl.record.route.value, "rule": expl.record.rule},
        "matches": expl.matches,
        "notes": list(expl.notes),
    }


def run_explain(args: argparse.Namespace) -> int:
    """``regulator explain --call-id ID [--json]``: exit 0 if the replay gives the
    recorded decision, 3 if it differs, 1 if the call cannot be explained."""
    from regulator.settings import Settings
    from regulator.storage import open_store

    async def work() -> Explanation:
        store = open_store(Settings())
        await store.open()
        try:
            return await explain_call(store, args.call_id)
        finally:
            await store.close()

    try:
        expl = asyncio.run(work())
    except ExplainError as exc:
        print(f"erreur : {exc}", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"erreur : stockage indisponible : {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(as_json(expl), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render_text(expl))
    return 0 if expl.matches else 3


__all__ = [
    "ExplainError",
    "Explanation",
    "as_json",
    "explain_call",
    "render_text",
    "replay",
    "run_explain",
]
