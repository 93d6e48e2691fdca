"""No phone number, token or secret in the service's logs or metrics.

A real ``regulator serve`` (JSON logs, as in production) takes calls on every
platform, referrals with callback numbers, visits, console logins, forged webhooks
and bad tokens; then its whole log output and ``/metrics`` are scanned.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import orjson

from regulator.platforms import generic, twilio
from tests.faults.conftest import LOCALHOST, NIMES, TOKENS, FaultCounts, Service, ServiceFactory
from tests.support.app import (
    GENERIC_SECRET,
    KAMAILIO_SECRET,
    PUBLIC,
    TWILIO_TOKEN,
    VONAGE_SECRET,
    callback,
)

# Callers and callback numbers, in the notations the platforms and people use.
TWILIO_CALLER = "+33611223344"
VONAGE_CALLER = "33622334455"
GENERIC_CALLER = "06 33 44 55 66"
KAMAILIO_CALLER = "0644556677"
PROFESSIONAL = "+33612345678"
CALLBACK = "+33655667788"
BAD_CALLBACK = "06 99 88 77 66 ext"
NUMBERS = [
    TWILIO_CALLER,
    VONAGE_CALLER,
    GENERIC_CALLER,
    KAMAILIO_CALLER,
    PROFESSIONAL,
    CALLBACK,
    BAD_CALLBACK,
]
BOGUS_TOKEN = "tok-bogus-0123456789abcdef"


def significant(number: str) -> str:
    """The last nine digits: what identifies a French number in any notation."""
    return (
        re.sub(r"\D", "", number)[:-4][-9:] if "ext" in number else re.sub(r"\D", "", number)[-9:]
    )


def request(
    service: Service,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(LOCALHOST, service.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}", "Content-Type": "application/json"}


def twilio_post(
    service: Service, path: str, params: dict[str, str], *, forged: bool = False
) -> int:
    signature = twilio.compute_signature(
        "not-the-token" if forged else TWILIO_TOKEN, PUBLIC + path, params
    )
    status, _ = request(
        service,
        "POST",
        path,
        urlencode(params).encode(),
        {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"},
    )
    return status


def exercise(service: Service) -> int:
    """Everything that touches a number or a token; returns the requests sent."""
    sent = 0

    def count(status: int, expected: int | tuple[int, ...]) -> None:
        nonlocal sent
        sent += 1
        wanted = expected if isinstance(expected, tuple) else (expected,)
        assert status in wanted, (status, wanted)

    # Calls on every platform, menu choices, dial failures, status callbacks.
    for n, caller in enumerate((TWILIO_CALLER, PROFESSIONAL)):
        sid = f"CApii{n}"
        base = {"CallSid": sid, "From": caller, "To": NIMES}
        count(twilio_post(service, "/hooks/twilio/voice", base), 200)
        count(twilio_post(service, "/hooks/twilio/gather", {**base, "Digits": "1"}), 200)
        count(
            twilio_post(
                service,
                callback("/hooks/twilio/dial-status?mmg=nimes&target=regulation"),
                {**base, "DialCallStatus": "busy"},
            ),
            200,
        )
        count(
            twilio_post(
                service,
                "/hooks/twilio/status",
                {**base, "CallStatus": "completed", "CallDuration": "42"},
            ),
            (200, 204),
        )
    count(
        twilio_post(
            service,
            "/hooks/twilio/voice",
            {"CallSid": "CAf", "From": TWILIO_CALLER, "To": NIMES},
            forged=True,
        ),
        403,
    )
    # A bad request that names a number in an invalid field.
    count(
        twilio_post(
            service,
            "/hooks/twilio/gather",
            {"CallSid": "CAx", "From": TWILIO_CALLER, "To": NIMES, "Digits": TWILIO_CALLER},
        ),
        200,
    )

    body = orjson.dumps(
        {
            "uuid": "leg-1",
            "conversation_uuid": "CONpii",
            "from": VONAGE_CALLER,
            "to": NIMES.lstrip("+"),
        }
    )
    claims = {
        "iat": int(time.time()),
        "jti": "jti-pii-1",
        "payload_hash": hashlib.sha256(body).hexdigest(),
    }
    token = jwt.encode(claims, VONAGE_SECRET, algorithm="HS256")
    count(
        request(
            service,
            "POST",
            "/hooks/vonage/answer",
            body,
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )[0],
        200,
    )

    body = orjson.dumps({"call_id": "GENpii", "from": GENERIC_CALLER, "to": NIMES})
    signature = generic.sign(
        GENERIC_SECRET, body, int(time.time()), method="POST", path="/hooks/generic/call"
    )
    count(
        request(
            service,
            "POST",
            "/hooks/generic/call",
            body,
            {"X-Regulator-Signature": signature, "Content-Type": "application/json"},
        )[0],
        200,
    )
    count(
        request(
            service,
            "POST",
            "/hooks/generic/call",
            body,
            {
                "X-Regulator-Signature": signature.replace("v2=", "v2=0"),
                "Content-Type": "application/json",
            },
        )[0],
        403,
    )

    body = orjson.dumps(
        {"call_id": "KAMpii", "from": KAMAILIO_CALLER, "to": NIMES, "source_ip": "192.0.2.1"}
    )
    count(
        request(
            service,
            "POST",
            "/hooks/kamailio/route",
            body,
            {"X-Regulator-Secret": KAMAILIO_SECRET, "Content-Type": "application/json"},
        )[0],
        200,
    )
    count(
        request(
            service,
            "POST",
            "/hooks/kamailio/route",
            body,
            {"X-Regulator-Secret": "wrong", "Content-Type": "application/json"},
        )[0],
        403,
    )

    # Referrals with callback numbers, their transitions, visits, a refused one.
    referral: dict[str, Any] = {
        "mmg": "nimes",
        "case_id": "DRFR15030PII",
        "patient": {"display_name": "M. D.", "age_band": "18-64"},
        "callback_number": CALLBACK,
        "reason": "fièvre",
        "urgency": "P2",
    }
    status, created = request(
        service, "POST", "/api/v1/referrals", orjson.dumps(referral), bearer("regulator")
    )
    count(status, 201)
    ref_id = orjson.loads(created)["id"]
    for action in ("ack", "arrived"):
        count(
            request(service, "POST", f"/api/v1/referrals/{ref_id}/{action}", b"", bearer("desk"))[
                0
            ],
            200,
        )
    count(
        request(
            service,
            "POST",
            f"/api/v1/referrals/{ref_id}/outcome",
            orjson.dumps({"outcome": "home", "acts": 1}),
            bearer("desk"),
        )[0],
        200,
    )
    bad = {**referral, "case_id": "DRFR15030BAD", "callback_number": BAD_CALLBACK}
    count(
        request(service, "POST", "/api/v1/referrals", orjson.dumps(bad), bearer("regulator"))[0],
        422,
    )
    visit = {"mmg": "nimes", "channel": "direct", "outcome": "home", "acts": 1}
    count(request(service, "POST", "/api/v1/visits", orjson.dumps(visit), bearer("desk"))[0], 201)
    count(request(service, "GET", "/api/v1/referrals?mmg=nimes", b"", bearer("desk"))[0], 200)
    # Tokens: good, bad, on the API and the console login form.
    count(
        request(
            service, "GET", "/api/v1/referrals", b"", {"Authorization": f"Bearer {BOGUS_TOKEN}"}
        )[0],
        401,
    )
    form = urlencode({"token": BOGUS_TOKEN}).encode()
    count(
        request(
            service,
            "POST",
            "/console/login",
            form,
            {"Content-Type": "application/x-www-form-urlencoded", "Origin": PUBLIC},
        )[0],
        401,
    )
    form = urlencode({"token": TOKENS["desk"]}).encode()
    count(
        request(
            service,
            "POST",
            "/console/login",
            form,
            {"Content-Type": "application/x-www-form-urlencoded", "Origin": PUBLIC},
        )[0],
        (302, 303),
    )
    count(
        request(service, "GET", "/api/v1/reports/nimes/2026-11", b"", bearer("coordinator"))[0], 200
    )
    return sent


def test_logs_and_metrics_hold_no_phone_number_token_or_secret(
    service_factory: ServiceFactory, fault_counts: FaultCounts
) -> None:
    service = service_factory({"REGULATOR_LOG_LEVEL": "DEBUG"})
    service.start()
    fault_counts.requests_sent = exercise(service)
    _, metrics = request(service, "GET", "/metrics")
    service.stop()
    log = service.log()
    assert '"event":"webhook"' in log.replace(" ", "")  # the canonical lines are there
    texts = {"log": log, "metrics": metrics.decode()}
    secrets = [
        *TOKENS.values(),
        BOGUS_TOKEN,
        TWILIO_TOKEN,
        VONAGE_SECRET,
        KAMAILIO_SECRET,
        GENERIC_SECRET,
    ]
    leaks: list[str] = []
    for where, text in texts.items():
        digits_only = re.sub(r"[\s.\-]", "", text)
        for number in NUMBERS:
            if significant(number) in digits_only:
                leaks.append(f"{where}: number {number}")
        leaks += [f"{where}: E.164 {m}" for m in re.findall(r"\+\d{8,15}", text)]
        leaks += [f"{where}: secret {s[:6]}…" for s in secrets if s in text]
    fault_counts.records_checked = len(log.splitlines())
    fault_counts.notes.append(f"{len(log)} bytes of logs and {len(metrics)} of metrics scanned")
    assert not leaks, leaks


# ------------------------------------------------------- files at rest (issue 18, point 6)


async def test_every_file_holding_personal_data_is_0600_whatever_the_umask(
    tmp_path: Path,
) -> None:
    import os
    import stat
    from datetime import UTC, datetime

    from regulator.storage.batch import Journal
    from regulator.storage.spool import Spool
    from regulator.storage.sqlite import SqliteStore
    from tests.support.store import call, referral

    previous = os.umask(0o022)
    try:
        store = SqliteStore(tmp_path / "regulator.sqlite3")
        await store.open()
        await store.create_referral(
            referral("R1", created_at=datetime(2026, 11, 24, tzinfo=UTC)), None
        )
        await store.record_calls([call("CA0")])
        spool = Spool(tmp_path / "spool.jsonl")
        spool.append([call("CA1")])
        spool.prepend([call("CA2")])  # rewritten through a temporary file
        with spool.path.open("ab") as fh:
            fh.write(b'{"r": torn')  # a crash mid-line: set aside on the next open
        Spool(spool.path)
        journal = Journal(tmp_path / "journal")
        journal.append(1, call("CA3"))
        # A file left readable by an older version is tightened when it is opened again.
        (tmp_path / "old-spool.jsonl").write_bytes(b"")
        os.chmod(tmp_path / "old-spool.jsonl", 0o644)
        Spool(tmp_path / "old-spool.jsonl").append([call("CA4")])
        modes = {
            p.name: oct(stat.S_IMODE(p.stat().st_mode))
            for p in sorted(tmp_path.iterdir())  # noqa: ASYNC240 - a test's check
            if p.is_file()
        }
        await store.close()
    finally:
        os.umask(previous)
    print(f"umask 022, file modes: {modes}")
    expected = {
        "regulator.sqlite3",
        "regulator.sqlite3-wal",
        "regulator.sqlite3-shm",
        "spool.jsonl",
        "spool.jsonl.rejected",
        "journal.000001",
        "old-spool.jsonl",
    }
    assert expected <= set(modes)
    assert {name: mode for name, mode in modes.items() if mode != "0o600"} == {}
