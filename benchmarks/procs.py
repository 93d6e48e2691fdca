"""Processes the benchmark owns: redis-server, the service, the bare endpoint, wrk.

Everything runs on this machine's loopback or unix sockets, in a temporary
directory, and is stopped by the harness (by process id) when it ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Core of the service under test; load generators and Redis use the other one.
SERVICE_CORE = 0
LOAD_CORE = 1


def pinned(core: int, argv: Sequence[str]) -> list[str]:
    """``argv`` under ``taskset -c core`` when taskset exists and the core does."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > core:
        return ["taskset", "-c", str(core), *argv]
    return list(argv)


def pinned_set(cores: Sequence[int], argv: Sequence[str]) -> list[str]:
    """``argv`` under ``taskset -c <cores>`` (those of them that exist)."""
    present = [c for c in cores if (os.cpu_count() or 1) > c]
    if shutil.which("taskset") and present:
        return ["taskset", "-c", ",".join(map(str, present)), *argv]
    return list(argv)


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (``serve --workers N``: its workers)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return sorted(found)


def pin_self(core: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > core:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {core})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(
    url: str, timeout_s: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until ``url`` answers 200 (raise if the process died or time ran out)."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout_s} s ({last})")


def http_get(url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 10.0) -> bytes:
    req = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310 - loopback
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - loopback
        body: bytes = resp.read()
        return body


def stop(proc: subprocess.Popen[bytes] | None, timeout_s: float = 15.0) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
    if proc is None or proc.poll() is not None:
        return proc.returncode if proc is not None else None
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (children excluded)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0])
    except OSError:
        pass
    return out


class Redis:
    """A private redis-server: unix socket only, no persistence, pinned to the load core."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("redis-server not found: apt-get install -y redis-server")
        argv = [
            exe,
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        self.proc = subprocess.Popen(pinned(LOAD_CORE, argv), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            if self.socket.exists():
                with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.socket))
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def used_memory_mb(self) -> float:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.socket))
            s.sendall(b"INFO memory\r\n")
            data = b""
            while b"used_memory:" not in data or not data.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        for line in data.decode().splitlines():
            if line.startswith("used_memory:"):
                return int(line.split(":")[1]) / 2**20
        return 0.0

    def stop(self) -> None:
        stop(self.proc)


def python() -> str:
    return sys.executable


def regulator_exe() -> list[str]:
    """The ``regulator`` console script of this environment (as production runs it)."""
    exe = Path(sys.executable).with_name("regulator")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "regulator"]
