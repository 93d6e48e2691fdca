"""Referrals and visits API: regulators send patients, front desks record who was seen."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from aiohttp import web

from regulator.core.indicators import local_facts, valid_month
from regulator.core.models import Referral, ReferralStatus, Visit, VisitChannel
from regulator.core.protocol import Protocol
from regulator.core.referrals import (
    OPEN_STATUSES,
    TRANSITIONS,
    Action,
    TransitionError,
    apply,
    make_visit,
    month_closed,
    new_referral,
    overdue,
)
from regulator.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from regulator.events import Events, ReferralChanged, VisitRecorded
from regulator.logs import get_logger
from regulator.ports import IdempotencyMismatch
from regulator.web import keys
from regulator.web.access import Permission, principal, require_mmg
from regulator.web.idempotency import request_fingerprint, reused_key
from regulator.web.middlewares import json_response
from regulator.web.schemas import (
    OutcomeIn,
    ReferralIn,
    VisitIn,
    parse_body,
    referral_json,
    visit_json,
)

log = get_logger("regulator.referrals")

#: Referrals the no-show sweeper reads per store query (it reads every open one).
_SWEEP_PAGE = 500

_EVENT_NAMES = {
    ReferralStatus.PENDING: "created",
    ReferralStatus.ACKNOWLEDGED: "acknowledged",
    ReferralStatus.ARRIVED: "arrived",
    ReferralStatus.COMPLETED: "completed",
    ReferralStatus.CANCELLED: "cancelled",
    ReferralStatus.NO_SHOW: "no_show",
}


def idempotency_key(request: web.Request) -> str | None:
    """The request's ``Idempotency-Key`` (stripped), None without one; 400 if malformed."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not 1 <= len(key) <= 128 or not key.isprintable():
        raise BadRequest(
            "En-tête Idempotency-Key invalide (1 à 128 caractères imprimables).",
            field="Idempotency-Key",
        )
    return key


def _notify(events: Events, ref: Referral) -> None:
    events.publish(ReferralChanged(ref, _EVENT_NAMES[ref.status]))


async def create_referral(request: web.Request) -> web.Response:
    principal(request)
    key = idempotency_key(request)
    body = parse_body(ReferralIn, await request.read())
    return await save_new_referral(request, body, key)


async def save_new_referral(
    request: web.Request, body: ReferralIn, key: str | None
) -> web.Response:
    """Create the referral of a validated body (the API's and the regulation console's
    form's): 201 with it, 200 with the one already created under ``key``."""
    who, proto = require_mmg(request, Permission.REGULATE, body.mmg, source="body")
    now = request.config_dict[keys.CLOCK].now()
    ref = new_referral(
        mmg=proto.id,
        case_id=body.case_id,
        patient_display_name=body.patient.display_name,
        patient_age_band=body.patient.age_band,
        callback_number=body.callback_number,
        reason=body.reason,
        urgency=body.urgency,
        expected_at=body.expected_at,
        tiers_payant=body.tiers_payant,
        note=body.note,
        created_by=who.name,
        now=now,
    )
    scoped = f"{who.name}:{key}" if key else None
    fingerprint = request_fingerprint(body)
    try:
        store = request.config_dict[keys.STORE]
        stored, created = await store.create_referral(ref, scoped, fingerprint)
    except IdempotencyMismatch as exc:
        raise reused_key(exc, fingerprint, "une orientation") from None
    if created:
        _notify(request.config_dict[keys.EVENTS], stored)
    elif (stored.mmg, stored.case_id, stored.patient_display_name) != (
        ref.mmg,
        ref.case_id,
        ref.patient_display_name,
    ):
        raise Conflict(
            "Cette clé Idempotency-Key a déjà servi pour une autre orientation "
            f"(dossier {stored.case_id}) : utilisez une nouvelle clé.",
            id=stored.id,
        )
    return json_response(referral_json(stored), status=201 if created else 200)


async def _load(request: web.Request) -> Referral:
    ref = await request.config_dict[keys.STORE].get_referral(request.match_info["id"])
    if ref is None:
        raise NotFound("Orientation introuvable.", id=request.match_info["id"])
    return ref


async def get_referral(request: web.Request) -> web.Response:
    who = principal(request)
    ref = await _load(request)
    if not who.can_see(ref.mmg):
        raise Forbidden(f"Le jeton « {who.name} » ne voit pas les orientations de {ref.mmg}.")
    return json_response(referral_json(ref))


async def _arrival_visit(request: web.Request, ref: Referral, proto: Protocol) -> Visit | None:
    if ref.visit_id is None:
        return None
    arrived = next((e.at for e in ref.history if e.status is ReferralStatus.ARRIVED), None)
    if arrived is None:
        return None
    month = local_facts(arrived, proto.tz)[0]
    for visit in await request.config_dict[keys.STORE].visits(ref.mmg, month):
        if visit.id == ref.visit_id:
            return visit
    return None


async def transition(request: web.Request) -> web.Response:
    who = principal(request)
    try:
        action = Action(request.match_info["action"])
    except ValueError:
        raise NotFound(f"Action inconnue : {request.match_info['action']!r}.") from None
    key = idempotency_key(request)
    raw = await request.read()
    outcome_in = parse_body(OutcomeIn, raw) if action is Action.OUTCOME else None
    store = request.config_dict[keys.STORE]
    settings = request.config_dict[keys.SETTINGS]
    for _attempt in range(3):
        ref = await _load(request)
        permission = Permission.CANCEL if action is Action.CANCEL else Permission.DESK
        _, proto = require_mmg(request, permission, ref.mmg)
        if key is not None and ref.status is TRANSITIONS[action][1]:
            return json_response(referral_json(ref))  # a retried request: same answer
        existing = await _arrival_visit(request, ref, proto) if action is Action.OUTCOME else None
        now = request.config_dict[keys.CLOCK].now()
        try:
            updated, visit = apply(
                ref,
                action,
                protocol=proto,
                now=now,
                by=who.name,
                outcome=outcome_in.outcome if outcome_in else None,
                acts=outcome_in.acts if outcome_in else None,
                no_show_after=timedelta(minutes=settings.referral_no_show_minutes),
                existing_visit=existing,
            )
        except TransitionError as exc:
            raise Conflict(exc.message, status=ref.status.value) from None
        # An outcome for a patient who arrived in an exported month changes that month.
        closed = visit is not None and month_closed(visit.month, now, proto.tz)
        if closed and visit is not None and not who.can_amend_closed_month(ref.mmg):
            raise Forbidden(
                f"Le mois {visit.month} de {ref.mmg} est clos (indicateurs déjà transmis) : "
                "seul un jeton coordinateur peut y modifier un passage."
            )
        if await store.save_referral(updated, ref.version, visit):
            if closed and visit is not None:
                log.warning(
                    "audit_visit_in_closed_month",
                    by=who.name,
                    mmg=ref.mmg,
                    month=visit.month,
                    visit_id=visit.id,
                    referral_id=ref.id,
                )
            _notify(request.config_dict[keys.EVENTS], updated)
            return json_response(referral_json(updated))
    raise Conflict("L'orientation a été modifiée entre-temps ; rechargez-la et réessayez.")


def _statuses(raw: str | None) -> frozenset[ReferralStatus] | None:
    if not raw:
        return None
    out = set()
    for item in raw.split(","):
        try:
            out.add(ReferralStatus(item.strip()))
        except ValueError:
            known = ", ".join(s.value for s in ReferralStatus)
            raise BadRequest(
                f"Statut inconnu {item!r} (connus : {known}).", field="status"
            ) from None
    return frozenset(out)


def _limit(raw: str | None, default: int = 200) -> int:
    if raw is None:
        return default
    # ASCII digits only: str.isdigit() also accepts "²" (int() then fails) and "١".
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
        raise BadRequest("limit doit être un entier entre 1 et 1000.", field="limit", value=raw)
    return int(raw)


async def list_referrals(request: web.Request) -> web.Response:
    who = principal(request)
    mmg = request.query.get("mmg") or None
    statuses = _statuses(request.query.get("status"))
    limit = _limit(request.query.get("limit"))
    if mmg is not None and not who.can_see(mmg):
        raise Forbidden(f"Le jeton « {who.name} » ne voit pas les orientations de {mmg}.")
    # The scope goes to the store: filtered before the limit, not after.
    refs = await request.config_dict[keys.STORE].list_referrals(
        mmg=mmg, mmgs=who.visible_mmgs(), statuses=statuses, limit=limit
    )
    visible = [referral_json(r) for r in refs if who.can_see(r.mmg)]
    return json_response({"referrals": visible, "count": len(visible)})


async def create_visit(request: web.Request) -> web.Response:
    principal(request)
    key = idempotency_key(request)
    body = parse_body(VisitIn, await request.read())
    # Desk or coordinator of this MMG; which of them may write this month is below.
    who, proto = require_mmg(request, Permission.VISITS, body.mmg, source="body")
    now = request.config_dict[keys.CLOCK].now()
    at = body.at or now
    if at > now + timedelta(minutes=5):
        raise Unprocessable(
            "La date de passage est dans le futur.",
            errors=[{"field": "at", "value": at.isoformat(), "message": "date future"}],
        )
    month = local_facts(at, proto.tz)[0]
    closed = month_closed(month, now, proto.tz)
    if closed and not who.can_amend_closed_month(proto.id):
        raise Forbidden(
            f"Le mois {month} de {proto.id} est clos (indicateurs déjà transmis) : "
            "seul un jeton coordinateur peut y enregistrer un passage.",
            field="at",
        )
    if not closed and not who.can_desk(proto.id):
        raise Forbidden(f"Le jeton « {who.name} » n'est pas celui de l'accueil de {proto.id}.")
    channel = VisitChannel(body.channel)
    if body.case_id is not None and channel is not VisitChannel.REGULATION:
        raise Unprocessable(
            "Le numéro de dossier de régulation ne concerne que les patients adressés "
            "par la régulation.",
            errors=[
                {"field": "case_id", "value": body.case_id, "message": "réservé à la régulation"}
            ],
        )
    visit = make_visit(
        proto,
        channel=channel,
        case_id=body.case_id,
        tiers_payant=body.tiers_payant,
        at=at,
        outcome=body.outcome,
        acts=body.acts,
        age_band=body.age_band,
        reason=body.reason,
    )
    scoped = f"{who.name}:{key}" if key else None
    fingerprint = request_fingerprint(body)
    try:
        store = request.config_dict[keys.STORE]
        stored, created = await store.add_visit(visit, scoped, fingerprint)
    except IdempotencyMismatch as exc:
        raise reused_key(exc, fingerprint, "un passage") from None
    if created and closed:
        log.warning(
            "audit_visit_in_closed_month",
            by=who.name,
            mmg=stored.mmg,
            month=stored.month,
            visit_id=stored.id,
            channel=stored.channel.value,
        )
    if created:
        request.config_dict[keys.EVENTS].publish(VisitRecorded(stored))
    return json_response(visit_json(stored), status=201 if created else 200)


async def list_visits(request: web.Request) -> web.Response:
    principal(request)
    mmg = request.query.get("mmg", "")
    if not mmg:
        raise BadRequest("Paramètre mmg obligatoire.", field="mmg")
    _, proto = require_mmg(request, Permission.VISITS, mmg)
    # Default: the MMG's current month, in its own time zone (not UTC's).
    clock = request.config_dict[keys.CLOCK]
    month = request.query.get("month") or local_facts(clock.now(), proto.tz)[0]
    if not valid_month(month):
        raise BadRequest(
            f"Paramètre month invalide {month!r} : format AAAA-MM.", field="month", value=month
        )
    visits = await request.config_dict[keys.STORE].visits(proto.id, month)
    return json_response({"visits": [visit_json(v) for v in visits], "count": len(visits)})


async def no_show_sweeper(app: web.Application) -> AsyncIterator[None]:
    """Marks referrals whose patient never came, ``referral_no_show_minutes`` after expected."""

    async def sweep_forever() -> None:
        while True:
            await asyncio.sleep(60)
            with contextlib.suppress(Exception):
                await sweep_no_shows(app)

    task = asyncio.create_task(sweep_forever())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def sweep_no_shows(app: web.Application) -> int:
    """One pass of the no-show sweeper; returns how many referrals it closed."""
    store = app[keys.STORE]
    now = app[keys.CLOCK].now()
    delay = timedelta(minutes=app[keys.SETTINGS].referral_no_show_minutes)
    closed = 0
    # Every open referral, page by page (keyset: closing one does not shift the next
    # page): an old one left open would keep granting its callback number direct access.
    before: tuple[datetime, str] | None = None
    while True:
        page = await store.list_referrals(statuses=OPEN_STATUSES, limit=_SWEEP_PAGE, before=before)
        for ref in page:
            proto = app[keys.PROTOCOLS].current.get(ref.mmg)
            if proto is None or not overdue(ref, now, delay):
                continue
            try:
                updated, _ = apply(
                    ref, Action.NO_SHOW, protocol=proto, now=now, by="système", no_show_after=delay
                )
            except TransitionError:
                continue
            if await store.save_referral(updated, ref.version, None):
                _notify(app[keys.EVENTS], updated)
                closed += 1
        if len(page) < _SWEEP_PAGE:
            return closed
        before = (page[-1].created_at, page[-1].id)
