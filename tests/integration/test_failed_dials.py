"""Failed dials on every platform: the destination given last did not answer.

What follows a failure: desk or pharmacy → centre 15; centre 15 → the desk once where
the protocol allows overflow; otherwise the "raccrochez et composez le 15"
announcement. No destination is ever offered twice for one call.
"""

from __future__ import annotations

from typing import Any

from regulator.web import keys
from tests.integration.conftest import (
    FRONT_DESK_NIMES,
    NIMES,
    PROFESSIONAL_NIMES,
    REGULATION_NIMES,
    AppClient,
    post_generic,
)

CALLER = "+33611223344"
PHARMACY_NIMES = "+33466333333"


async def _generic(client: AppClient, call_id: str, caller: str, **extra: Any) -> dict[str, Any]:
    status, data = await post_generic(
        client, "/hooks/generic/call", {"call_id": call_id, "from": caller, "to": NIMES, **extra}
    )
    assert status == 200, data
    assert isinstance(data, dict)
    return data


async def test_generic_professional_whose_desk_dial_fails_goes_to_centre_15(
    client: AppClient,
) -> None:
    first = await _generic(client, "g-desk", PROFESSIONAL_NIMES)
    assert (first["route"], first["destination"]["number"]) == ("direct_access", FRONT_DESK_NIMES)
    await client.app[keys.WRITER].flush()
    after = await _generic(client, "g-desk", PROFESSIONAL_NIMES, stage="dial_failed")
    assert (after["route"], after["ground"], after["destination"]["number"]) == (
        "regulation",
        None,
        REGULATION_NIMES,
    ), after["rule"]


async def test_generic_caller_whose_pharmacy_dial_fails_goes_to_centre_15(
    client: AppClient,
) -> None:
    await _generic(client, "g-ph", CALLER)
    first = await _generic(client, "g-ph", CALLER, stage="digits", digits="2")
    assert (first["route"], first["destination"]["number"]) == ("pharmacy", PHARMACY_NIMES)
    await client.app[keys.WRITER].flush()
    after = await _generic(client, "g-ph", CALLER, stage="dial_failed")
    assert (after["route"], after["ground"], after["destination"]["number"]) == (
        "regulation",
        None,
        REGULATION_NIMES,
    ), after["rule"]
