"""Opening hours: weekly slots, holiday and bridge slots, periods, overrides, time zones, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from regulator.core.models import DayType
from regulator.core.protocol import Protocol
from tests.support.clock import PARIS, REUNION, local, paris, reunion
from tests.unit.helpers import protocol, variant

MINUTE = timedelta(minutes=1)


def _open_minutes(proto: Protocol, first_day: date, days: int) -> int:
    """Open minutes between local midnights, counted by stepping through UTC instants."""
    tz = proto.tz
    start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=tz)
    end_day = first_day + timedelta(days=days)
    end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=tz)
    instant = start.astimezone(UTC)
    stop = end.astimezone(UTC)
    count = 0
    while instant < stop:
        if proto.schedule.state(instant).open:
            count += 1
        instant += MINUTE
    return count


@pytest.mark.parametrize(
    ("mmg", "monday", "hours"),
    [
        # The circular's 48 h week: 5 × 4 h + 12 h Saturday + 16 h Sunday.
        ("nimes", date(2026, 11, 16), 48),
        # Weeks containing the DST changes: slots are wall-clock, still 48 h.
        ("nimes", date(2026, 3, 23), 48),
        ("nimes", date(2026, 10, 19), 48),
        # Metz: 5 × 4 h + 10 h Saturday + 11 h Sunday.
        ("metz", date(2026, 11, 16), 41),
        # Saint-Denis (UTC+4): 5 × 3 h + 11 h Saturday + 15 h Sunday.
        ("saint-denis-reunion", date(2026, 11, 16), 41),
    ],
)
def test_plain_week_open_hours_sum_to_protocol_total(mmg: str, monday: date, hours: int) -> None:
    assert monday.weekday() == 0
    assert _open_minutes(protocol(mmg), monday, 7) == hours * 60


@pytest.mark.parametrize(
    ("mmg", "at", "is_open", "kind"),
    [
        # Plain weekday 20:00-24:00.
        ("nimes", "2026-11-17T19:59", False, DayType.WEEKDAY),
        ("nimes", "2026-11-17T20:00", True, DayType.WEEKDAY),
        ("nimes", "2026-11-17T23:59", True, DayType.WEEKDAY),
        ("nimes", "2026-11-18T00:00", False, DayType.WEEKDAY),
        # Saturday 12:00-24:00, Sunday 08:00-24:00.
        ("nimes", "2026-11-21T11:59", False, DayType.SATURDAY),
        ("nimes", "2026-11-21T12:00", True, DayType.SATURDAY),
        ("nimes", "2026-11-22T07:59", False, DayType.SUNDAY),
        ("nimes", "2026-11-22T08:00", True, DayType.SUNDAY),
        # Ascension Thursday and its bridge Friday and Saturday open at 08:00.
        ("nimes", "2026-05-14T07:59", False, DayType.HOLIDAY),
        ("nimes", "2026-05-14T08:00", True, DayType.HOLIDAY),
        ("nimes", "2026-05-15T10:00", True, DayType.BRIDGE),
        ("nimes", "2026-05-16T08:00", True, DayType.BRIDGE),
        ("nimes", "2026-05-16T07:59", False, DayType.BRIDGE),
        # Whit Monday.
        ("nimes", "2026-05-25T09:00", True, DayType.HOLIDAY),
        ("nimes", "2026-05-26T09:00", False, DayType.WEEKDAY),
        # Monday before Tuesday 14 July: bridge slots win over the summer period.
        ("nimes", "2026-07-13T10:00", True, DayType.BRIDGE),
        ("nimes", "2029-04-30T10:00", True, DayType.BRIDGE),
        ("nimes", "2029-04-23T10:00", False, DayType.WEEKDAY),
        # Good Friday: holiday slots in Moselle, a plain weekday in Nîmes.
        ("metz", "2026-04-03T10:00", True, DayType.HOLIDAY),
        ("metz", "2026-04-03T14:00", False, DayType.HOLIDAY),  # 13:00-15:00 break
        ("nimes", "2026-04-03T10:00", False, DayType.WEEKDAY),
        ("nimes", "2026-04-03T20:00", True, DayType.WEEKDAY),
        # 26 December in Moselle (holiday slots 09-13, 15-22) vs its Saturday slots.
        ("metz", "2026-12-26T09:30", True, DayType.HOLIDAY),
        ("metz", "2026-12-26T22:30", False, DayType.HOLIDAY),
        ("metz", "2026-12-19T22:30", True, DayType.SATURDAY),
    ],
)
def test_open_or_closed_at_local_wall_clock_time(
    mmg: str, at: str, is_open: bool, kind: DayType
) -> None:
    state = protocol(mmg).schedule.state(paris(at))
    assert (state.open, state.day_type) == (is_open, kind)


@pytest.mark.parametrize(
    ("at", "is_open", "kind"),
    [
        ("2026-12-31T19:59", False, DayType.WEEKDAY),
        ("2026-12-31T23:59", True, DayType.WEEKDAY),  # weekday slot 20-24
        ("2027-01-01T00:00", False, DayType.HOLIDAY),  # holiday slots start 08:00
        ("2027-01-01T07:59", False, DayType.HOLIDAY),
        ("2027-01-01T08:00", True, DayType.HOLIDAY),
        ("2027-01-01T23:59", True, DayType.HOLIDAY),
        ("2027-01-02T08:00", True, DayType.BRIDGE),  # Saturday after a Friday holiday
    ],
)
def test_new_years_eve_and_day_in_nimes(at: str, is_open: bool, kind: DayType) -> None:
    state = protocol("nimes").schedule.state(paris(at))
    assert (state.open, state.day_type) == (is_open, kind)


def test_new_years_eve_open_then_closed_at_midnight_in_utc() -> None:
    schedule = protocol("nimes").schedule
    assert schedule.state(datetime(2026, 12, 31, 22, 59, tzinfo=UTC)).open
    assert not schedule.state(datetime(2026, 12, 31, 23, 0, tzinfo=UTC)).open
    assert schedule.state(datetime(2027, 1, 1, 7, 0, tzinfo=UTC)).open


class TestReunion:
    """Saint-Denis: Indian/Reunion (UTC+4, no DST) and its 20 December holiday."""

    @pytest.mark.parametrize(
        ("utc", "is_open"),
        [
            (datetime(2026, 11, 24, 15, 59, tzinfo=UTC), False),  # 19:59 local
            (datetime(2026, 11, 24, 16, 0, tzinfo=UTC), True),  # 20:00 local
            (datetime(2026, 11, 24, 18, 59, tzinfo=UTC), True),  # 22:59 local
            (datetime(2026, 11, 24, 19, 0, tzinfo=UTC), False),  # 23:00 local
            (datetime(2026, 7, 14, 4, 0, tzinfo=UTC), True),  # 14 July 08:00 local
            (datetime(2026, 7, 14, 3, 59, tzinfo=UTC), False),
        ],
    )
    def test_slots_are_in_reunion_time(self, utc: datetime, is_open: bool) -> None:
        state = protocol("saint-denis-reunion").schedule.state(utc)
        assert state.open is is_open
        assert state.local.utcoffset() == timedelta(hours=4)

    def test_abolition_day_on_a_monday_opens_at_eight_local(self) -> None:
        schedule = protocol("saint-denis-reunion").schedule
        assert not schedule.state(reunion("2027-12-20T07:59")).open
        state = schedule.state(reunion("2027-12-20T08:00"))
        assert (state.open, state.day_type) == (True, DayType.HOLIDAY)
        assert "Abolition de l'esclavage" in state.reason
        # The same wall-clock time is a closed weekday morning in Nîmes.
        nimes_state = protocol("nimes").schedule.state(paris("2027-12-20T08:00"))
        assert (nimes_state.open, nimes_state.day_type) == (False, DayType.WEEKDAY)

    def test_abolition_day_on_a_sunday_counts_as_holiday(self) -> None:
        state = protocol("saint-denis-reunion").schedule.state(reunion("2026-12-20T12:00"))
        assert (state.open, state.day_type) == (True, DayType.HOLIDAY)

    def test_local_time_is_taken_in_the_mmg_zone_whatever_the_input_zone(self) -> None:
        schedule = protocol("saint-denis-reunion").schedule
        # 17:30 in Paris (UTC+1 in November) is 20:30 in Saint-Denis: open.
        state = schedule.state(paris("2026-11-24T17:30"))
        assert state.open
        assert state.local.tzinfo == REUNION
        assert (state.local.hour, state.local.minute) == (20, 30)


class TestDaylightSaving:
    """Slots are wall-clock; the nights of 2026-03-29 and 2026-10-25 never shift them."""

    @pytest.mark.parametrize(
        ("utc", "is_open", "local_hm"),
        [
            # Spring forward: 02:00 CET → 03:00 CEST at 01:00 UTC.
            (datetime(2026, 3, 28, 22, 59, tzinfo=UTC), True, (23, 59)),  # Saturday 23:59
            (datetime(2026, 3, 28, 23, 0, tzinfo=UTC), False, (0, 0)),  # Sunday 00:00
            (datetime(2026, 3, 29, 0, 59, tzinfo=UTC), False, (1, 59)),  # just before change
            (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), False, (3, 0)),  # just after change
            (datetime(2026, 3, 29, 5, 59, tzinfo=UTC), False, (7, 59)),
            (datetime(2026, 3, 29, 6, 0, tzinfo=UTC), True, (8, 0)),  # Sunday slot, CEST
            # Fall back: 03:00 CEST → 02:00 CET at 01:00 UTC.
            (datetime(2026, 10, 24, 21, 59, tzinfo=UTC), True, (23, 59)),  # Saturday 23:59
            (datetime(2026, 10, 24, 22, 0, tzinfo=UTC), False, (0, 0)),
            (datetime(2026, 10, 25, 0, 59, tzinfo=UTC), False, (2, 59)),  # first 02:59
            (datetime(2026, 10, 25, 1, 0, tzinfo=UTC), False, (2, 0)),  # second 02:00
            (datetime(2026, 10, 25, 6, 59, tzinfo=UTC), False, (7, 59)),
            (datetime(2026, 10, 25, 7, 0, tzinfo=UTC), True, (8, 0)),  # Sunday slot, CET
        ],
    )
    def test_nimes_around_the_change(
        self, utc: datetime, is_open: bool, local_hm: tuple[int, int]
    ) -> None:
        state = protocol("nimes").schedule.state(utc)
        assert state.open is is_open
        assert (state.local.hour, state.local.minute) == local_hm

    def test_sunday_slot_starts_at_eight_wall_clock_on_both_sides_of_spring_change(self) -> None:
        schedule = protocol("nimes").schedule
        # The Sunday before the change, 08:00 is 07:00 UTC; on the change day 06:00 UTC.
        assert not schedule.state(datetime(2026, 3, 22, 6, 30, tzinfo=UTC)).open
        assert schedule.state(datetime(2026, 3, 22, 7, 0, tzinfo=UTC)).open
        assert schedule.state(datetime(2026, 3, 29, 6, 0, tzinfo=UTC)).open

    def test_slot_inside_the_skipped_hour_never_opens(self) -> None:
        proto = variant("nimes", **{"opening.sunday": ["02:00-03:00", "08:00-24:00"]})
        assert _open_minutes(proto, date(2026, 3, 29), 1) == 16 * 60
        assert _open_minutes(proto, date(2026, 3, 22), 1) == 17 * 60

    def test_slot_inside_the_repeated_hour_opens_on_both_passes(self) -> None:
        proto = variant("nimes", **{"opening.sunday": ["02:00-03:00", "08:00-24:00"]})
        assert _open_minutes(proto, date(2026, 10, 25), 1) == 18 * 60

    @pytest.mark.parametrize(
        ("at", "fold"),
        [
            ("2026-03-29T02:30", 0),  # does not exist
            ("2026-03-29T02:30", 1),
            ("2026-10-25T02:30", 0),  # exists twice
            ("2026-10-25T02:30", 1),
        ],
    )
    def test_non_existent_and_ambiguous_local_times_do_not_crash(self, at: str, fold: int) -> None:
        state = protocol("nimes").schedule.state(local(PARIS, at, fold))
        assert state.open is False
        assert state.day_type is DayType.SUNDAY

    def test_override_over_the_repeated_hour_covers_both_passes(self) -> None:
        override = {
            "from": "2026-10-25T02:00",
            "to": "2026-10-25T03:00",
            "open": True,
            "reason": "Garde de nuit",
        }
        proto = variant("nimes", **{"opening.overrides": [override]})
        first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
        second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET
        assert proto.schedule.state(first).open
        assert proto.schedule.state(second).open
        assert not proto.schedule.state(datetime(2026, 10, 25, 2, 0, tzinfo=UTC)).open


class TestOverridesAndPeriods:
    @pytest.mark.parametrize(
        ("at", "is_open"),
        [
            # Metz, 31 December 2026: winter period opens weekdays at 19:00 …
            ("2026-12-31T19:00", True),
            ("2026-12-31T19:59", True),
            # … and the override "Fermeture exceptionnelle (travaux)" closes 20:00-24:00.
            ("2026-12-31T20:00", False),
            ("2026-12-31T23:59", False),
            # Same slot the day before: open.
            ("2026-12-30T20:00", True),
        ],
    )
    def test_metz_override_closes_a_normally_open_slot(self, at: str, is_open: bool) -> None:
        state = protocol("metz").schedule.state(paris(at))
        assert state.open is is_open

    def test_metz_closing_override_names_its_reason(self) -> None:
        state = protocol("metz").schedule.state(paris("2026-12-31T21:00"))
        assert state.override is not None
        assert not state.direct_access
        assert "Fermeture exceptionnelle (travaux)" in state.reason

    @pytest.mark.parametrize(
        ("at", "is_open", "direct_access"),
        [
            ("2027-01-14T19:59", False, False),
            ("2027-01-14T20:00", True, True),
            ("2027-01-14T23:59", True, True),
            ("2027-01-15T00:00", False, False),
            ("2027-01-13T21:00", True, False),  # the evening before: ordinary slot
        ],
    )
    def test_nimes_declared_influx_opens_with_direct_access(
        self, at: str, is_open: bool, direct_access: bool
    ) -> None:
        state = protocol("nimes").schedule.state(paris(at))
        assert (state.open, state.direct_access) == (is_open, direct_access)

    @pytest.mark.parametrize(
        ("at", "is_open"),
        [
            ("2026-12-24T17:59", False),
            ("2026-12-24T18:00", True),  # Veille de Noël: opens two hours early
            ("2026-12-24T23:59", True),
        ],
    )
    def test_nimes_christmas_eve_override_opens_early(self, at: str, is_open: bool) -> None:
        assert protocol("nimes").schedule.state(paris(at)).open is is_open

    @pytest.mark.parametrize(
        ("order", "expected_open"),
        [(("open", "closed"), False), (("closed", "open"), True)],
    )
    def test_last_override_wins(self, order: tuple[str, str], expected_open: bool) -> None:
        windows = {
            "open": {
                "from": "2026-11-24T18:00",
                "to": "2026-11-25T00:00",
                "open": True,
                "reason": "Renfort",
            },
            "closed": {
                "from": "2026-11-24T21:00",
                "to": "2026-11-24T22:00",
                "open": False,
                "reason": "Coupure",
            },
        }
        proto = variant("nimes", **{"opening.overrides": [windows[name] for name in order]})
        assert proto.schedule.state(paris("2026-11-24T21:30")).open is expected_open
        # Outside the inner window only the outer one applies.
        assert proto.schedule.state(paris("2026-11-24T18:30")).open

    @pytest.mark.parametrize(
        ("at", "is_open", "source"),
        [
            ("2026-07-15T19:00", True, "Afflux estival"),  # period replaces weekday hours
            ("2026-07-15T18:59", False, "Afflux estival"),
            ("2026-06-15T19:00", False, "hebdomadaires"),  # before the period
            ("2026-06-15T20:00", True, "hebdomadaires"),
            ("2026-07-01T19:00", True, "Afflux estival"),  # first day, inclusive
            ("2026-08-31T19:00", True, "Afflux estival"),  # last day, inclusive
            ("2026-09-01T19:00", False, "hebdomadaires"),
            # The period only replaces weekdays: Saturday keeps 12:00-24:00.
            ("2026-07-18T11:59", False, "hebdomadaires"),
            ("2026-07-18T12:00", True, "hebdomadaires"),
        ],
    )
    def test_nimes_summer_period_replaces_weekday_hours(
        self, at: str, is_open: bool, source: str
    ) -> None:
        state = protocol("nimes").schedule.state(paris(at))
        assert state.open is is_open
        assert source in state.reason


@pytest.mark.parametrize(
    ("bridges", "at", "is_open", "kind"),
    [
        # Only the Friday after a Thursday holiday: Ascension Friday opens at 08:00,
        # Saturday 16 May keeps Saturday hours (12:00) and Monday 13 July weekday hours.
        ({"friday_after": True}, "2026-05-15T10:00", True, DayType.BRIDGE),
        ({"friday_after": True}, "2026-05-16T10:00", False, DayType.SATURDAY),
        ({"friday_after": True}, "2026-05-16T12:00", True, DayType.SATURDAY),
        ({"friday_after": True}, "2026-07-13T10:00", False, DayType.WEEKDAY),
        # Only the Monday before a Tuesday holiday.
        ({"monday_before": True}, "2026-07-13T10:00", True, DayType.BRIDGE),
        ({"monday_before": True}, "2026-05-15T10:00", False, DayType.WEEKDAY),
        # All three spelled out, and the short forms.
        (
            {"monday_before": True, "friday_after": True, "saturday_after": True},
            "2026-05-16T10:00",
            True,
            DayType.BRIDGE,
        ),
        (True, "2026-05-16T10:00", True, DayType.BRIDGE),
        (False, "2026-05-15T10:00", False, DayType.WEEKDAY),
        (False, "2026-05-14T10:00", True, DayType.HOLIDAY),
    ],
)
def test_protocol_chooses_its_bridge_days(
    bridges: object, at: str, is_open: bool, kind: DayType
) -> None:
    proto = variant("nimes", **{"calendar.bridges": bridges})
    state = proto.schedule.state(paris(at))
    assert (state.open, state.day_type) == (is_open, kind)
