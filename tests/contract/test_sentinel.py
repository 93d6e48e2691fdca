"""RedisStore through Redis Sentinel: a test-owned master, replica and sentinel on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from regulator.core.indicators import CALLS
from regulator.ports import StoreError
from regulator.storage.redis import RedisStore
from tests.support.store import MMG, MONTH, call


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int, command: bytes = b"PING\r\n") -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(command)
            return sock.recv(4096)
    except OSError:
        return b""


def _wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


class SentinelSet:
    """A master, one replica and one sentinel (quorum 1), all on 127.0.0.1."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.master_port = _free_port()
        self.replica_port = _free_port()
        self.sentinel_port = _free_port()
        self.processes: list[subprocess.Popen[bytes]] = []

    def _spawn(self, *args: str) -> None:
        self.processes.append(
            subprocess.Popen(
                [self.binary, *args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.directory,
            )
        )

    def _data_node(self, port: int, name: str, *extra: str) -> None:
        node_dir = self.directory / name
        node_dir.mkdir()
        self._spawn(
            "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(node_dir), *extra,
        )  # fmt: skip
        _wait_for(lambda: _answers(port).startswith(b"+PONG"))

    def start(self) -> None:
        self._data_node(self.master_port, "master")
        self._data_node(
            self.replica_port, "replica", "--replicaof", "127.0.0.1", str(self.master_port)
        )
        conf = self.directory / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor mymaster 127.0.0.1 {self.master_port} 1\n"
            "sentinel down-after-milliseconds mymaster 1000\n"
            "sentinel failover-timeout mymaster 5000\n"
        )
        self._spawn(str(conf), "--sentinel")
        _wait_for(lambda: str(self.master_port).encode() in self.master_addr())
        # The sentinel must know the replica before it can fail over to it.
        _wait_for(
            lambda: b"slave" in _answers(self.sentinel_port, b"SENTINEL REPLICAS mymaster\r\n")
        )

    def master_addr(self) -> bytes:
        return _answers(self.sentinel_port, b"SENTINEL GET-MASTER-ADDR-BY-NAME mymaster\r\n")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    @property
    def url(self) -> str:
        return f"sentinel://127.0.0.1:{self.sentinel_port}/mymaster"


@pytest.fixture
def sentinel_set(tmp_path: Path, redis_server_binary: str) -> Iterator[SentinelSet]:
    group = SentinelSet(redis_server_binary, tmp_path)
    try:
        group.start()
        yield group
    finally:
        group.stop()


async def test_redis_store_follows_a_sentinel_failover(sentinel_set: SentinelSet) -> None:
    store = RedisStore(sentinel_set.url, prefix="sentinel", socket_timeout=0.5)
    await store.open()
    assert await store.record_calls([call("CA1")]) == [True]

    # Sentinel refuses until it has seen the replica in sync: ask until it accepts.
    await asyncio.to_thread(
        _wait_for,
        lambda: b"+OK" in _answers(sentinel_set.sentinel_port, b"SENTINEL FAILOVER mymaster\r\n"),
        15.0,
    )
    await asyncio.to_thread(
        _wait_for, lambda: str(sentinel_set.replica_port).encode() in sentinel_set.master_addr()
    )

    deadline = time.monotonic() + 10
    while True:
        # The first command may land on a connection to the old master (now a replica).
        with contextlib.suppress(StoreError):
            await store.record_calls([call("CA2"), call("CA1")])
            break
        assert time.monotonic() < deadline, "the store did not follow the new master"
        await asyncio.sleep(0.1)
    assert await store.get_call("CA2") == call("CA2")
    assert (await store.call_counters(MMG, MONTH))[CALLS] == 2
    await store.close()
