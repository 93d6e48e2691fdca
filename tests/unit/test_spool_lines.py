"""A call record's spool and journal line: orjson writes the dataclass itself.

``spool.encode`` hands the :class:`CallRecord` to orjson instead of building
``codec.record_to_dict`` first (one per webhook, before its answer). These pin that
the line stays byte for byte the codec's mapping, and reads back the same record.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regulator.core.models import HISTORY_ROUTES, CallRecord, DayType, Ground, Route
from regulator.storage.codec import record_to_dict
from regulator.storage.spool import decode, encode
from tests.support.store import call

PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)
# Microsecond 0 is where isoformat drops the fraction: drawn often, not by luck.
whole_seconds = instants.map(lambda d: d.replace(microsecond=0))
text = st.text(max_size=40)

records = st.builds(
    CallRecord,
    call_id=text,
    mmg=text,
    platform=st.sampled_from(["twilio", "vonage", "telnyx", "jambonz", "asterisk"]),
    caller=st.one_of(st.just("+33611223344"), text),
    at=st.one_of(instants, whole_seconds),
    month=st.just("2026-12"),
    day_type=st.sampled_from(list(DayType)),
    hour=st.integers(min_value=0, max_value=23),
    route=st.sampled_from(list(Route)),
    ground=st.one_of(st.none(), st.sampled_from(list(Ground))),
    rule=text,
    failsafe=st.booleans(),
    status=st.sampled_from(["in_progress", "completed", "no-answer", "busy"]),
    duration_s=st.one_of(st.none(), st.integers(min_value=0, max_value=86_400)),
    # A record's history holds only the routes a history keeps (the codec drops others).
    routes=st.lists(st.sampled_from(sorted(HISTORY_ROUTES)), max_size=4).map(tuple),
    protocol_version=st.one_of(st.just(""), st.text(alphabet="0123456789abcdef", max_size=12)),
)


@PROPERTY_SETTINGS
@given(record=records)
def test_a_record_line_is_the_codec_mapping_byte_for_byte(record: CallRecord) -> None:
    assert encode(record) == orjson.dumps({"r": record_to_dict(record)}) + b"\n"


@PROPERTY_SETTINGS
@given(record=records)
def test_a_record_line_reads_back_as_the_same_record(record: CallRecord) -> None:
    assert decode(encode(record).rstrip(b"\n")) == record


def test_an_instant_with_another_offset_keeps_it() -> None:
    """``at`` is UTC by contract; a record built elsewhere with an offset keeps it."""
    paris = timezone(timedelta(hours=1))
    record = call("CA1", at=datetime(2026, 12, 1, 20, 0, 0, 5, tzinfo=paris))
    line = encode(record)
    assert b'"at":"2026-12-01T20:00:00.000005+01:00"' in line
    assert line == orjson.dumps({"r": record_to_dict(record)}) + b"\n"
