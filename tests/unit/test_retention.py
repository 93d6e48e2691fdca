"""Retention of call records: purged after N calendar months, aggregates kept."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from regulator.web.app import retention_cutoff


@pytest.mark.parametrize(
    ("now", "months", "expected"),
    [
        (datetime(2026, 11, 24, 4, tzinfo=UTC), 13, datetime(2025, 10, 1, tzinfo=UTC)),
        (datetime(2026, 1, 5, tzinfo=UTC), 1, datetime(2025, 12, 1, tzinfo=UTC)),
        (datetime(2026, 12, 31, 23, 59, tzinfo=UTC), 12, datetime(2025, 12, 1, tzinfo=UTC)),
        (datetime(2026, 3, 1, tzinfo=UTC), 25, datetime(2024, 2, 1, tzinfo=UTC)),
    ],
)
def test_retention_cutoff_keeps_whole_calendar_months(
    now: datetime, months: int, expected: datetime
) -> None:
    assert retention_cutoff(now, months) == expected
