"""Fixed-rate open-loop HTTP load generator (what wrk2 does; Debian ships only wrk).

Request ``i`` is *scheduled* at ``t0 + i / rate`` whatever happened to the previous
ones, and its latency is measured from that scheduled instant to the last byte of
its response — so a stall of the server is charged to every request that should
have been sent during it (no coordinated omission). Requests are pre-built bytes
(pre-signed Twilio webhooks of distinct calls, :mod:`benchmarks.workload`), sent
over a pool of keep-alive connections the way a reverse proxy would: on an idle
connection if there is one, else queued until one frees up (the wait counts).

Two threads: the sender sleeps until each scheduled instant (timer slack set to
1 µs) and writes; the receiver waits on epoll, parses responses and hands a freed
connection the oldest queued request. The send lag (actual − scheduled) is reported
to show the generator kept its schedule.

    python -m benchmarks.openloop --port 8080 --rate 1000 --duration 30

prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import math
import resource
import select
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from benchmarks import workload


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    buf: bytearray = field(default_factory=bytearray)
    scheduled: int = 0  # ns, of the request in flight
    sent: int = 0


def _set_timer_slack(ns: int) -> None:
    """Sleep precision: the default 50 µs timer slack would blur the schedule."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(29, ns, 0, 0, 0)  # PR_SET_TIMERSLACK


def _parse(buf: bytearray) -> tuple[int, int] | None:
    """(status, total length) of the first complete response in ``buf``, or None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
            break
    total = end + 4 + length
    if len(buf) < total:
        return None
    return status, total


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 if empty)."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(round(q * len(sorted_values) / 100, 6)) - 1))
    return float(sorted_values[k])


class OpenLoop:
    def __init__(
        self,
        host: str,
        port: int,
        requests: list[bytes],
        rate: float,
        conns: int,
        warmup_s: float,
    ) -> None:
        self.requests = requests
        self.interval_ns = int(1e9 / rate)
        self.warmup = int(warmup_s * rate)
        self.lock = threading.Lock()
        self.idle: deque[_Conn] = deque()
        self.backlog: deque[tuple[int, int]] = deque()  # (scheduled ns, request index)
        self.by_fd: dict[int, _Conn] = {}
        self.epoll = select.epoll()
        for _ in range(conns):
            sock = socket.create_connection((host, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            conn = _Conn(sock)
            self.by_fd[sock.fileno()] = conn
            self.idle.append(conn)
            self.epoll.register(sock.fileno(), select.EPOLLIN)
        self.latency: list[int] = []
        self.service: list[int] = []
        self.lag: list[int] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.completed = 0
        self.sender_done = False
        self.max_backlog = 0

    def _send(self, conn: _Conn, scheduled: int, index: int) -> None:
        conn.scheduled = scheduled
        conn.sent = time.perf_counter_ns()
        data = self.requests[index % len(self.requests)]
        try:
            n = conn.sock.send(data)
            if n < len(data):  # never happens with ~600-byte requests; be correct anyway
                conn.sock.setblocking(True)
                conn.sock.sendall(data[n:])
                conn.sock.setblocking(False)
        except OSError:
            self.errors += 1
        if scheduled >= self.t0 + self.warmup * self.interval_ns:
            self.lag.append(conn.sent - scheduled)

    def _sender(self, total: int) -> None:
        _set_timer_slack(1000)
        for i in range(total):
            scheduled = self.t0 + i * self.interval_ns
            delay = scheduled - time.perf_counter_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
            with self.lock:
                if self.idle:
                    self._send(self.idle.popleft(), scheduled, i)
                else:
                    self.backlog.append((scheduled, i))
                    self.max_backlog = max(self.max_backlog, len(self.backlog))
        self.sender_done = True

    def run(self, total: int, timeout_s: float = 10.0) -> None:
        self.t0 = time.perf_counter_ns() + 50_000_000
        sender = threading.Thread(target=self._sender, args=(total,), daemon=True)
        sender.start()
        measured_from = self.t0 + self.warmup * self.interval_ns
        deadline: float | None = None
        while self.completed + self.errors < total:
            if self.sender_done and deadline is None:
                deadline = time.monotonic() + timeout_s
            if deadline is not None and time.monotonic() > deadline:
                break
            for fd, _ in self.epoll.poll(0.05):
                conn = self.by_fd[fd]
                try:
                    data = conn.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.errors += 1
                    self.epoll.unregister(fd)
                    continue
                conn.buf += data
                parsed = _parse(conn.buf)
                if parsed is None:
                    continue
                now = time.perf_counter_ns()
                status, length = parsed
                del conn.buf[:length]
                self.completed += 1
                if conn.scheduled >= measured_from:
                    self.latency.append(now - conn.scheduled)
                    self.service.append(now - conn.sent)
                    self.statuses[status] = self.statuses.get(status, 0) + 1
                with self.lock:
                    if self.backlog:
                        scheduled, index = self.backlog.popleft()
                        self._send(conn, scheduled, index)
                    else:
                        self.idle.append(conn)
        sender.join(timeout=1.0)
        self.elapsed_s = (time.perf_counter_ns() - self.t0) / 1e9

    def summary(self, total: int) -> dict[str, Any]:
        lat = sorted(self.latency)
        svc = sorted(self.service)
        lag = sorted(self.lag)
        usage = resource.getrusage(resource.RUSAGE_SELF)

        def ms(values: list[int], q: float) -> float:
            return round(percentile(values, q) / 1e6, 3)

        return {
            "scheduled": total,
            "completed": self.completed,
            "measured": len(lat),
            "errors": self.errors,
            "missing": total - self.completed - self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "non_200": sum(v for k, v in self.statuses.items() if k != 200),
            "elapsed_s": round(self.elapsed_s, 3),
            "achieved_rate": round(self.completed / self.elapsed_s, 1) if self.elapsed_s else 0,
            "latency_ms": {
                "p50": ms(lat, 50),
                "p90": ms(lat, 90),
                "p99": ms(lat, 99),
                "p999": ms(lat, 99.9),
                "max": round(lat[-1] / 1e6, 3) if lat else 0.0,
            },
            "service_ms": {"p50": ms(svc, 50), "p99": ms(svc, 99), "p999": ms(svc, 99.9)},
            "send_lag_ms": {"p50": ms(lag, 50), "p99": ms(lag, 99), "p999": ms(lag, 99.9)},
            "max_backlog": self.max_backlog,
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds (incl. warm-up)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds not measured")
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--tag", default="ol", help="keeps these call ids apart from wrk's")
    args = parser.parse_args(argv)
    total = int(args.rate * args.duration)
    host = f"{args.host}:{args.port}"
    reqs = [
        workload.raw_request(e, host) for e in workload.entries(total, seed=args.seed, tag=args.tag)
    ]
    gen = OpenLoop(args.host, args.port, reqs, args.rate, args.conns, args.warmup)
    gen.run(total)
    json.dump(gen.summary(total), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
