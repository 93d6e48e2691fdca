"""Fixtures shared by every test layer.

Redis: the contract and integration suites run against a REAL server. A
session-scoped, test-owned ``redis-server`` (no persistence, Unix socket only) is
started on first use, unless ``REGULATOR_TEST_REDIS_URL`` points at one. Each test
gets its own key prefix (``redis_prefix``), so tests never see each other's keys.
Without ``redis-server`` on the PATH the Redis tests are skipped — except in CI
(``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer, find_redis_server


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    """Path of ``redis-server``; skips the test without it (fails it in CI)."""
    return find_redis_server()


@pytest.fixture(scope="session")
def redis_server_factory() -> Iterator[Callable[..., RedisServer]]:
    """Start dedicated ``redis-server``s (``factory(persistent=False)``), stopped at the end.

    Sockets live in a short temp dir: a Unix socket path must stay under ~100 bytes.
    """
    servers: list[tuple[RedisServer, Path]] = []

    def factory(*, persistent: bool = False) -> RedisServer:
        binary = find_redis_server()
        directory = Path(tempfile.mkdtemp(prefix="regtest-redis-"))
        server = RedisServer(binary, directory, persistent=persistent)
        servers.append((server, directory))
        server.start()
        return server

    yield factory
    for server, directory in servers:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(redis_server_factory: Callable[..., RedisServer]) -> str:
    """URL of the shared test Redis: ``REGULATOR_TEST_REDIS_URL`` or a test-owned server."""
    external = os.environ.get("REGULATOR_TEST_REDIS_URL")
    if external:
        return external
    return redis_server_factory().url


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own."""
    return f"regtest:{uuid.uuid4().hex[:12]}"
