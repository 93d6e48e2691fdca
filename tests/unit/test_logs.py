"""The log scrubber: every notation of a phone number is masked, tracebacks included;
timestamps, call ids, durations and UUIDs are left as they are."""

from __future__ import annotations

import io
import logging

import orjson
import pytest
import structlog

from regulator.logs import (
    ScrubbingFormatter,
    configure_logging,
    get_logger,
    scrub_numbers,
    scrub_text,
)

NUMBERS = [
    "+33611223344",
    "0611223344",
    "33611223344",
    "0033611223344",
    "06 11 22 33 44",
    "06.11.22.33.44",
    "06-11-22-33-44",
    "+33 6 11 22 33 44",
    "+33 (0)6 11 22 33 44",
    "+262262901234",
    "262692123456",
    "+590590123456",
    "0262 90 12 34",
]

NOT_NUMBERS = [
    "2026-11-24T19:30:00.123456+00:00",
    "2026-11-24 20:30:00+01:00",
    "CA0611223344abcdef0611223344abcd",
    "8f14e45f-0611-4a7f-9c2b-061122334455",
    "duration_s=3600 latency_ms=0.0611223344",
    "1764012600",
    "1764012600123456",
    "regulator_calls_total 1234",
    "ref_0611223344ab",
    "version 2, attempt 3 of 5",
]


@pytest.mark.parametrize("number", NUMBERS)
def test_every_notation_of_a_number_is_masked(number: str) -> None:
    text = f"rappel au {number} demandé"
    scrubbed = scrub_text(text)
    print(f"{text!r} -> {scrubbed!r}")
    digits = "".join(c for c in scrubbed if c.isdigit())
    assert "11223344" not in digits and "901234" not in digits and "123456" not in digits
    assert scrubbed.startswith("rappel au ") and scrubbed.endswith(" demandé")


@pytest.mark.parametrize("text", NOT_NUMBERS)
def test_what_is_not_a_phone_number_is_left_alone(text: str) -> None:
    assert scrub_text(text) == text


def test_masking_twice_changes_nothing() -> None:
    once = scrub_text("appel de 0611223344")
    assert scrub_text(once) == once


def test_numbers_inside_nested_values_and_secrets_are_scrubbed() -> None:
    line = scrub_numbers(
        None,
        "info",
        {"errors": ["numéro 0611223344 invalide"], "ctx": {"n": "33611223344"}, "token": "x"},
    )
    dumped = orjson.dumps(line).decode()
    assert "11223344" not in dumped
    assert line["token"] == "•••"


def _traceback_line(capfd: pytest.CaptureFixture[str], fmt: str) -> str:
    configure_logging(fmt, "INFO")
    try:
        try:
            raise ValueError("numéro refusé : 0611223344 / 33611223344 / +33 6 11 22 33 44")
        except ValueError:
            get_logger("test.scrub").exception("callback_failed", at="2026-11-24T19:30:00Z")
    finally:
        structlog.reset_defaults()
    return capfd.readouterr().err


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_number_in_a_traceback_is_masked(capfd: pytest.CaptureFixture[str], fmt: str) -> None:
    err = _traceback_line(capfd, fmt)
    print(f"{fmt} log of an exception whose message carries 3 numbers:\n{err}")
    assert "Traceback" in err
    assert "ValueError" in err
    assert "callback_failed" in err
    assert "2026-11-24T19:30:00Z" in err
    assert "11223344" not in err.replace(" ", "")


def test_a_number_in_a_standard_library_traceback_is_masked() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ScrubbingFormatter("%(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("test.scrub.stdlib")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError("bad caller 0611223344")
        except ValueError:
            logger.exception("Error handling request from 06.11.22.33.44")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    print(f"aiohttp-style log line:\n{text}")
    assert "Traceback" in text and "ValueError: bad caller" in text
    assert "11223344" not in text.replace(".", "")


def test_scrub_numbers_fast_paths_change_nothing() -> None:
    """The scrubber's shortcuts (short strings, its own level/timestamp fields) give
    what scrubbing every value gives: every prefix of numbers in many notations."""
    from regulator.logs import scrub_numbers, scrub_text

    texts = ["+33611223344", "0611223344", "06 11 22 33 44", "+262262901234", "0033611223344"]
    for text in texts:
        for end in range(len(text) + 1):
            value = f"x {text[:end]}"[2:] if end else ""
            line = scrub_numbers(None, "info", {"field": value, "event": value})
            assert line == {"field": scrub_text(value), "event": scrub_text(value)}


def test_level_and_time_step_writes_what_structlogs_processors_wrote() -> None:
    """_LevelAndTime replaces add_log_level + TimeStamper(iso, utc) + the worker step:
    the same level names, and the timestamp ``datetime.now(UTC).isoformat()`` gives for
    the same system time (cut down to whole microseconds, never rounded into the next
    second), edges included."""
    import random
    from datetime import UTC, datetime, timedelta
    from unittest import mock

    from regulator import logs

    step = logs._LevelAndTime(worker=3)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    rng = random.Random(7)
    instants = [rng.randrange(1_700_000_000 * 10**9, 1_900_000_000 * 10**9) for _ in range(20_000)]
    edge = 1_767_225_599 * 10**9  # 2025-12-31T23:59:59 UTC
    instants += [edge, edge + 999_999_999, edge + 999_999_500, edge + 1_000_000_000, edge + 999]
    wrong = []
    for ns in instants:
        with mock.patch("time.time_ns", return_value=ns):
            line = step(None, "info", {})
        expected = (epoch + timedelta(microseconds=ns // 1000)).isoformat().replace("+00:00", "Z")
        if line["timestamp"] != expected:
            wrong.append((ns, line["timestamp"], expected))
    assert wrong == []
    with mock.patch("time.time_ns", return_value=edge + 999_999_999):
        assert step(None, "info", {})["timestamp"] == "2025-12-31T23:59:59.999999Z"
    for method, level in (("warn", "warning"), ("exception", "error"), ("debug", "debug")):
        assert step(None, method, {})["level"] == level
    assert (
        step(None, "info", {})["worker"] == 3 and step(None, "info", {"worker": 0})["worker"] == 0
    )
    assert "worker" not in logs._LevelAndTime()(None, "info", {})


def test_scrubbed_values_are_remembered_but_still_masked() -> None:
    """The scrubber's memo of values: a number in a repeated value is masked on every
    line, a full memo starts again (unique call ids do not grow it), and secret field
    names are found in any case."""
    from regulator import logs

    logs._SCRUBBED.clear()
    for _ in range(3):
        line = scrub_numbers(None, "info", {"note": "rappel au 06 11 22 33 44", "Token": "t"})
        assert "11 22 33" not in line["note"] and line["Token"] == "•••"
    for i in range(logs._SCRUBBED_MAX + 10):
        scrub_numbers(None, "info", {"call_id": f"CA{i:032d}"})
    assert len(logs._SCRUBBED) <= logs._SCRUBBED_MAX
    line = scrub_numbers(None, "info", {"note": "rappel au 06 11 22 33 44", "PASSWORD": "x"})
    assert "11 22 33" not in line["note"] and line["PASSWORD"] == "•••"
    long = "x" * 300 + " 06 11 22 33 44"  # masked, but not remembered (too long)
    assert "11 22 33" not in scrub_numbers(None, "info", {"message": long})["message"]
    assert long not in logs._SCRUBBED
