"""The benchmark's workload is what the service accepts: validly signed Twilio webhooks.

Cheap checks only (no load, no timing): the harness itself runs with ``make bench``.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from benchmarks import workload
from benchmarks.openloop import _parse, percentile
from regulator.core import phone
from regulator.platforms import twilio
from regulator.platforms.base import HookRequest, SignatureError

LUA = Path(workload.__file__).with_name("wrk_twilio.lua")


def _as_received(entry: workload.Entry) -> HookRequest:
    """The request as the webhook handler builds it (same form parsing as hooks._read)."""
    body = entry.body()
    return HookRequest(
        method="POST",
        url=workload.PUBLIC_URL + workload.VOICE_PATH,
        headers={
            "x-twilio-signature": entry.signature,
            "content-type": "application/x-www-form-urlencoded",
        },
        query={},
        body=body,
        form=dict(parse_qsl(body.decode(), keep_blank_values=True)),
        now=0.0,
    )


def test_generated_webhooks_pass_the_services_signature_check() -> None:
    for entry in workload.entries(300, seed=5):
        req = _as_received(entry)
        twilio.verify(req, workload.TWILIO_TOKEN)  # raises if the signature is wrong
        assert req.form["CallSid"] == entry.sid
        assert req.form["From"] == entry.caller
        assert req.form["To"] == entry.called


def test_generated_callers_and_numbers_are_valid_e164() -> None:
    for entry in workload.entries(300, seed=6):
        assert phone.normalize(entry.caller) == entry.caller
    assert {phone.normalize(n) for n in workload.MMG_NUMBERS} == set(workload.MMG_NUMBERS)


def test_a_fifth_of_the_requests_are_retries_of_an_earlier_call() -> None:
    items = list(workload.entries(5000, seed=7))
    distinct = len({e.sid for e in items})
    retries = len(items) - distinct
    assert 0.15 * len(items) < retries < 0.25 * len(items)


def test_separate_sets_have_separate_call_ids() -> None:
    a = {e.sid for e in workload.entries(200, tag="a")}
    b = {e.sid for e in workload.entries(200, tag="b")}
    assert not a & b
    assert all(len(sid) == 34 for sid in a | b)


def test_a_tampered_request_is_rejected() -> None:
    entry = next(workload.entries(1))
    forged = workload.Entry(entry.sid, "+33760000000", entry.called, entry.signature)
    try:
        twilio.verify(_as_received(forged), workload.TWILIO_TOKEN)
    except SignatureError:
        return
    raise AssertionError("a forged request was accepted")


def _lua_strings() -> dict[str, str]:
    """The body fragments defined in wrk_twilio.lua (``local NAME = "…" .. NAME …``)."""
    names: dict[str, str] = {}
    for line in LUA.read_text().splitlines():
        match = re.match(r"^local (ACCOUNT|B\d) = (.+)$", line)
        if not match:
            continue
        value = ""
        for part in match.group(2).split(".."):
            part = part.strip()
            if part.startswith('"'):
                value += part.strip('"')
            elif part.startswith("string.rep("):
                text, count = re.fullmatch(r'string\.rep\("(.*)", (\d+)\)', part).groups()  # type: ignore[union-attr]
                value += text * int(count)
            else:
                value += names[part]
        names[match.group(1)] = value
    return names


def test_the_wrk_script_rebuilds_the_signed_body_byte_for_byte() -> None:
    s = _lua_strings()
    for entry in workload.entries(50, seed=8):
        frm = "%2B" + entry.caller[1:]
        to = "%2B" + entry.called[1:]
        body = (
            s["B1"]
            + entry.sid
            + s["B2"]
            + to
            + s["B3"]
            + frm
            + s["B4"]
            + frm
            + s["B5"]
            + to
            + s["B6"]
        )
        assert body.encode() == entry.body()


def test_raw_requests_are_complete_http_messages() -> None:
    entry = next(workload.entries(1))
    raw = workload.raw_request(entry, "127.0.0.1:8080")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert body == entry.body()
    assert f"Content-Length: {len(body)}".encode() in head
    assert f"X-Twilio-Signature: {entry.signature}".encode() in head


def test_open_loop_generator_parses_responses_and_percentiles() -> None:
    buf = bytearray(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 4")
    assert _parse(buf) == (200, 43)
    assert _parse(bytearray(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")) is None
    values = list(range(1, 1001))
    assert percentile(values, 50) == 500
    assert percentile(values, 99.9) == 999
    assert percentile([], 99) == 0.0


def test_the_rss_row_is_judged_only_after_the_calls_it_targets() -> None:
    from benchmarks.run import TARGETS, rss_row

    done = {"calls": 1_000_049.0, "rss_mb": 141.2, "hwm_mb": 141.9, "start_mb": 95.0}
    label, target, measured, ok = rss_row(done, 1_000_000, 570)
    assert ok is (TARGETS["rss_mb"] >= 141.2) and "1,000,049 calls" in label
    assert target == f"≤ {TARGETS['rss_mb']:.0f} MB after 1,000,000"
    short = {**done, "calls": 640_000.0}
    _, _, measured, ok = rss_row(short, 1_000_000, 570)
    assert ok is None and measured.endswith("the 570 s budget stopped the fill")


def test_the_redis_row_gives_its_cpu_per_call_and_what_one_core_would_take() -> None:
    from benchmarks.run import store_cpu_row

    row = store_cpu_row({"rate": 5000.0, "store_cpu_share": 0.06})
    assert row is not None
    assert (
        row[2]
        == "12.0 µs (0.06 core at 5,000 calls/s: one Redis core would take about 83,333 calls/s)"
    )
    assert store_cpu_row({"rate": 5000.0}) is None  # an old run, without the figure


def test_the_scaling_row_names_each_round_and_what_else_took_the_cores() -> None:
    from benchmarks.run import TARGETS, scaling_rows

    one = {
        "rate": 2600.0,
        "service_cpu_cores": 0.97,
        "rounds": [2597, 2615, 2000],
        "calls": 9.0,
        "redis_cpu_cores": 0.05,
        "wrk_cpu_share": 0.14,
    }
    two = {
        **one,
        "rate": 4472.0,
        "service_cpu_cores": 1.66,
        "rounds": [4450, 4494, 4480],
        "redis_cpu_cores": 0.09,
        "wrk_cpu_share": 0.2,
        "rss_mb": [117.0, 118.0],
    }
    # The row prints the ratio it is given (scaling.read_rounds computes it: the median
    # of the rounds', here 1.71, 1.72, 2.24) and says how it was read.
    w = {"1": one, "2": two, "ratio": 1.72, "pooled_ratio": 4472 / 2600, "efficiency": 0.99}
    rows = scaling_rows(w)
    _, target, measured, ok = rows[0]
    assert target == f"≥ {TARGETS['workers_ratio']:.2f}" and ok is (
        TARGETS["workers_ratio"] <= 1.72
    )
    assert measured.startswith(
        "1.72 (median of 3 alternating rounds: 4,450 / 2,597, 4,494 / 2,615, 4,480 / 2,000 "
        "calls/s; pooled 4,472 / 2,600 calls/s = 1.72;"
    )
    assert measured.endswith("per CPU-second 0.99; Redis 0.09 / 0.05, wrk 0.20 / 0.14 cores)")
    assert rows[1][2] == "117 MB / 118 MB" and rows[1][3] is True
    # One round and no Redis reading (an older results file): neither is made up.
    del one["rounds"], one["redis_cpu_cores"]
    (_, _, measured, _), *_ = scaling_rows({"1": one, "2": two, "ratio": 1.7, "efficiency": 1.0})
    assert measured.startswith("1.70 (4,472 / 2,600 calls/s; service CPU")
    assert "rounds" not in measured and "Redis" not in measured


def test_the_scaling_ratio_is_the_median_of_the_rounds() -> None:
    """The rates of a run whose third round's one worker hit a slow patch (2,027):
    that round's 2.05 does not carry the ratio, nor the first round's 1.45."""
    from benchmarks.scaling import read_rounds

    one = {"rate": 2738.5, "rounds": [3159, 2960, 2027, 2808]}
    two = {"rate": 4568.25, "rounds": [4574, 5032, 4151, 4516]}
    read = read_rounds(one, two)
    assert read["round_ratios"] == [1.448, 1.7, 2.048, 1.608]
    assert read["ratio"] == pytest.approx((1.608 + 1.7) / 2)
    assert read["pooled_ratio"] == pytest.approx(4568.25 / 2738.5)
    # Runs without rounds (one run each): the ratio of the two rates.
    assert read_rounds({"rate": 2000.0}, {"rate": 3500.0})["ratio"] == 1.75


def test_a_ratio_short_of_its_target_never_prints_as_the_target() -> None:
    from benchmarks.run import judged

    assert judged(1.698, 1.7) == "1.698" and judged(1.7, 1.7) == "1.70"
    assert judged(1.72, 1.7) == "1.72" and judged(1.64, 1.7) == "1.64"
    assert judged(0.4999, 0.5) == "0.4999" and judged(0.22, 0.5) == "0.22"
