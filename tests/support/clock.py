"""Local instants: ``paris("2026-11-24T21:00")`` is 21:00 in Paris, aware."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
REUNION = ZoneInfo("Indian/Reunion")


def local(tz: ZoneInfo, text: str, fold: int = 0) -> datetime:
    """An aware instant from a local wall-clock ISO text such as ``2026-05-14T10:00``."""
    return datetime.fromisoformat(text).replace(tzinfo=tz, fold=fold)


def paris(text: str) -> datetime:
    return local(PARIS, text)


def reunion(text: str) -> datetime:
    return local(REUNION, text)
