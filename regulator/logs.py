"""structlog set-up: JSON lines in production, coloured console in development.

Request-scoped fields (request_id, call_id, mmg…) travel in context variables
and are merged into every line; one canonical line is written per webhook.
Phone numbers are masked before logging (:func:`regulator.core.phone.mask`);
a last-resort processor masks any E.164-looking value left in a line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

from regulator.core.phone import mask

_E164 = re.compile(r"\+\d{8,15}")
_SECRET_KEYS = frozenset({"token", "authorization", "secret", "password", "cookie"})


def _scrub(value: Any) -> Any:
    if isinstance(value, str) and "+" in value:
        return _E164.sub(lambda m: mask(m.group(0)), value)
    return value


def scrub_numbers(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask phone numbers and drop secrets anywhere in a log line (defence in depth)."""
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "•••"
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def _dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure_logging(fmt: str = "json", level: str = "INFO") -> None:
    """Configure structlog and the standard library root logger once at start-up."""
    log_level = getattr(logging, level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        scrub_numbers,
    ]
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(log_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(
        level=log_level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def get_logger(name: str = "regulator") -> Any:
    return structlog.get_logger(name)
