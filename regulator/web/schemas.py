"""Request bodies of the JSON API (pydantic), their 422 mapping, and JSON views."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from regulator.core.models import Outcome, Referral, Visit
from regulator.core.phone import InvalidNumber, normalize
from regulator.errors import Unprocessable
from regulator.web.responses import ReferralOut, VisitOut


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
AgeBand = Annotated[str, Field(pattern=r"^\d{1,3}(-\d{1,3}|\+)$", max_length=8)]


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


def referral_json(ref: Referral) -> dict[str, Any]:
    """The public JSON view of a referral (:class:`~regulator.web.responses.ReferralOut`)."""
    return ReferralOut.of(ref).model_dump()


def visit_json(visit: Visit) -> dict[str, Any]:
    """The public JSON view of a visit (:class:`~regulator.web.responses.VisitOut`)."""
    return VisitOut.of(visit).model_dump()
