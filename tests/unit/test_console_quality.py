"""The regulation console's figures of the day: French percentages, the MMG's day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from regulator.web.console.quality import display, local_day, percent

PARIS = ZoneInfo("Europe/Paris")


def hours(start: datetime, end: datetime) -> timedelta:
    """Elapsed time (in UTC: Python subtracts two datetimes of one zone as wall times)."""
    return end.astimezone(UTC) - start.astimezone(UTC)


@pytest.mark.parametrize(
    ("share", "text"),
    [
        (None, "—"),
        (0.0, "0\u00a0%"),
        (0.25, "25\u00a0%"),
        (0.875, "87,5\u00a0%"),
        (0.8333, "83,3\u00a0%"),
        (1.0, "100\u00a0%"),
    ],
)
def test_shares_are_written_the_french_way(share: float | None, text: str) -> None:
    assert percent(share) == text


def test_the_day_is_the_mmgs_local_day_dst_days_included() -> None:
    # 00:30 UTC on 25 November is 01:30 in Paris: the 25th there.
    start, end = local_day(datetime(2026, 11, 25, 0, 30, tzinfo=UTC), PARIS)
    assert (start.isoformat(), hours(start, end)) == (
        "2026-11-25T00:00:00+01:00",
        timedelta(hours=24),
    )
    # The same instant is still the 24th in Martinique (UTC-4).
    start, _ = local_day(datetime(2026, 11, 24, 23, 30, tzinfo=UTC), ZoneInfo("America/Martinique"))
    assert start.isoformat() == "2026-11-24T00:00:00-04:00"
    # Clocks go back on 25 October 2026 in Paris: a 25-hour day; forward on 29 March: 23.
    start, end = local_day(datetime(2026, 10, 25, 12, 0, tzinfo=UTC), PARIS)
    assert hours(start, end) == timedelta(hours=25)
    start, end = local_day(datetime(2026, 3, 29, 12, 0, tzinfo=UTC), PARIS)
    assert hours(start, end) == timedelta(hours=23)


def test_the_console_shows_four_columns_of_the_block() -> None:
    block = {"offered": 12, "answer_rate": 0.9167, "qs60": 0.75, "waiting": 3, "answered": 11}
    assert display(block) == {
        "offered": "12",
        "answer_rate": "91,7\u00a0%",
        "qs60": "75\u00a0%",
        "waiting": "3",
    }
