"""Regulated referrals: the explicit state machine, and visits for persons seen.

::

    pending ──ack──▶ acknowledged ──arrived──▶ arrived ──outcome──▶ completed
       │                 │
       ├──cancel─────────┴──▶ cancelled
       └──no_show (expected_at + delay passed)──▶ no_show

``arrived`` creates the visit (channel ``regulation``, the referral's case_id and
tiers payant) that the persons-seen indicators count; ``outcome`` records its
outcome and acts on that same visit.
Every other move is refused with a French explanation (HTTP 409).
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from regulator.core.indicators import local_facts
from regulator.core.labels import STATUS_LABELS
from regulator.core.models import (
    Outcome,
    Referral,
    ReferralEvent,
    ReferralStatus,
    Visit,
    VisitChannel,
)
from regulator.core.protocol import Protocol

S = ReferralStatus


class Action(StrEnum):
    ACK = "ack"
    ARRIVED = "arrived"
    OUTCOME = "outcome"
    CANCEL = "cancel"
    NO_SHOW = "no_show"


#: Statuses in which the patient is still expected: the direct-access ground on the
#: phone, the desk's "en attente" counter, the no-show sweeper. The one definition.
OPEN_STATUSES = frozenset({S.PENDING, S.ACKNOWLEDGED})

#: Referrals on the front desk's board: still expected, or arrived with no outcome yet.
ON_THE_DESK = OPEN_STATUSES | {S.ARRIVED}

#: Degrees of urgency (``core/labels.URGENCIES``) the regulation console asks its
#: regulator to confirm before sending the patient to an MMG: the two highest, for
#: which a GP clinic seldom is the place. The API takes every degree as it comes.
CONFIRMED_URGENCIES = frozenset({"P0", "P1"})


def needs_confirmation(urgency: str | None) -> bool:
    """Whether a referral of this degree of urgency is sent only once confirmed."""
    return urgency in CONFIRMED_URGENCIES


#: action → (statuses it may start from, status it leads to)
TRANSITIONS: dict[Action, tuple[frozenset[ReferralStatus], ReferralStatus]] = {
    Action.ACK: (frozenset({S.PENDING}), S.ACKNOWLEDGED),
    Action.ARRIVED: (OPEN_STATUSES, S.ARRIVED),
    Action.OUTCOME: (frozenset({S.ARRIVED}), S.COMPLETED),
    Action.CANCEL: (OPEN_STATUSES, S.CANCELLED),
    Action.NO_SHOW: (OPEN_STATUSES, S.NO_SHOW),
}

ACTION_LABELS: dict[Action, str] = {
    Action.ACK: "accuser réception",
    Action.ARRIVED: "marquer le patient arrivé",
    Action.OUTCOME: "enregistrer l'issue",
    Action.CANCEL: "annuler",
    Action.NO_SHOW: "déclarer le patient non venu",
}


class TransitionError(Exception):
    """An impossible move; ``message`` is French, for the person who tried it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


# ------------------------------------------------------------------ tiers payant


@dataclass(frozen=True, slots=True)
class TiersPayant:
    """Whether the patient pays nothing up front, and why (French, for the desk)."""

    value: bool
    reason: str


def is_regulated(channel: VisitChannel) -> bool:
    """Access regulated beforehand by the PDS regulation (centre 15 / SAS)."""
    return channel is VisitChannel.REGULATION


def tiers_payant_rule(regulated: bool, chosen: bool | None = None) -> TiersPayant:
    """Tiers payant by the circular's rule, unless ``chosen`` says otherwise.

    1. Regulated access (an arrived referral, a ``regulation`` visit): tiers payant —
       the circular: payment "doi[t] s'effectuer selon le tiers payant lorsque
       l'accès à la MMG a fait l'objet d'une régulation".
    2. Direct access (walk-in, ED reorientation, other): no tiers payant by
       default; local agreements may grant it case by case.
    3. A value chosen explicitly wins; when it differs from the rule the reason
       says so. A stored value is read back the same way, so the same reason comes
       out of the record.
    """
    default = regulated
    value = default if chosen is None else chosen
    if regulated:
        if value:
            return TiersPayant(True, "accès régulé par le centre 15 / SAS : tiers payant")
        return TiersPayant(
            False, "accès régulé, mais tiers payant écarté explicitement pour ce patient"
        )
    if value:
        return TiersPayant(True, "accès direct : tiers payant accordé explicitement")
    return TiersPayant(False, "accès direct (hors régulation préalable) : pas de tiers payant")


def new_referral(
    *,
    mmg: str,
    case_id: str,
    patient_display_name: str,
    created_by: str,
    now: datetime,
    patient_age_band: str | None = None,
    callback_number: str | None = None,
    reason: str | None = None,
    urgency: str | None = None,
    expected_at: datetime | None = None,
    tiers_payant: bool | None = None,
    note: str = "",
) -> Referral:
    """A fresh referral in ``pending``; tiers payant unless ``tiers_payant=False``."""
    return Referral(
        id=new_id("ref"),
        mmg=mmg,
        case_id=case_id,
        patient_display_name=patient_display_name,
        status=S.PENDING,
        created_at=now,
        updated_at=now,
        created_by=created_by,
        patient_age_band=patient_age_band,
        callback_number=callback_number,
        reason=reason,
        urgency=urgency,
        expected_at=expected_at,
        tiers_payant=tiers_payant_rule(regulated=True, chosen=tiers_payant).value,
        note=note,
        history=(ReferralEvent(S.PENDING, now, created_by),),
    )


def make_visit(
    protocol: Protocol,
    *,
    channel: VisitChannel,
    at: datetime,
    outcome: Outcome | None = None,
    acts: int = 0,
    age_band: str | None = None,
    reason: str | None = None,
    referral_id: str | None = None,
    visit_id: str | None = None,
    case_id: str | None = None,
    tiers_payant: bool | None = None,
) -> Visit:
    """A visit with month, hour and day type computed in the MMG's calendar.

    ``tiers_payant`` left to None follows :func:`tiers_payant_rule` for the channel.
    """
    month, hour = local_facts(at, protocol.tz)
    day = at.astimezone(protocol.tz).date()
    return Visit(
        id=visit_id or new_id("vis"),
        mmg=protocol.id,
        channel=channel,
        at=at,
        month=month,
        day_type=protocol.schedule.day_type(day),
        hour=hour,
        outcome=outcome,
        acts=acts,
        age_band=age_band,
        reason=reason,
        referral_id=referral_id,
        case_id=case_id or None,
        tiers_payant=tiers_payant_rule(is_regulated(channel), tiers_payant).value,
    )


def apply(
    referral: Referral,
    action: Action,
    *,
    protocol: Protocol,
    now: datetime,
    by: str,
    outcome: Outcome | None = None,
    acts: int | None = None,
    no_show_after: timedelta = timedelta(hours=3),
    existing_visit: Visit | None = None,
) -> tuple[Referral, Visit | None]:
    """Apply ``action``; return the new referral and the visit to write (if any).

    Raises :class:`TransitionError` for impossible moves.
    """
    allowed, target = TRANSITIONS[action]
    if referral.status not in allowed:
        raise TransitionError(
            f"Impossible de {ACTION_LABELS[action]} : l'orientation est "
            f"« {STATUS_LABELS[referral.status]} »."
        )
    visit: Visit | None = None
    changes: dict[str, object] = {}
    if action is Action.NO_SHOW:
        reference = referral.expected_at or referral.created_at
        if now < reference + no_show_after:
            due = reference + no_show_after
            raise TransitionError(
                "Trop tôt pour déclarer le patient non venu : possible à partir de "
                f"{due.astimezone(protocol.tz):%d/%m/%Y %H:%M}."
            )
    if action is Action.ARRIVED:
        visit = make_visit(
            protocol,
            channel=VisitChannel.REGULATION,
            at=now,
            age_band=referral.patient_age_band,
            reason=referral.reason,
            referral_id=referral.id,
            case_id=referral.case_id,
            tiers_payant=referral.tiers_payant,
        )
        changes["visit_id"] = visit.id
    if action is Action.OUTCOME:
        if outcome is None:
            raise TransitionError("L'issue de la consultation est obligatoire.")
        acts = 1 if acts is None else acts
        changes["outcome"] = outcome
        changes["acts"] = acts
        if existing_visit is not None:
            visit = dataclasses.replace(existing_visit, outcome=outcome, acts=acts)
        else:  # arrived before visits were linked: rebuild it from the arrival time
            arrived_at = next(
                (e.at for e in reversed(referral.history) if e.status is S.ARRIVED), now
            )
            visit = make_visit(
                protocol,
                channel=VisitChannel.REGULATION,
                at=arrived_at,
                outcome=outcome,
                acts=acts,
                age_band=referral.patient_age_band,
                reason=referral.reason,
                referral_id=referral.id,
                visit_id=referral.visit_id,
                case_id=referral.case_id,
                tiers_payant=referral.tiers_payant,
            )
            changes["visit_id"] = visit.id
    updated = dataclasses.replace(
        referral,
        status=target,
        updated_at=now,
        version=referral.version + 1,
        history=(*referral.history, ReferralEvent(target, now, by)),
        **changes,  # type: ignore[arg-type]
    )
    return updated, visit


def month_closed(month: str, now: datetime, tz: ZoneInfo) -> bool:
    """True if ``month`` (YYYY-MM) counts as exported: before the previous month in the
    MMG's time zone.

    The monthly indicators are exported in the first days of the next month, so the
    current and the previous month stay open to the front desk (a visit recorded late
    on the 31st, a correction on the 2nd); anything older has been sent to the ARS and
    changing it needs the coordinator (who re-exports), with an audit line.
    """
    local = now.astimezone(tz)
    index = local.year * 12 + local.month - 1
    year, mon = divmod(index - 1, 12)
    return month < f"{year:04d}-{mon + 1:02d}"


def overdue(referral: Referral, now: datetime, no_show_after: timedelta) -> bool:
    """True if the patient is still expected but well past the expected time."""
    if referral.status not in OPEN_STATUSES:
        return False
    reference = referral.expected_at or referral.created_at
    return now >= reference + no_show_after
