"""The JSON bodies the API answers, as pydantic models: one definition serves the
handlers (``ReferralOut.of(ref).model_dump()``) and the OpenAPI document.

Instants are ISO 8601 strings as :meth:`datetime.isoformat` writes them, enums their
values: exactly the JSON the API has always given.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from regulator.core.answer_quality import LABELS as QUALITY_LABELS
from regulator.core.labels import CHANNEL_LABELS, OUTCOME_PHRASES, STATUS_LABELS
from regulator.core.models import Referral, Visit
from regulator.core.referrals import is_regulated, tiers_payant_rule


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class PatientOut(_Out):
    display_name: str
    age_band: str | None = None


class ReferralStepOut(_Out):
    status: str
    at: str
    by: str


class ReferralOut(_Out):
    """A referral as the API shows it."""

    id: str
    mmg: str
    case_id: str
    status: str
    status_label: str
    patient: PatientOut
    callback_number: str | None
    reason: str | None
    urgency: str | None
    expected_at: str | None
    tiers_payant: bool
    tiers_payant_reason: str
    note: str
    outcome: str | None
    outcome_label: str | None
    acts: int | None
    visit_id: str | None
    created_at: str | None
    updated_at: str | None
    created_by: str
    version: int
    history: list[ReferralStepOut]

    @classmethod
    def of(cls, ref: Referral) -> ReferralOut:
        return cls(
            id=ref.id,
            mmg=ref.mmg,
            case_id=ref.case_id,
            status=ref.status.value,
            status_label=STATUS_LABELS[ref.status],
            patient=PatientOut(
                display_name=ref.patient_display_name, age_band=ref.patient_age_band
            ),
            callback_number=ref.callback_number,
            reason=ref.reason,
            urgency=ref.urgency,
            expected_at=_iso(ref.expected_at),
            tiers_payant=ref.tiers_payant,
            # A referral is regulated access by definition: the reason of the value.
            tiers_payant_reason=tiers_payant_rule(True, ref.tiers_payant).reason,
            note=ref.note,
            outcome=ref.outcome.value if ref.outcome else None,
            outcome_label=OUTCOME_PHRASES[ref.outcome] if ref.outcome else None,
            acts=ref.acts,
            visit_id=ref.visit_id,
            created_at=_iso(ref.created_at),
            updated_at=_iso(ref.updated_at),
            created_by=ref.created_by,
            version=ref.version,
            history=[
                ReferralStepOut(status=e.status.value, at=e.at.isoformat(), by=e.by)
                for e in ref.history
            ],
        )


class VisitOut(_Out):
    """A visit as the API shows it (the stored form: nothing in it is private)."""

    id: str
    mmg: str
    channel: str
    at: str
    month: str
    day_type: str
    hour: int
    outcome: str | None
    acts: int
    age_band: str | None
    reason: str | None
    referral_id: str | None
    case_id: str | None
    tiers_payant: bool
    channel_label: str
    tiers_payant_reason: str

    @classmethod
    def of(cls, visit: Visit) -> VisitOut:
        return cls(
            id=visit.id,
            mmg=visit.mmg,
            channel=visit.channel.value,
            at=visit.at.isoformat(),
            month=visit.month,
            day_type=visit.day_type.value,
            hour=visit.hour,
            outcome=visit.outcome.value if visit.outcome is not None else None,
            acts=visit.acts,
            age_band=visit.age_band,
            reason=visit.reason,
            referral_id=visit.referral_id,
            case_id=visit.case_id,
            tiers_payant=visit.tiers_payant,
            channel_label=CHANNEL_LABELS[visit.channel],
            tiers_payant_reason=tiers_payant_rule(
                is_regulated(visit.channel), visit.tiers_payant
            ).reason,
        )


class ReferralListOut(_Out):
    referrals: list[ReferralOut]
    count: int


class VisitListOut(_Out):
    visits: list[VisitOut]
    count: int


def _share(field: str) -> Any:
    return Field(ge=0, le=1, description=f"{QUALITY_LABELS[field]} : 0–1, null sans dénominateur")


def _count(field: str) -> Any:
    return Field(ge=0, description=QUALITY_LABELS[field])


def _seconds(field: str) -> Any:
    return Field(ge=0, description=f"{QUALITY_LABELS[field]} ; null sans appel décroché")


class QualityBlockOut(_Out):
    """The answer quality of one line (or one hour × day type of it), see
    ``core.answer_quality``: shares 0–1 or null, waits in seconds or null."""

    offered: Annotated[int, _count("offered")]
    answered: Annotated[int, _count("answered")]
    answer_rate: Annotated[float | None, _share("answer_rate")]
    answered_within_60s: Annotated[int, _count("answered_within_60s")]
    qs60: Annotated[float | None, _share("qs60")]
    qs60_of_answered: Annotated[float | None, _share("qs60_of_answered")]
    qs30: Annotated[float | None, _share("qs30")]
    abandoned: Annotated[int, _count("abandoned")]
    short_abandons: Annotated[int, _count("short_abandons")]
    wait_median_s: Annotated[float | None, _seconds("wait_median_s")]
    wait_p90_s: Annotated[float | None, _seconds("wait_p90_s")]


class LineQualityOut(QualityBlockOut):
    """One line's month, and ``by_hour``: day type → local hour ``"HH"`` → its block
    (only the hours and day types that had a leg)."""

    by_hour: dict[str, dict[str, QualityBlockOut]]


class AnswerQualityOut(_Out):
    """Were the callers answered, and how fast: one block per line."""

    short_abandon_s: float = Field(
        description="REGULATOR_SHORT_ABANDON_S : un raccroché plus tôt est un abandon court"
    )
    regulation: LineQualityOut
    front_desk: LineQualityOut


class ReportOut(_Out):
    """The monthly indicators (DESIGN.md §5 field names; see ``core.indicators``)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    mmg: str
    month: str
    calls_received: int
    calls_failsafe: int
    persons_seen: dict[str, Any]
    acts: int
    peaks: dict[str, Any]
    answer_quality: AnswerQualityOut


class DeadLetterOut(_Out):
    target: str
    event_id: str
    kind: str
    mmg: str
    attempts: int
    error: str | None
    died_at: str


class DeadLettersOut(_Out):
    dead: list[DeadLetterOut]
    count: int


class RedriveIn(BaseModel):
    """``POST /api/v1/outbox/redrive``: the target, and which of its dead letters (all
    of them when ``event_ids`` is absent)."""

    target: str
    event_ids: list[str] | None = None


class RedrivenOut(_Out):
    redriven: int


class ErrorOut(_Out):
    """Every error: a stable code, a French message, and what names the culprit."""

    model_config = ConfigDict(frozen=True, extra="allow")

    error: str
    message: str
