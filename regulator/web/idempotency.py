"""Idempotency-Key reuse: what a key remembers of its first request, and the 409 that
names the fields a reuse changed (as Stripe does)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import orjson
from pydantic import BaseModel

from regulator.errors import Conflict
from regulator.ports import IdempotencyMismatch


def _flatten(value: object, path: str, out: dict[str, object]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, datetime):
        out[path] = value.astimezone(UTC).isoformat()  # one instant, whatever the offset
    else:
        out[path] = value


def request_fingerprint(body: BaseModel) -> str:
    """What an Idempotency-Key remembers of the request it was first sent with: one
    short hash per field of the validated body (so a reuse can say which fields
    differ, as Stripe does, without keeping a second copy of the personal data)."""
    fields: dict[str, object] = {}
    _flatten(body.model_dump(), "", fields)
    digests = {
        name: hashlib.sha256(orjson.dumps(value, default=str)).hexdigest()[:16]
        for name, value in fields.items()
    }
    return orjson.dumps(digests, option=orjson.OPT_SORT_KEYS).decode()


def differing_fields(first: str, again: str) -> list[str]:
    """The fields whose values differ between two :func:`request_fingerprint`."""
    try:
        a, b = orjson.loads(first), orjson.loads(again)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(a, dict) or not isinstance(b, dict):
        return []
    return sorted(name for name in a.keys() | b.keys() if a.get(name) != b.get(name))


def reused_key(exc: IdempotencyMismatch, fingerprint: str, what: str) -> Conflict:
    fields = differing_fields(exc.fingerprint, fingerprint)
    listed = ", ".join(fields) if fields else "corps de la requête"
    return Conflict(
        f"Cette clé Idempotency-Key a déjà servi pour {what} avec d'autres valeurs "
        f"(champs différents : {listed}) ; rien n'a été modifié. Pour corriger, "
        "utilisez une nouvelle clé.",
        id=exc.existing_id,
        fields=fields,
    )
