"""Request bodies of the JSON API (pydantic), their 422 mapping, and JSON views."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from regulator.core.models import Outcome, Referral, Visit
from regulator.core.phone import InvalidNumber, normalize
from regulator.core.referrals import STATUS_LABELS
from regulator.errors import Unprocessable
from regulator.storage.codec import visit_to_dict


def _phone(value: Any) -> Any:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("numéro de téléphone attendu (texte)")
    try:
        return normalize(value)
    except InvalidNumber:
        raise ValueError(f"{value!r} n'est pas un numéro de téléphone") from None


PhoneField = Annotated[str | None, BeforeValidator(_phone)]
AgeBand = Annotated[
    str, Field(pattern=r"^[0-9]{1,3}(-[0-9]{1,3}|\+)$", max_length=8)
]  # ASCII digits


def _printable(value: Any) -> Any:
    if isinstance(value, str) and not value.isprintable():
        raise ValueError("caractères de contrôle interdits")
    return value


def _text_block(value: Any) -> Any:
    if isinstance(value, str) and not value.replace("\n", "").replace("\t", "").isprintable():
        raise ValueError("caractères de contrôle interdits (hors retours à la ligne)")
    return value


Printable = BeforeValidator(_printable)
ShortText = Annotated[str, Field(min_length=1, max_length=80), Printable]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class PatientIn(_In):
    display_name: Annotated[str, Field(min_length=1, max_length=60), Printable]
    age_band: AgeBand | None = None


class ReferralIn(_In):
    """``POST /api/v1/referrals``."""

    mmg: Annotated[str, Field(min_length=1, max_length=63)]
    case_id: Annotated[str, Field(min_length=1, max_length=64), Printable]
    patient: PatientIn
    callback_number: PhoneField = None
    reason: ShortText | None = None
    urgency: Literal["P0", "P1", "P2", "P3"] | None = None
    expected_at: AwareDatetime | None = None
    tiers_payant: bool = False
    note: Annotated[str, Field(max_length=500), BeforeValidator(_text_block)] = ""


class OutcomeIn(_In):
    """``POST /api/v1/referrals/{id}/outcome``."""

    outcome: Outcome
    acts: Annotated[int, Field(ge=0, le=20)] = 1


class VisitIn(_In):
    """``POST /api/v1/visits``: a person seen without a regulated referral."""

    mmg: Annotated[str, Field(min_length=1, max_length=63)]
    channel: Literal["direct", "emergency_reorientation", "other"]
    outcome: Outcome
    acts: Annotated[int, Field(ge=0, le=20)] = 1
    at: AwareDatetime | None = None
    age_band: AgeBand | None = None
    reason: ShortText | None = None


M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], body: bytes) -> M:
    """Validate a JSON body; 422 naming every bad field (and its value) in French."""
    if not body.strip():
        raise Unprocessable(
            "Corps de requête JSON attendu.", errors=[{"field": "", "message": "corps vide"}]
        )
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Unprocessable(
            "Le corps de la requête n'est pas du JSON valide.",
            errors=[{"field": "", "message": str(exc)}],
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False):
            field = ".".join(str(p) for p in err["loc"])
            item: dict[str, Any] = {
                "field": field,
                "message": err["msg"].removeprefix("Value error, "),
            }
            if err.get("input") is not None and not isinstance(err["input"], dict | list):
                item["value"] = str(err["input"])[:80]
            errors.append(item)
        fields = ", ".join(e["field"] or "(corps)" for e in errors)
        raise Unprocessable(f"Champ(s) invalide(s) : {fields}.", errors=errors) from None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def referral_json(ref: Referral) -> dict[str, Any]:
    """The public JSON view of a referral."""
    return {
        "id": ref.id,
        "mmg": ref.mmg,
        "case_id": ref.case_id,
        "status": ref.status.value,
        "status_label": STATUS_LABELS[ref.status],
        "patient": {"display_name": ref.patient_display_name, "age_band": ref.patient_age_band},
        "callback_number": ref.callback_number,
        "reason": ref.reason,
        "urgency": ref.urgency,
        "expected_at": _iso(ref.expected_at),
        "tiers_payant": ref.tiers_payant,
        "note": ref.note,
        "outcome": ref.outcome.value if ref.outcome else None,
        "acts": ref.acts,
        "visit_id": ref.visit_id,
        "created_at": _iso(ref.created_at),
        "updated_at": _iso(ref.updated_at),
        "created_by": ref.created_by,
        "version": ref.version,
        "history": [
            {"status": e.status.value, "at": e.at.isoformat(), "by": e.by} for e in ref.history
        ],
    }


def visit_json(visit: Visit) -> dict[str, Any]:
    """The public JSON view of a visit (the stored form: nothing in it is private)."""
    return visit_to_dict(visit)
