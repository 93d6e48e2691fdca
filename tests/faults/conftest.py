"""Fault, fuzz and security tests: shared fixtures.

- :class:`Service`: a real ``regulator serve`` subprocess (SQLite or Redis), configured
  only through ``REGULATOR_*`` variables, with every platform secret and a tokens file.
- :func:`twilio_calls`: a bounded load of signed Twilio voice webhooks; every answer is
  kept with its status, body and latency.
- :class:`FaultCounts` (fixture ``fault_counts``): what each fault test sent, injected
  and checked; printed as one line per test at the end of the run (terminal summary),
  and ``records_lost`` must be 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import pytest
import yaml

from regulator.platforms import twilio
from tests.support.app import (
    FRONT_DESK_NIMES,
    GENERIC_SECRET,
    KAMAILIO_SECRET,
    NIMES,
    PROTOCOLS,
    PUBLIC,
    REGULATION_NIMES,
    TOKENS,
    TWILIO_TOKEN,
    VONAGE_SECRET,
    write_tokens,
)

LOCALHOST = "127.0.0.1"
FAILSAFE = "+33466000099"
PARIS = ZoneInfo("Europe/Paris")
#: Twilio waits 15 s for TwiML; Vonage 5 s. Our answers must come well within both.
PLATFORM_DEADLINE_S = 5.0
#: Where a TwiML answer may send a caller (no front desk: the test callers have no
#: ground for direct access).
SAFE_NUMBERS = frozenset({REGULATION_NIMES, FAILSAFE})

__all__ = [
    "FAILSAFE",
    "FRONT_DESK_NIMES",
    "NIMES",
    "PLATFORM_DEADLINE_S",
    "TOKENS",
    "Answer",
    "FaultCounts",
    "Service",
    "ServiceFactory",
    "free_port",
    "safe_twiml",
    "twilio_calls",
]


# --------------------------------------------------------------------------- counts


@dataclass
class FaultCounts:
    """What one fault test did, for the summary line."""

    name: str
    requests_sent: int = 0
    faults_injected: int = 0
    records_checked: int = 0
    records_lost: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        extra = f"  ({'; '.join(self.notes)})" if self.notes else ""
        return (
            f"{self.name}: requests sent={self.requests_sent} "
            f"faults injected={self.faults_injected} records checked={self.records_checked} "
            f"records lost={self.records_lost}{extra}"
        )


_COUNTS = pytest.StashKey[list[FaultCounts]]()


@pytest.fixture
def fault_counts(request: pytest.FixtureRequest) -> Iterator[FaultCounts]:
    """Counts of this test, printed at the end of the run (and with ``-s`` right away)."""
    counts = FaultCounts(request.node.name)
    yield counts
    request.config.stash.setdefault(_COUNTS, []).append(counts)
    print(f"\n[faults] {counts.line()}")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    counts = config.stash.get(_COUNTS, [])
    if not counts:
        return
    terminalreporter.section("fault injection summary")
    for item in counts:
        terminalreporter.write_line(item.line())


# -------------------------------------------------------------------------- service


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def always_open_protocols(directory: Path, *, is_open: bool = True) -> Path:
    """The Nîmes protocol, open around the clock: every call then looks up pending
    referrals in the store before it is answered (the store is on the answer path).
    ``is_open=False``: closed around the clock (every call goes to regulation)."""
    data = yaml.safe_load((PROTOCOLS / "nimes.yaml").read_text(encoding="utf-8"))
    day = ["00:00-24:00"] if is_open else []
    data["opening"] = {
        "weekdays": day,
        "saturday": day,
        "sunday": day,
        "holiday": day,
        "bridge": day,
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "nimes.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    return directory


class Service:
    """``regulator serve`` as a subprocess; the log (JSON lines on stderr) goes to a file.
    Protocols: Nîmes open around the clock (:func:`always_open_protocols`)."""

    def __init__(
        self, workdir: Path, env: dict[str, str] | None = None, *, is_open: bool = True
    ) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "var"
        self.protocols_dir = always_open_protocols(workdir / "protocols", is_open=is_open)
        self.tokens_file = write_tokens(workdir / "tokens.yaml")
        self.port = free_port()
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "regulator.log"
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGULATOR_")}
        env.update(
            {
                "REGULATOR_HOST": LOCALHOST,
                "REGULATOR_PORT": str(self.port),
                "REGULATOR_PROTOCOLS_DIR": str(self.protocols_dir),
                "REGULATOR_DATA_DIR": str(self.data_dir),
                "REGULATOR_PUBLIC_URL": PUBLIC,
                "REGULATOR_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
                "REGULATOR_VONAGE_SIGNATURE_SECRET": VONAGE_SECRET,
                "REGULATOR_KAMAILIO_SECRET": KAMAILIO_SECRET,
                "REGULATOR_GENERIC_SECRET": GENERIC_SECRET,
                "REGULATOR_FAILSAFE_NUMBER": FAILSAFE,
                "REGULATOR_TOKENS_FILE": str(self.tokens_file),
                "REGULATOR_WATCH_PROTOCOLS": "false",
                "REGULATOR_LOG_FORMAT": "json",
                "REGULATOR_LOG_LEVEL": "INFO",
                "REGULATOR_RATE_LIMIT_PER_MINUTE": "0",
            }
        )
        env.update(self.env)
        return env

    def start(self, *, ready: bool = True, timeout_s: float = 30.0) -> None:
        """Start; wait for /readyz 200 (``ready``) or only /healthz (store may be down)."""
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "regulator", "serve"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self.environment(),
            )
        deadline = time.monotonic() + timeout_s
        path = "/readyz" if ready else "/healthz"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"regulator serve exited at start:\n{self.log()[-4000:]}")
            if self.get_status(path) == 200:
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"regulator serve was not ready in time:\n{self.log()[-4000:]}")

    def get_status(self, path: str) -> int | None:
        connection = http.client.HTTPConnection(LOCALHOST, self.port, timeout=2)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        except OSError:
            return None
        finally:
            connection.close()

    def get_json(self, path: str, role: str = "coordinator") -> Any:
        connection = http.client.HTTPConnection(LOCALHOST, self.port, timeout=5)
        try:
            connection.request("GET", path, headers={"Authorization": f"Bearer {TOKENS[role]}"})
            response = connection.getresponse()
            body = response.read()
            assert response.status == 200, (response.status, body[:500])
            return orjson.loads(body)
        finally:
            connection.close()

    def metric(self, name: str) -> float:
        """The sum of a metric's samples on /metrics."""
        connection = http.client.HTTPConnection(LOCALHOST, self.port, timeout=5)
        try:
            connection.request("GET", "/metrics")
            text = connection.getresponse().read().decode()
        finally:
            connection.close()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def calls_received(self, months: Iterable[str], mmg: str = "nimes") -> int:
        return sum(
            int(self.get_json(f"/api/v1/reports/{mmg}/{month}")["calls_received"])
            for month in sorted(set(months))
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                event = orjson.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout_s: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        """``kill -9``: no flush, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


ServiceFactory = Callable[..., Service]


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[ServiceFactory]:
    """``factory(env) -> Service`` (not started); every service is killed at the end."""
    services: list[Service] = []

    def factory(
        env: dict[str, str] | None = None, name: str = "svc", *, is_open: bool = True
    ) -> Service:
        workdir = tmp_path / name
        workdir.mkdir(parents=True, exist_ok=True)
        service = Service(workdir, env, is_open=is_open)
        services.append(service)
        return service

    yield factory
    for service in services:
        service.kill()


# ---------------------------------------------------------------------------- load


def paris_month(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).astimezone(PARIS).strftime("%Y-%m")


@dataclass
class Answer:
    call_id: str
    status: int | None  # None: no HTTP answer (connection refused or reset)
    body: str
    latency_s: float
    error: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.status == 200


def safe_twiml(body: str) -> str | None:
    """Why this TwiML answer is not a safe routing, or None if it is: a menu (which
    defaults to regulation), or a dial of the regulation line / fail-safe number."""
    try:
        root = ET.fromstring(body.encode())
    except ET.ParseError as exc:
        return f"not XML: {exc}"
    if root.tag != "Response":
        return f"root is {root.tag}"
    gather = root.find("Gather")
    if gather is not None:
        if gather.get("action") != f"{PUBLIC}/hooks/twilio/gather":
            return f"menu posts to {gather.get('action')}"
        return None
    dial = root.find("Dial")
    if dial is None:
        return "neither a menu nor a dial"
    number = dial.findtext("Number")
    if number not in SAFE_NUMBERS:
        return f"dials {number!r}"
    return None


def twilio_request(call_id: str, caller: str) -> tuple[bytes, dict[str, str]]:
    params = {"CallSid": call_id, "From": caller, "To": NIMES, "CallStatus": "ringing"}
    signature = twilio.compute_signature(TWILIO_TOKEN, f"{PUBLIC}/hooks/twilio/voice", params)
    headers = {
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return urlencode(params).encode(), headers


def caller_for(index: int) -> str:
    return f"+336{index % 100_000_000:08d}"


async def twilio_calls(
    base_url: str,
    call_ids: list[str],
    *,
    concurrency: int = 8,
    timeout_s: float = 20.0,
    pace_s: float = 0.0,
    answered: list[int] | None = None,
) -> list[Answer]:
    """POST one signed voice webhook per call id (a bounded load; each worker waits
    ``pace_s`` between its requests); returns every answer in call-id order.
    ``answered[0]``, if given, counts the 200 answers as they come (a test's trigger)."""
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for index, call_id in enumerate(call_ids):
        queue.put_nowait((index, call_id))
    answers: dict[str, Answer] = {}
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            try:
                index, call_id = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            body, headers = twilio_request(call_id, caller_for(index))
            started = time.monotonic()
            try:
                async with session.post(
                    f"{base_url}/hooks/twilio/voice", data=body, headers=headers
                ) as resp:
                    text = await resp.text()
                    answers[call_id] = Answer(
                        call_id, resp.status, text, time.monotonic() - started
                    )
                    if answered is not None and resp.status == 200:
                        answered[0] += 1
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                answers[call_id] = Answer(
                    call_id, None, "", time.monotonic() - started, type(exc).__name__
                )
            if pace_s:
                await asyncio.sleep(pace_s)

    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return [answers[c] for c in call_ids]


def check_answers(answers: list[Answer], *, deadline_s: float = PLATFORM_DEADLINE_S) -> None:
    """Every answer is a 200 with safe TwiML, in time."""
    problems = []
    for answer in answers:
        if answer.status != 200:
            problems.append(f"{answer.call_id}: HTTP {answer.status} {answer.error or ''}")
            continue
        why = safe_twiml(answer.body)
        if why is not None:
            problems.append(f"{answer.call_id}: {why}")
        if answer.latency_s > deadline_s:
            problems.append(f"{answer.call_id}: answered in {answer.latency_s:.2f} s")
    assert not problems, f"{len(problems)} bad answers, e.g. {problems[:5]}"


async def wait_for(
    predicate: Any, timeout_s: float = 30.0, interval_s: float = 0.2, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s} s")
        await asyncio.sleep(interval_s)


def spool_lines(data_dir: Path) -> int:
    path = data_dir / "spool.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


# ------------------------------------------------------------------ centre 15 side

WEBHOOK_SECRET = "fault-webhook-secret-0123456789"


class WebhookReceiver:
    """A real regulation-software endpoint (aiohttp, signed webhooks verified) that
    keeps every call event it receives: event id -> call id, and how many times."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: dict[str, str] = {}  # event id -> call id
        self.deliveries = 0  # every POST accepted, duplicates included
        self.bad_signatures = 0
        self._runner: Any = None

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}/regulator"

    async def handle(self, request: Any) -> Any:
        from aiohttp import web

        from regulator.interconnect.webhooks import (
            EVENT_ID_HEADER,
            SIGNATURE_HEADER,
            verify_signature,
        )

        body = await request.read()
        if not verify_signature(
            WEBHOOK_SECRET, request.headers.get(SIGNATURE_HEADER, ""), body, time.time()
        ):
            self.bad_signatures += 1
            return web.Response(status=401)
        data = orjson.loads(body)
        self.deliveries += 1
        self.received[request.headers[EVENT_ID_HEADER]] = data["payload"]["call_id"]
        return web.Response(status=200)

    def call_ids(self) -> set[str]:
        return set(self.received.values())

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/regulator", self.handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, LOCALHOST, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def targets_file(self, service: Service) -> Path:
        """Point ``service`` at this receiver (one webhook target for Nîmes)."""
        path = service.workdir / "targets.yaml"
        path.write_text(
            f'- {{name: samu30, kind: webhook, url: "{self.url}", '
            "secret_env: FAULT_WEBHOOK_SECRET, mmgs: [nimes], timeout_s: 2, concurrency: 16}\n",
            encoding="utf-8",
        )
        service.env["REGULATOR_TARGETS_FILE"] = str(path)
        service.env["FAULT_WEBHOOK_SECRET"] = WEBHOOK_SECRET
        return path


def durability_line(answered: int, stored: int, delivered: int) -> str:
    """The acceptance line of issue 14: nothing answered is lost on either side."""
    return f"calls answered={answered} call records stored={stored} events delivered={delivered}"
