"""``POST /console/regulation/referrals``: the regulation console's referral form.

The body is the API's (``POST /api/v1/referrals``) plus ``confirm_urgency``. A referral
of degree P0 or P1 (:data:`regulator.core.referrals.CONFIRMED_URGENCIES`) is created
only with ``confirm_urgency: true``: the page's script asks the regulator first, and a
post without it (a script of an older page, a slip) gets the form back with a French
422 on the urgency field, nothing created. Idempotency, validation and the event are
the API's own (:func:`regulator.web.referrals.save_new_referral`); the API itself is
unchanged: a regulation software posting there is its own confirmation.
"""

from __future__ import annotations

from typing import Final

import orjson
from aiohttp import web

from regulator.core.referrals import needs_confirmation
from regulator.errors import Unprocessable
from regulator.web.access import Permission, principal, require_mmg
from regulator.web.referrals import idempotency_key, save_new_referral
from regulator.web.schemas import ReferralIn, parse_body

#: The form's field that carries the regulator's confirmation.
CONFIRM_FIELD: Final = "confirm_urgency"


def _confirmation(raw: bytes) -> tuple[bool, bytes]:
    """(whether the body confirms, the body without :data:`CONFIRM_FIELD`). A body that
    is not a JSON object is left as it is, for :func:`parse_body` to explain."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False, raw
    if not isinstance(data, dict) or CONFIRM_FIELD not in data:
        return False, raw
    value = data.pop(CONFIRM_FIELD)
    if not isinstance(value, bool):
        raise Unprocessable(
            f"Champ(s) invalide(s) : {CONFIRM_FIELD} (true ou false attendu).",
            errors=[
                {
                    "field": CONFIRM_FIELD,
                    "value": str(value)[:32],
                    "message": "true ou false attendu",
                }
            ],
        )
    return value, orjson.dumps(data)


async def referral_form(request: web.Request) -> web.Response:
    """Create the form's referral, once confirmed when its urgency asks for it."""
    principal(request)
    key = idempotency_key(request)
    confirmed, raw = _confirmation(await request.read())
    body = parse_body(ReferralIn, raw)
    _, proto = require_mmg(request, Permission.REGULATE, body.mmg, source="body")
    if needs_confirmation(body.urgency) and not confirmed:
        raise Unprocessable(
            f"Orientation non envoyée : une urgence {body.urgency} vers « {proto.name} » "
            "doit être confirmée. Renvoyez le formulaire et confirmez, ou choisissez un "
            "autre degré d'urgence.",
            errors=[
                {
                    "field": "urgency",
                    "value": body.urgency,
                    "message": f"urgence {body.urgency} : confirmation requise avant l'envoi",
                }
            ],
            confirm_required=True,
        )
    return await save_new_referral(request, body, key)
