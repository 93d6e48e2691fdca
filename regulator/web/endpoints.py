"""The shape of one row of the route table (:mod:`regulator.web.routes`): a path, its
handler, who may call it, and what the OpenAPI document says of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Param:
    """One documented parameter (OpenAPI ``parameters``)."""

    name: str
    where: str  # "path", "query" or "header"
    schema: Mapping[str, Any]
    required: bool = False


@dataclass(frozen=True, slots=True)
class Doc:
    """What the OpenAPI document says of one operation.

    ``path``: the documented path when it is not the route's (one route, several
    documented actions: ``/api/v1/referrals/{id}/{action}``). ``response``: the model
    of the success body (None: ``content`` says what it is). ``errors``: the error
    statuses it answers with the ``Error`` body. ``also``: other answers (status →
    description).
    """

    summary: str
    ok: int = 200
    response: type[BaseModel] | None = None
    content: str = "application/json"
    body: type[BaseModel] | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    also: Mapping[int, str] = field(default_factory=dict)
    path: str | None = None
    public: bool = False


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One route: ``path`` is the full path as clients call it.

    ``public``: served without a token or session (others answer 401, or send a
    console page to the sign-in form). ``json``: a console route whose errors are JSON
    (it is fetched by a page's script). ``docs``: its OpenAPI operations.
    ``limited``: False for the sign-in routes, which the rate limiter lets through
    (the form is never refused; the post charges its own budget once the token is
    read: :mod:`regulator.web.limits`).
    """

    method: str
    path: str
    handler: Handler
    public: bool = False
    json: bool = False
    docs: tuple[Doc, ...] = ()
    limited: bool = True
