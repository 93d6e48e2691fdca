"""Day types of the PDS calendar: public holidays per department and R.6315-1 bridges."""

from __future__ import annotations

from datetime import date

import holidays
import pytest

from regulator.core.calendar import BridgeDays, day_type, holiday_name, is_holiday
from regulator.core.models import DayType

METROPOLE: str | None = None
MOSELLE = "57"
BAS_RHIN = "67"
REUNION = "974"


def _first_monday_before_a_tuesday_holiday(year: int) -> date:
    days = holidays.country_holidays("FR", years=year)
    tuesdays = sorted(d for d in days if d.weekday() == 1)
    assert tuesdays, f"no Tuesday public holiday in {year}"
    return date.fromordinal(tuesdays[0].toordinal() - 1)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        # Ascension 2026 and its long weekend.
        (date(2026, 5, 13), DayType.WEEKDAY),
        (date(2026, 5, 14), DayType.HOLIDAY),
        (date(2026, 5, 15), DayType.BRIDGE),  # Friday after a Thursday holiday
        (date(2026, 5, 16), DayType.BRIDGE),  # Saturday closing the Ascension weekend
        (date(2026, 5, 17), DayType.SUNDAY),
        # Whit Monday: a holiday; the Tuesday after it is not a bridge.
        (date(2026, 5, 25), DayType.HOLIDAY),
        (date(2026, 5, 26), DayType.WEEKDAY),
        # Monday before a Tuesday holiday (14 July 2026, 1 and 8 May 2029).
        (date(2026, 7, 13), DayType.BRIDGE),
        (date(2026, 7, 14), DayType.HOLIDAY),
        (date(2029, 4, 30), DayType.BRIDGE),
        (date(2029, 5, 7), DayType.BRIDGE),
        (date(2029, 12, 24), DayType.BRIDGE),
        # Friday holiday (1 May 2026): the Saturday after is a bridge.
        (date(2026, 5, 1), DayType.HOLIDAY),
        (date(2026, 5, 2), DayType.BRIDGE),
        # New Year 2027 on a Friday: Saturday 2 January is a bridge.
        (date(2027, 1, 1), DayType.HOLIDAY),
        (date(2027, 1, 2), DayType.BRIDGE),
        # Ascension 2027 (6 May): Friday bridge, but Saturday 8 May is itself a holiday.
        (date(2027, 5, 7), DayType.BRIDGE),
        (date(2027, 5, 8), DayType.HOLIDAY),
        # Wednesday holiday (Armistice 2026): no bridge on either side.
        (date(2026, 11, 10), DayType.WEEKDAY),
        (date(2026, 11, 11), DayType.HOLIDAY),
        (date(2026, 11, 12), DayType.WEEKDAY),
        (date(2026, 11, 13), DayType.WEEKDAY),
        # Sunday holiday (Toussaint 2026): the Monday after is a plain weekday.
        (date(2026, 11, 1), DayType.HOLIDAY),
        (date(2026, 11, 2), DayType.WEEKDAY),
        # A plain week.
        (date(2026, 11, 16), DayType.WEEKDAY),
        (date(2026, 11, 21), DayType.SATURDAY),
        (date(2026, 11, 22), DayType.SUNDAY),
        # Christmas 2026 on a Friday: Saturday 26 December is a bridge in metropolitan France.
        (date(2026, 12, 25), DayType.HOLIDAY),
        (date(2026, 12, 26), DayType.BRIDGE),
    ],
)
def test_metropolitan_day_types_follow_r6315_1(day: date, expected: DayType) -> None:
    assert day_type(day, METROPOLE, bridges=True) is expected


def test_monday_before_a_tuesday_holiday_found_with_holidays_package_is_bridge() -> None:
    monday = _first_monday_before_a_tuesday_holiday(2029)
    assert monday == date(2029, 4, 30)
    assert monday.weekday() == 0
    assert day_type(monday, METROPOLE) is DayType.BRIDGE


def test_ascension_thursday_is_holiday_named_ascension() -> None:
    assert holiday_name(date(2026, 5, 14), METROPOLE) == "Ascension"


def test_whit_monday_is_holiday_named_pentecote() -> None:
    assert holiday_name(date(2026, 5, 25), METROPOLE) == "Lundi de Pentecôte"


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 5, 15), DayType.WEEKDAY),
        (date(2026, 5, 16), DayType.SATURDAY),
        (date(2026, 7, 13), DayType.WEEKDAY),
        (date(2026, 5, 14), DayType.HOLIDAY),
    ],
)
def test_bridges_off_leaves_plain_days_but_keeps_holidays(day: date, expected: DayType) -> None:
    assert day_type(day, METROPOLE, bridges=False) is expected


@pytest.mark.parametrize(
    ("day", "subdiv", "expected"),
    [
        # Good Friday: a public holiday in Moselle and Alsace only.
        (date(2026, 4, 3), MOSELLE, DayType.HOLIDAY),
        (date(2026, 4, 3), BAS_RHIN, DayType.HOLIDAY),
        (date(2026, 4, 3), "68", DayType.HOLIDAY),
        (date(2026, 4, 3), METROPOLE, DayType.WEEKDAY),
        (date(2026, 4, 3), REUNION, DayType.WEEKDAY),
        # …so the Saturday after it is a bridge in Moselle, a plain Saturday elsewhere.
        (date(2026, 4, 4), MOSELLE, DayType.BRIDGE),
        (date(2026, 4, 4), METROPOLE, DayType.SATURDAY),
        # 26 December (Saint-Étienne), Moselle only.
        (date(2026, 12, 26), MOSELLE, DayType.HOLIDAY),
        (date(2029, 12, 26), MOSELLE, DayType.HOLIDAY),
        (date(2029, 12, 26), METROPOLE, DayType.WEEKDAY),
        (date(2025, 12, 26), MOSELLE, DayType.HOLIDAY),
        (date(2025, 12, 26), METROPOLE, DayType.BRIDGE),  # Friday after Christmas Thursday
        # 20 December, abolition of slavery, La Réunion only.
        (date(2026, 12, 20), REUNION, DayType.HOLIDAY),
        (date(2026, 12, 20), METROPOLE, DayType.SUNDAY),
        (date(2027, 12, 20), REUNION, DayType.HOLIDAY),
        (date(2027, 12, 20), METROPOLE, DayType.WEEKDAY),
        (date(2025, 12, 20), REUNION, DayType.HOLIDAY),
        (date(2025, 12, 20), METROPOLE, DayType.SATURDAY),
        # National holidays hold everywhere.
        (date(2026, 5, 14), MOSELLE, DayType.HOLIDAY),
        (date(2026, 5, 14), REUNION, DayType.HOLIDAY),
        (date(2026, 7, 14), REUNION, DayType.HOLIDAY),
    ],
)
def test_department_specific_holidays_change_day_type(
    day: date, subdiv: str | None, expected: DayType
) -> None:
    assert day_type(day, subdiv) is expected


@pytest.mark.parametrize(
    ("day", "subdiv", "name"),
    [
        (date(2026, 4, 3), MOSELLE, "Vendredi saint"),
        (date(2026, 12, 26), MOSELLE, "Saint-Étienne"),
        (date(2026, 12, 20), REUNION, "Abolition de l'esclavage"),
    ],
)
def test_department_holiday_names_are_french(day: date, subdiv: str, name: str) -> None:
    assert holiday_name(day, subdiv) == name
    assert is_holiday(day, subdiv)
    assert not is_holiday(day, METROPOLE)


# ------------------------------------------------------------- bridges by choice
ALL = BridgeDays(monday_before=True, friday_after=True, saturday_after=True)
NONE = BridgeDays(monday_before=False, friday_after=False, saturday_after=False)
MONDAY_ONLY = BridgeDays(monday_before=True, friday_after=False, saturday_after=False)
FRIDAY_ONLY = BridgeDays(monday_before=False, friday_after=True, saturday_after=False)
SATURDAY_ONLY = BridgeDays(monday_before=False, friday_after=False, saturday_after=True)


@pytest.mark.parametrize(
    ("day", "bridges", "expected"),
    [
        # Ascension, Thursday 14 May 2026: Friday 15 and Saturday 16 are the bridges.
        (date(2026, 5, 15), FRIDAY_ONLY, DayType.BRIDGE),
        (date(2026, 5, 15), SATURDAY_ONLY, DayType.WEEKDAY),
        (date(2026, 5, 15), MONDAY_ONLY, DayType.WEEKDAY),
        (date(2026, 5, 16), SATURDAY_ONLY, DayType.BRIDGE),
        (date(2026, 5, 16), FRIDAY_ONLY, DayType.SATURDAY),
        (date(2026, 5, 16), ALL, DayType.BRIDGE),
        (date(2026, 5, 14), NONE, DayType.HOLIDAY),
        # 14 July 2026 is a Tuesday: Monday 13 is a bridge only with monday_before.
        (date(2026, 7, 13), MONDAY_ONLY, DayType.BRIDGE),
        (date(2026, 7, 13), FRIDAY_ONLY, DayType.WEEKDAY),
        (date(2026, 7, 13), NONE, DayType.WEEKDAY),
        # 14 July 2025 is a Monday: no bridge before (Sunday) nor after (Tuesday 15).
        (date(2025, 7, 13), ALL, DayType.SUNDAY),
        (date(2025, 7, 14), ALL, DayType.HOLIDAY),
        (date(2025, 7, 15), ALL, DayType.WEEKDAY),
        (date(2025, 7, 12), ALL, DayType.SATURDAY),
        # 11 November 2026 is a Wednesday: no bridge on either side, whatever the choice.
        (date(2026, 11, 10), ALL, DayType.WEEKDAY),
        (date(2026, 11, 12), ALL, DayType.WEEKDAY),
        (date(2026, 11, 13), ALL, DayType.WEEKDAY),
        (date(2026, 11, 14), ALL, DayType.SATURDAY),
        # 1 May 2026 is a Friday: Saturday 2 is a bridge with saturday_after only.
        (date(2026, 5, 2), SATURDAY_ONLY, DayType.BRIDGE),
        (date(2026, 5, 2), FRIDAY_ONLY, DayType.SATURDAY),
        # Christmas 2025 is a Thursday: Friday 26 December is a bridge with friday_after.
        (date(2025, 12, 26), FRIDAY_ONLY, DayType.BRIDGE),
        (date(2025, 12, 26), MONDAY_ONLY, DayType.WEEKDAY),
        (date(2025, 12, 27), SATURDAY_ONLY, DayType.BRIDGE),
        # 1 and 8 May 2029 are Tuesdays: Mondays 30 April and 7 May.
        (date(2029, 4, 30), MONDAY_ONLY, DayType.BRIDGE),
        (date(2029, 5, 7), MONDAY_ONLY, DayType.BRIDGE),
        (date(2029, 5, 7), SATURDAY_ONLY, DayType.WEEKDAY),
    ],
)
def test_each_kind_of_bridge_day_is_chosen_separately(
    day: date, bridges: BridgeDays, expected: DayType
) -> None:
    assert day_type(day, METROPOLE, bridges) is expected


@pytest.mark.parametrize(("flag", "same_as"), [(True, ALL), (False, NONE)])
def test_true_and_false_mean_all_or_no_bridges(flag: bool, same_as: BridgeDays) -> None:
    assert BridgeDays.of(flag) == same_as
    for day in (date(2026, 5, 15), date(2026, 5, 16), date(2026, 7, 13), date(2026, 5, 2)):
        assert day_type(day, METROPOLE, flag) is day_type(day, METROPOLE, same_as)
