"""Oracle for NCCOs: the pydantic NCCO models of Vonage's own Python SDK (``vonage-voice``).

Each action is validated by the SDK model of its ``action`` (which enforces, among
others, that a ``connect`` has ``from`` or ``randomFromNumber``, that numbers are bare
MSISDNs and SIP URIs start with ``sip:``), then dumped back the way the SDK would send
it: the dump must be the action as we wrote it, so a key the SDK does not know (a
typo, an invented option) fails too, instead of being silently ignored.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel
from vonage_voice.models.ncco import (
    Connect,
    Conversation,
    Input,
    Notify,
    Record,
    Stream,
    Talk,
    Transfer,
    Wait,
)

_MODELS: dict[str, type[BaseModel]] = {
    "connect": Connect,
    "conversation": Conversation,
    "input": Input,
    "notify": Notify,
    "record": Record,
    "stream": Stream,
    "talk": Talk,
    "transfer": Transfer,
    "wait": Wait,
}


class NccoRejected(AssertionError):
    """An NCCO the SDK's models refuse (or would send differently)."""


def check_action(action: dict[str, Any]) -> None:
    """Raise :class:`NccoRejected` unless the SDK accepts ``action`` exactly as it is."""
    kind = action.get("action")
    model = _MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise NccoRejected(f"unknown NCCO action {kind!r}")
    # The SDK names the field ``from_`` (``from`` on the wire, a serialisation alias only).
    fields = {("from_" if k == "from" else k): v for k, v in action.items()}
    try:
        parsed = model.model_validate(fields)
    except Exception as exc:  # pydantic.ValidationError or the SDK's NccoActionError
        raise NccoRejected(f"{kind}: {exc}") from None
    again = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
    if again != action:
        raise NccoRejected(f"{kind}: the SDK would send {again!r}, not {action!r}")


def check_ncco(body: bytes) -> list[dict[str, Any]]:
    """The NCCO in ``body``, after checking every action against the SDK's models."""
    ncco = orjson.loads(body)
    if not isinstance(ncco, list) or not ncco:
        raise NccoRejected(f"an NCCO is a non-empty list of actions, got {ncco!r}")
    for action in ncco:
        if not isinstance(action, dict):
            raise NccoRejected(f"an NCCO action is an object, got {action!r}")
        check_action(action)
    return ncco
