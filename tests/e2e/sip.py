"""Real SIP peers for the end-to-end tests: Kamailio with deploy/kamailio/kamailio.cfg,
SIPp callers and destinations, and the ``regulator serve`` process.

Everything listens on 127.0.0.1 on free ports, runs unprivileged in the foreground
in a temporary directory, and is stopped by the fixture that started it. A missing
``kamailio`` or ``sipp`` skips the tests, except in CI (``CI=true``) where it fails.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.paths import ROOT

KAMAILIO_CFG = ROOT / "deploy" / "kamailio" / "kamailio.cfg"
SCENARIOS = Path(__file__).resolve().parent / "sipp"
LOCALHOST = "127.0.0.1"

APT_LINE = "apt-get install -y kamailio kamailio-json-modules kamailio-utils-modules sip-tester"


def require_binary(name: str, package: str, *extra_dirs: str) -> str:
    """Path of ``name``; skip the test if it is missing, fail instead under CI=true."""
    path = shutil.which(name)
    if path is None:
        for directory in extra_dirs:
            candidate = Path(directory) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                path = str(candidate)
                break
    if path is None:
        message = f"{name} is not installed (apt-get install -y {package})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def kamailio_binary() -> str:
    return require_binary("kamailio", "kamailio kamailio-utils-modules", "/usr/sbin")


def sipp_binary() -> str:
    return require_binary("sipp", "sip-tester")


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port nobody listens on right now (UDP by default, TCP with SOCK_STREAM)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _udp_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((LOCALHOST, port))
        except OSError:
            return True
        return False


def _stop(process: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """Stop a process we started (and its own process group), politely then not."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


def sip_options_ok(port: int, timeout: float = 0.5) -> bool:
    """True if a SIP OPTIONS ping to 127.0.0.1:port is answered 200."""
    branch = f"z9hG4bK{uuid.uuid4().hex[:16]}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOCALHOST, 0))
        local_port = sock.getsockname()[1]
        message = (
            f"OPTIONS sip:{LOCALHOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOCALHOST}:{local_port};branch={branch};rport\r\n"
            f"From: <sip:probe@{LOCALHOST}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{LOCALHOST}:{port}>\r\n"
            f"Call-ID: probe-{uuid.uuid4().hex}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout)
        sock.sendto(message.encode(), (LOCALHOST, port))
        try:
            data, _ = sock.recvfrom(65535)
        except OSError:
            return False
        return data.startswith(b"SIP/2.0 200")


def invite_final_status(port: int, caller: str, called: str, timeout: float = 15.0) -> int | None:
    """Send one INVITE to 127.0.0.1:port and return the status of the final reply it
    gets (ACKed as RFC 3261 says for a non-2xx), or None if none came in time.

    For calls that must fail: SIPp's caller scenario expects the call to be answered.
    """
    branch = f"z9hG4bK{uuid.uuid4().hex[:16]}"
    call_id = f"e2e-final-{uuid.uuid4().hex}"
    from_tag = uuid.uuid4().hex[:8]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOCALHOST, 0))
        local_port = sock.getsockname()[1]
        via = f"Via: SIP/2.0/UDP {LOCALHOST}:{local_port};branch={branch};rport\r\n"
        common = (
            f"From: <sip:{caller}@{LOCALHOST}>;tag={from_tag}\r\n"
            f"Call-ID: {call_id}\r\n"
            "Max-Forwards: 70\r\n"
        )
        invite = (
            f"INVITE sip:{called}@{LOCALHOST}:{port} SIP/2.0\r\n{via}{common}"
            f"To: <sip:{called}@{LOCALHOST}:{port}>\r\n"
            f"Contact: <sip:{caller}@{LOCALHOST}:{local_port}>\r\n"
            "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(invite.encode(), (LOCALHOST, port))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, _ = sock.recvfrom(65535)
            except OSError:
                return None
            text = data.decode(errors="replace")
            status = int(text.split(" ", 2)[1])
            if status < 200:
                continue
            to = next(
                (line for line in text.split("\r\n") if line.lower().startswith(("to:", "t:"))),
                f"To: <sip:{called}@{LOCALHOST}:{port}>",
            )
            ack = (
                f"ACK sip:{called}@{LOCALHOST}:{port} SIP/2.0\r\n{via}{common}{to}\r\n"
                "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            )
            sock.sendto(ack.encode(), (LOCALHOST, port))
            return status
    return None


# --------------------------------------------------------------------- Kamailio
@dataclass
class Kamailio:
    """Kamailio in the foreground with the deploy config, on loopback."""

    workdir: Path
    service_url: str
    regulation_uri: str
    secret: str
    no_reply_timeout_ms: int = 1500
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "kamailio.log"

    @property
    def event_url(self) -> str:
        """Where the script posts dial-leg notifications: the route hook's sibling."""
        return self.service_url.rsplit("/", 1)[0] + "/event"

    def command(self) -> list[str]:
        return [
            kamailio_binary(),
            "-f",
            str(KAMAILIO_CFG),
            "-DD",  # no daemon: stays our child
            "-E",  # log to stderr
            "-n",
            "2",
            "-m",
            "32",
            "-M",
            "8",
            "-w",
            str(self.workdir),
            "-Y",
            str(self.workdir),
            "-P",
            str(self.workdir / "kamailio.pid"),
            "-A",
            f"SIP_LISTEN=udp:{LOCALHOST}:{self.port}",
            "-A",
            f'REGULATOR_URL="{self.service_url}"',
            "-A",
            f'REGULATOR_EVENT_URL="{self.event_url}"',
            "-A",
            f'REGULATION_URI="{self.regulation_uri}"',
            "-A",
            f"NO_REPLY_TIMEOUT_MS={self.no_reply_timeout_ms}",
            "-A",
            "WORKERS=2",
        ]

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "REGULATOR_KAMAILIO_SECRET": self.secret}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kamailio exited at start:\n{self.log()}")
            if sip_options_ok(self.port):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"kamailio did not answer OPTIONS in time:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        _stop(self.process)
        self.process = None


# ------------------------------------------------------------------------ SIPp
@dataclass
class Destination:
    """A SIPp UAS that answers at most one call (a regulation line, a front desk…).

    With ``refuse`` set to a SIP status (486, 503, 603…) it refuses the call with that
    final reply instead of answering it. ``scenario`` names another scenario of
    tests/e2e/sipp (``uas-answer-late.xml``, ``uas-ring-forever.xml``), ``args`` adds
    sipp options (``-d 3000``: the scenario's pause).
    """

    name: str
    port: int
    workdir: Path
    refuse: int | None = None
    scenario: str | None = None
    args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def trace(self) -> Path:
        return self.workdir / f"uas-{self.name}.msg"

    def start(self) -> None:
        self.trace.unlink(missing_ok=True)
        scenario = SCENARIOS / (self.scenario or "uas.xml")
        if self.refuse is not None:
            template = (SCENARIOS / "uas-refuse.xml").read_text(encoding="ascii")
            scenario = self.workdir / f"uas-refuse-{self.refuse}.xml"
            scenario.write_text(
                template.replace("SIP/2.0 CODE ", f"SIP/2.0 {self.refuse} "), encoding="ascii"
            )
        command = [
            sipp_binary(),
            "-sf",
            str(scenario),
            "-i",
            LOCALHOST,
            "-p",
            str(self.port),
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "60s",
            "-trace_msg",
            "-message_file",
            str(self.trace),
            *self.args,
        ]
        errors = self.workdir / f"uas-{self.name}.stderr"
        # sipp may fail to bind on a loaded machine (its media port raced by another
        # sipp starting at the same instant): start it again, and say why if it never
        # comes up.
        for attempt in range(3):
            with errors.open("wb") as stderr:
                self.process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    cwd=self.workdir,
                    start_new_session=True,
                )
            deadline = time.monotonic() + 10
            while not _udp_port_taken(self.port):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            else:
                return
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            time.sleep(0.2 * (attempt + 1))
        said = errors.read_text(errors="replace")[-500:]
        raise RuntimeError(f"sipp UAS {self.name} did not start on port {self.port}: {said}")

    def answered(self) -> bool:
        """The call was answered and completed here (sipp exits 0 after one call)."""
        return (
            self.refuse is None
            and self.scenario != "uas-ring-forever.xml"
            and self.process is not None
            and self.process.poll() == 0
        )

    def finished(self, timeout_s: float = 5.0) -> bool:
        """Wait for this destination's scenario to end well (sipp exit 0)."""
        if self.process is None:
            return False
        try:
            return self.process.wait(timeout=timeout_s) == 0
        except subprocess.TimeoutExpired:
            return False

    def refused(self) -> bool:
        """The call reached this refusing destination and was refused (reply ACKed)."""
        return self.refuse is not None and self.process is not None and self.process.poll() == 0

    def invite(self) -> str:
        """The INVITE this destination received, as traced by sipp."""
        text = self.trace.read_text(errors="replace") if self.trace.exists() else ""
        start = text.find("INVITE sip:")
        if start < 0:
            return ""
        end = text.find("\n\n", start)
        return text[start : end if end > 0 else len(text)]

    def stop(self) -> None:
        _stop(self.process)


def trace_times(path: Path) -> list[tuple[datetime, str, str]]:
    """The messages of a sipp ``-trace_msg`` file: (when, ``sent``/``received``, first
    line), in order. sipp stamps each with the local wall clock to the microsecond:
    differences between traces of one machine are what SIP took."""
    text = path.read_text(errors="replace") if path.exists() else ""
    found: list[tuple[datetime, str, str]] = []
    for block in text.split("----------------------------------------------- ")[1:]:
        lines = block.splitlines()
        if len(lines) < 4:
            continue
        when = datetime.strptime(lines[0].strip(), "%Y-%m-%d %H:%M:%S.%f")
        direction = "sent" if " sent " in lines[1] else "received"
        first = next((line.strip() for line in lines[2:] if line.strip()), "")
        found.append((when, direction, first))
    return found


def trace_time(path: Path, direction: str, starts: str) -> datetime:
    """When the first message ``direction`` (sent/received) whose first line starts
    with ``starts`` (``INVITE``, ``SIP/2.0 200``…) was traced in ``path``."""
    for when, way, first in trace_times(path):
        if way == direction and first.startswith(starts):
            return when
    raise AssertionError(f"no {starts!r} {direction} in {path}")


@dataclass(frozen=True)
class Landing:
    """Where a call landed: the destination's name and the INVITE it received."""

    name: str | None
    invite: str
    call_id: str

    @property
    def request_user(self) -> str:
        """The user part of the Request-URI (``sip:<user>@host``)."""
        first = self.invite.split("\n", 1)[0]
        uri = first.split(" ")[1] if " " in first else ""
        return uri.removeprefix("sip:").split("@", 1)[0]

    def header(self, name: str) -> str | None:
        for line in self.invite.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == name.lower():
                return value.strip()
        return None


def place_call(
    *,
    proxy_port: int,
    caller: str,
    called: str,
    destinations: Sequence[Destination],
    workdir: Path,
    down: Sequence[str] = (),
    timeout_s: float = 20.0,
) -> Landing:
    """One SIPp call from ``caller`` to ``called`` through the proxy.

    Every destination not named in ``down`` waits for a call; the one that answers
    is where the call landed. The others must not have been rung, except those that
    refuse calls: they must have been tried (and refused) before the call moved on.
    """
    call_id_prefix = f"e2e-{uuid.uuid4().hex[:10]}"
    call_id = f"{call_id_prefix}-1"
    started = [d for d in destinations if d.name not in down]
    try:
        for destination in started:
            destination.start()
        uac = subprocess.run(
            [
                sipp_binary(),
                "-sf",
                str(SCENARIOS / "uac.xml"),
                "-key",
                "caller",
                caller,
                "-s",
                called,
                f"{LOCALHOST}:{proxy_port}",
                "-i",
                LOCALHOST,
                "-p",
                str(free_port()),
                "-m",
                "1",
                "-nostdin",
                "-cid_str",
                f"{call_id_prefix}-%u",
                "-timeout",
                f"{int(timeout_s)}s",
                "-timeout_error",
                "-trace_msg",
                "-message_file",
                str(workdir / f"uac-{call_id_prefix}.msg"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=workdir,
            timeout=timeout_s + 10,
            check=False,
        )
        assert uac.returncode == 0, (
            f"the call {caller} → {called} failed (sipp exit {uac.returncode}):\n"
            + (workdir / f"uac-{call_id_prefix}.msg").read_text(errors="replace")[-3000:]
        )
        deadline = time.monotonic() + 5
        answered = [d for d in started if d.answered()]
        while not answered and time.monotonic() < deadline:
            time.sleep(0.05)
            answered = [d for d in started if d.answered()]
        assert len(answered) <= 1, f"one call rang several places: {[d.name for d in answered]}"
        rung = [d.name for d in started if d.refuse is None and d not in answered and d.invite()]
        assert not rung, f"destinations rung without answering: {rung}"
        untried = [d.name for d in started if d.refuse is not None and not d.refused()]
        assert not untried, f"refusing destinations never tried: {untried}"
        if not answered:
            return Landing(None, "", call_id)
        return Landing(answered[0].name, answered[0].invite(), call_id)
    finally:
        for destination in started:
            destination.stop()


# ------------------------------------------------------------------- regulator
@dataclass
class Service:
    """``regulator serve`` as a subprocess, configured only through REGULATOR_* env."""

    workdir: Path
    env: Mapping[str, str]
    port: int = field(default_factory=lambda: free_port(socket.SOCK_STREAM))
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "regulator.log"

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGULATOR_")}
        env.update(self.env)
        env.update(
            {
                "REGULATOR_HOST": LOCALHOST,
                "REGULATOR_PORT": str(self.port),
                "REGULATOR_LOG_FORMAT": "json",
                "REGULATOR_LOG_LEVEL": "INFO",
            }
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "regulator", "serve"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"regulator serve exited at start:\n{self.log()}")
            if self.ready():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"regulator serve was not ready in time:\n{self.log()}")

    def ready(self) -> bool:
        """GET /readyz answers 200."""
        connection = http.client.HTTPConnection(LOCALHOST, self.port, timeout=1)
        try:
            connection.request("GET", "/readyz")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> Iterator[dict[str, object]]:
        """The JSON log lines written so far."""
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    yield event

    def webhook_line(self, call_id: str, timeout_s: float = 3.0) -> dict[str, object] | None:
        """The canonical log line of the webhook about ``call_id``."""
        deadline = time.monotonic() + timeout_s
        while True:
            for event in self.log_events():
                if event.get("event") == "webhook" and event.get("call_id") == call_id:
                    return event
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def stop(self) -> None:
        _stop(self.process, timeout=15.0)
        self.process = None
