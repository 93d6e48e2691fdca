"""Which months count as exported: before the previous month, in the MMG's time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from regulator.core.referrals import month_closed

PARIS = ZoneInfo("Europe/Paris")
REUNION = ZoneInfo("Indian/Reunion")


@pytest.mark.parametrize(
    ("now", "tz", "month", "closed"),
    [
        (datetime(2026, 11, 24, 12, tzinfo=UTC), PARIS, "2026-11", False),
        (datetime(2026, 11, 24, 12, tzinfo=UTC), PARIS, "2026-10", False),
        (datetime(2026, 11, 24, 12, tzinfo=UTC), PARIS, "2026-09", True),
        (datetime(2026, 1, 5, 12, tzinfo=UTC), PARIS, "2025-12", False),
        (datetime(2026, 1, 5, 12, tzinfo=UTC), PARIS, "2025-11", True),
        # 30 November 21:00 UTC is already 1 December in Réunion: October closes there.
        (datetime(2026, 11, 30, 21, tzinfo=UTC), REUNION, "2026-10", True),
        (datetime(2026, 11, 30, 21, tzinfo=UTC), PARIS, "2026-10", False),
    ],
)
def test_a_month_is_closed_before_the_previous_local_month(
    now: datetime, tz: ZoneInfo, month: str, closed: bool
) -> None:
    assert month_closed(month, now, tz) is closed
