"""pydantic's validation errors said in French on the server, chosen by error type."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from regulator.errors import Unprocessable
from regulator.web.schemas import (
    OutcomeIn,
    ReferralIn,
    VisitIn,
    french_message,
    parse_body,
    validation_errors,
)

REFERRAL: dict[str, Any] = {
    "mmg": "nimes",
    "case_id": "DRFR15030000077",
    "patient": {"display_name": "Mme L."},
}
VISIT: dict[str, Any] = {"mmg": "nimes", "channel": "direct", "outcome": "home"}


class Bounds(BaseModel):
    """Constraints the API models do not use yet, so that each type is covered."""

    model_config = ConfigDict(extra="forbid")
    name: str = "x"
    strict: Annotated[int, Field(gt=0, lt=10)] = 1
    short: Annotated[str, Field(min_length=3)] = "abc"


def errors_of(model: type[BaseModel], data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return {e["field"]: e["message"] for e in validation_errors(info.value)}


@pytest.mark.parametrize(
    ("model", "data", "field", "message"),
    [
        # missing
        (ReferralIn, {"mmg": "nimes", "case_id": "X"}, "patient", "Champ obligatoire."),
        # string_too_short with min_length 1: an empty required field
        (ReferralIn, REFERRAL | {"case_id": ""}, "case_id", "Champ obligatoire."),
        # string_too_short with a larger minimum
        (Bounds, {"short": "ab"}, "short", "Au moins 3 caractères."),
        # string_too_long
        (ReferralIn, REFERRAL | {"note": "x" * 501}, "note", "500 caractères au maximum."),
        # string_pattern_mismatch
        (VisitIn, VISIT | {"age_band": "vieux"}, "age_band", "Format invalide."),
        # string_type
        (Bounds, {"name": 3}, "name", "Texte attendu."),
        # int_parsing, int_from_float
        (OutcomeIn, {"outcome": "home", "acts": "deux"}, "acts", "Nombre entier attendu."),
        (
            OutcomeIn,
            {"outcome": "home", "acts": 1.5},
            "acts",
            "Nombre entier attendu (sans décimales).",
        ),
        # greater_than_equal, less_than_equal, greater_than, less_than
        (OutcomeIn, {"outcome": "home", "acts": -1}, "acts", "Doit être au moins 0."),
        (OutcomeIn, {"outcome": "home", "acts": 21}, "acts", "Doit être au plus 20."),
        (Bounds, {"strict": 0}, "strict", "Doit être supérieur à 0."),
        (Bounds, {"strict": 10}, "strict", "Doit être inférieur à 10."),
        # bool_parsing
        (
            ReferralIn,
            REFERRAL | {"tiers_payant": "peut-être"},
            "tiers_payant",
            "Oui ou non attendu.",
        ),
        # literal_error
        (
            ReferralIn,
            REFERRAL | {"urgency": "P9"},
            "urgency",
            "Valeur non autorisée (valeurs possibles : 'P0', 'P1', 'P2' ou 'P3').",
        ),
        # enum
        (
            OutcomeIn,
            {"outcome": "maison"},
            "outcome",
            "Valeur non autorisée (valeurs possibles : "
            "'home', 'emergency', 'hospitalised' ou 'other').",
        ),
        # datetime_parsing, timezone_aware
        (VisitIn, VISIT | {"at": "hier soir"}, "at", "Date et heure invalides."),
        (
            ReferralIn,
            REFERRAL | {"expected_at": "2026-11-24T21:30:00"},
            "expected_at",
            "Date et heure sans fuseau horaire.",
        ),
        # model_type
        (ReferralIn, REFERRAL | {"patient": "Mme L."}, "patient", "Objet JSON attendu."),
        # extra_forbidden
        (ReferralIn, REFERRAL | {"unexpected": 1}, "unexpected", "Champ non prévu."),
        # value_error: our own validators' French text, as a sentence
        (
            ReferralIn,
            REFERRAL | {"callback_number": "123"},
            "callback_number",
            "'123' n'est pas un numéro de téléphone.",
        ),
        (
            ReferralIn,
            REFERRAL | {"case_id": "DRFR\n1"},
            "case_id",
            "Caractères de contrôle interdits.",
        ),
    ],
)
def test_each_pydantic_error_type_gets_its_french_message(
    model: type[BaseModel], data: dict[str, Any], field: str, message: str
) -> None:
    assert errors_of(model, data)[field] == message


def test_an_unknown_error_type_never_shows_the_english_text() -> None:
    error: Any = {"type": "uuid_parsing", "loc": ("id",), "msg": "Input should be a UUID"}
    assert french_message(error) == "Valeur invalide."


def test_the_422_names_each_field_with_its_french_message() -> None:
    body = b'{"mmg": "nimes", "case_id": "X", "patient": {}, "urgency": "P9"}'
    with pytest.raises(Unprocessable) as info:
        parse_body(ReferralIn, body)
    payload = info.value.as_json()
    assert payload["error"] == "validation_error"
    assert payload["message"] == (
        "Champ(s) invalide(s) — patient.display_name : champ obligatoire ; "
        "urgency : valeur non autorisée (valeurs possibles : 'P0', 'P1', 'P2' ou 'P3')."
    )
    assert payload["errors"][1] == {
        "field": "urgency",
        "message": "Valeur non autorisée (valeurs possibles : 'P0', 'P1', 'P2' ou 'P3').",
        "value": "P9",
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"  ", "Corps de requête vide."), (b'{"mmg": ', "JSON invalide (ligne 1, colonne 9).")],
)
def test_empty_or_broken_json_is_explained_in_french(body: bytes, message: str) -> None:
    with pytest.raises(Unprocessable) as info:
        parse_body(ReferralIn, body)
    assert info.value.as_json()["errors"] == [{"field": "", "message": message}]
