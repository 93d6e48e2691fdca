"""The ``/hooks`` sub-app's handlers: signatures first, then always a valid answer.

- :mod:`.table`: every webhook path (platform, method, what it reports) and the adapters;
- :mod:`.handlers`: :class:`Hooks`, the one handler behind every row, fail-safe;
- :mod:`.wire`: the answer cache, reading a request, our callback URLs.
"""

from __future__ import annotations

from regulator.web.hooks.handlers import Hooks
from regulator.web.hooks.table import ADAPTERS, HOOK_ROUTES, SECRETS, HookRoute, Kind, Quiet
from regulator.web.hooks.wire import AnswerCache, parse_form

__all__ = [
    "ADAPTERS",
    "HOOK_ROUTES",
    "SECRETS",
    "AnswerCache",
    "HookRoute",
    "Hooks",
    "Kind",
    "Quiet",
    "parse_form",
]
