"""Request bodies of the JSON API (pydantic), their 422 mapping in French, and JSON views.

pydantic's own messages are English; :func:`french_message` picks a French one by
the error's ``type`` code, so every API client (the consoles too) reads French.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

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
    #: Left out (or null): the circular's rule decides — regulated access, tiers payant.
    tiers_payant: bool | None = None
    note: Annotated[str, Field(max_length=500), BeforeValidator(_text_block)] = ""


class OutcomeIn(_In):
    """``POST /api/v1/referrals/{id}/outcome``."""

    outcome: Outcome
    acts: Annotated[int, Field(ge=0, le=20)] = 1


class VisitIn(_In):
    """``POST /api/v1/visits``: a person seen without a referral in this system.

    ``regulation``: sent by centre 15 / SAS whose referral is not here (the regulator
    used their own software); ``case_id`` is then the regulation's case number, so a
    case is counted once even if its referral arrives here too.
    """

    mmg: Annotated[str, Field(min_length=1, max_length=63)]
    channel: Literal["regulation", "direct", "emergency_reorientation", "other"]
    case_id: Annotated[str, Field(min_length=1, max_length=64), Printable] | None = None
    #: Left out (or null): the circular's rule decides (``tiers_payant_rule``).
    tiers_payant: bool | None = None
    outcome: Outcome
    acts: Annotated[int, Field(ge=0, le=20)] = 1
    at: AwareDatetime | None = None
    age_band: AgeBand | None = None
    reason: ShortText | None = None


M = TypeVar("M", bound=BaseModel)


# ------------------------------------------------------- French validation messages


def _characters(count: object) -> str:
    return f"{count} caractère{'s' if isinstance(count, int) and count > 1 else ''}"


def _choices(ctx: Mapping[str, Any]) -> str:
    """pydantic's ``'a', 'b' or 'c'`` in French."""
    expected = str(ctx.get("expected", ""))
    head, sep, last = expected.rpartition(" or ")
    return f"{head} ou {last}" if sep else expected


def _sentence(text: str) -> str:
    text = text.strip() or "valeur invalide"
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?", "…")) else f"{text}."


def _value_error(ctx: Mapping[str, Any]) -> str:
    # Our own validators (_phone, _printable…) already raise French messages.
    return _sentence(str(ctx.get("error", "valeur invalide")))


#: pydantic's error ``type`` → the French message shown next to the field. Messages
#: that need the constraint read it from the error's ``ctx``.
_MESSAGES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "missing": lambda ctx: "Champ obligatoire.",
    "extra_forbidden": lambda ctx: "Champ non prévu.",
    "string_type": lambda ctx: "Texte attendu.",
    "string_too_short": lambda ctx: (
        "Champ obligatoire."
        if ctx.get("min_length") == 1
        else f"Au moins {_characters(ctx.get('min_length'))}."
    ),
    "string_too_long": lambda ctx: f"{_characters(ctx.get('max_length'))} au maximum.",
    "string_pattern_mismatch": lambda ctx: "Format invalide.",
    "int_type": lambda ctx: "Nombre entier attendu.",
    "int_parsing": lambda ctx: "Nombre entier attendu.",
    "int_from_float": lambda ctx: "Nombre entier attendu (sans décimales).",
    "greater_than_equal": lambda ctx: f"Doit être au moins {ctx.get('ge')}.",
    "greater_than": lambda ctx: f"Doit être supérieur à {ctx.get('gt')}.",
    "less_than_equal": lambda ctx: f"Doit être au plus {ctx.get('le')}.",
    "less_than": lambda ctx: f"Doit être inférieur à {ctx.get('lt')}.",
    "bool_type": lambda ctx: "Oui ou non attendu.",
    "bool_parsing": lambda ctx: "Oui ou non attendu.",
    "literal_error": lambda ctx: f"Valeur non autorisée (valeurs possibles : {_choices(ctx)}).",
    "enum": lambda ctx: f"Valeur non autorisée (valeurs possibles : {_choices(ctx)}).",
    "datetime_type": lambda ctx: "Date et heure invalides.",
    "datetime_parsing": lambda ctx: "Date et heure invalides.",
    "datetime_from_date_parsing": lambda ctx: "Date et heure invalides.",
    "timezone_aware": lambda ctx: "Date et heure sans fuseau horaire.",
    "model_type": lambda ctx: "Objet JSON attendu.",
    "model_attributes_type": lambda ctx: "Objet JSON attendu.",
    "dict_type": lambda ctx: "Objet JSON attendu.",
    "value_error": _value_error,
}


def field_name(loc: Sequence[int | str]) -> str:
    """``("patient", "display_name")`` → ``patient.display_name`` (the API's field names)."""
    return ".".join(str(part) for part in loc)


def french_message(error: ErrorDetails) -> str:
    """The French message for one pydantic error, chosen by its ``type`` (never the
    English ``msg``: an unknown type says "Valeur invalide.")."""
    say = _MESSAGES.get(error["type"])
    return say(error.get("ctx") or {}) if say is not None else "Valeur invalide."


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """The 422 ``errors`` list: field, French message, and the offending scalar value."""
    errors = []
    for err in exc.errors(include_url=False):
        item: dict[str, Any] = {"field": field_name(err["loc"]), "message": french_message(err)}
        if err.get("input") is not None and not isinstance(err["input"], dict | list):
            item["value"] = str(err["input"])[:80]
        errors.append(item)
    return errors


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def validation_summary(errors: Sequence[Mapping[str, Any]]) -> str:
    """One French sentence naming every bad field with its message (the 422 ``message``)."""
    parts = [
        f"{e['field'] or '(corps)'} : {_lower_first(e['message'].rstrip('.'))}" for e in errors
    ]
    return f"Champ(s) invalide(s) — {' ; '.join(parts)}."


def parse_body(model: type[M], body: bytes) -> M:
    """Validate a JSON body; 422 naming every bad field (and its value) in French."""
    if not body.strip():
        raise Unprocessable(
            "Corps de requête JSON attendu.",
            errors=[{"field": "", "message": "Corps de requête vide."}],
        )
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        where = f"ligne {exc.lineno}, colonne {exc.colno}"
        raise Unprocessable(
            "Le corps de la requête n'est pas du JSON valide.",
            errors=[{"field": "", "message": f"JSON invalide ({where})."}],
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = validation_errors(exc)
        raise Unprocessable(validation_summary(errors), errors=errors) from None


def referral_json(ref: Referral) -> dict[str, Any]:
    """The public JSON view of a referral (:class:`~regulator.web.responses.ReferralOut`)."""
    return ReferralOut.of(ref).model_dump()


def visit_json(visit: Visit) -> dict[str, Any]:
    """The public JSON view of a visit (:class:`~regulator.web.responses.VisitOut`)."""
    return VisitOut.of(visit).model_dump()
