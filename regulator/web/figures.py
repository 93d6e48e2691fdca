"""``/api/v1/figures``: the figures a coordinator enters (ED passages, annual costs).

``PUT /api/v1/figures/{mmg}/{YYYY-MM}`` enters a month's ED passages before and after
midnight (with their source); ``PUT /api/v1/figures/{mmg}/{YYYY}`` a year's cost
table. ``GET`` on the same path answers the current entry and its history. Every
entry records who and when; the answer to a PUT names the value it replaced.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import Field

from regulator.core.figures import FIELDS, FigureEntry, FigureKind, kind_of_period
from regulator.errors import BadRequest
from regulator.web import keys
from regulator.web.access import Permission, principal, require_mmg
from regulator.web.middlewares import json_response
from regulator.web.schemas import Printable, _In, parse_body

Count = Annotated[int, Field(ge=0, le=10_000_000)]
Euros = Annotated[float, Field(ge=0, le=1_000_000_000)]
Source = Annotated[str, Field(min_length=1, max_length=200), Printable]
Note = Annotated[str, Field(max_length=500), Printable]


class EdPassagesIn(_In):
    """A month's ED passages in the establishments near the MMG, and where they come from."""

    before_midnight: Count
    after_midnight: Count
    source: Source
    note: Note = ""


class CostsIn(_In):
    """A year's real cost of the MMG by heading, in euros."""

    equipment: Euros
    operation: Euros
    staff: Euros
    services: Euros
    communication: Euros
    compensation: Euros
    source: Source | None = None
    note: Note = ""


_MODELS: dict[FigureKind, type[EdPassagesIn] | type[CostsIn]] = {
    FigureKind.ED_PASSAGES: EdPassagesIn,
    FigureKind.COSTS: CostsIn,
}


def _target(request: web.Request) -> tuple[str, FigureKind, str]:
    _, proto = require_mmg(request, Permission.FIGURES)
    mmg = proto.id
    period = request.match_info["period"]
    kind = kind_of_period(period)
    if kind is None or int(period[:4]) < 2000:
        raise BadRequest(
            f"Période invalide {period!r} : AAAA-MM (passages aux urgences) ou AAAA (coûts).",
            field="period",
            value=period,
        )
    return mmg, kind, period


def entry_json(entry: FigureEntry | None) -> dict[str, Any] | None:
    return None if entry is None else entry.to_dict()


async def put_figures(request: web.Request) -> web.Response:
    """``PUT /api/v1/figures/{mmg}/{period}``: enter (or correct) the figures."""
    mmg, kind, period = _target(request)
    body = parse_body(_MODELS[kind], await request.read())
    data = body.model_dump()
    entry = FigureEntry(
        mmg=mmg,
        kind=kind,
        period=period,
        values={name: data[name] for name in FIELDS[kind]},
        source=data["source"],
        note=data["note"],
        entered_by=principal(request).name,
        entered_at=request.config_dict[keys.CLOCK].now(),
    )
    previous = await request.config_dict[keys.STORE].put_figures(entry)
    return json_response(
        {"figures": entry_json(entry), "previous": entry_json(previous)},
        status=200 if previous is not None else 201,
    )


async def get_figures(request: web.Request) -> web.Response:
    """``GET /api/v1/figures/{mmg}/{period}``: the current entry (null) and its history."""
    mmg, kind, period = _target(request)
    store = request.config_dict[keys.STORE]
    current = await store.get_figures(mmg, kind, period)
    history = await store.figures_history(mmg, kind, period)
    return json_response(
        {
            "mmg": mmg,
            "kind": kind.value,
            "period": period,
            "figures": entry_json(current),
            "history": [e.to_dict() for e in history],
        }
    )
