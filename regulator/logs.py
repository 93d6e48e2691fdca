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
from typing import Any, cast

import orjson
import structlog
from structlog.typing import FilteringBoundLogger

from regulator.core.phone import mask

_E164 = re.compile(r"\+\d{8,15}")
_SECRET_KEYS = frozenset({"token", "authorization", "secret", "password", "cookie"})


def _mask_match(match: re.Match[str]) -> str:
    return mask(match.group(0))


def _scrub(value: Any) -> Any:
    if isinstance(value, str) and "+" in value:
        return _E164.sub(_mask_match, value)
    return value


def scrub_numbers(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask phone numbers and drop secrets anywhere in a log line (defence in depth)."""
    # Runs on every line (one per webhook): values are replaced in place — no new
    # keys, so iterating while assigning is safe — and only where something changes.
    for key, value in event_dict.items():
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "•••"
        elif isinstance(value, str) and "+" in value:
            event_dict[key] = _E164.sub(_mask_match, value)
    return event_dict


def _dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def _dumps_bytes(obj: Any, default: Any = None) -> bytes:
    return orjson.dumps(obj, default=default or str)


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
    factory: Any
    binary = getattr(sys.stderr, "buffer", None)
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        factory = structlog.PrintLoggerFactory(file=sys.stderr)
    elif binary is not None:
        # JSON lines as bytes straight from orjson to stderr's buffer: no decode and
        # re-encode per line (one line per webhook). Each line is still flushed.
        renderer = structlog.processors.JSONRenderer(serializer=_dumps_bytes)
        factory = structlog.BytesLoggerFactory(file=binary)
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
        factory = structlog.PrintLoggerFactory(file=sys.stderr)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(log_level),
        logger_factory=factory,
        # Module-level loggers bind their processors once instead of on every call.
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=log_level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def get_logger(name: str = "regulator") -> FilteringBoundLogger:
    """The service's logger for ``name``: events are snake_case names with key=values."""
    return cast(FilteringBoundLogger, structlog.get_logger(name))
