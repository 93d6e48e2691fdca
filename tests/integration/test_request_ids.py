"""Request ids: every response carries one (the caller's own when it sent a sane one),
fresh ones never repeat, and a forked worker does not draw the ids of its parent."""

from __future__ import annotations

import os
import re

from regulator.web.middlewares import RequestIds
from tests.support.app import AppClient

HEX32 = re.compile(r"[0-9a-f]{32}")


async def test_every_response_has_a_fresh_request_id(client: AppClient) -> None:
    ids = []
    for _ in range(50):
        response = await client.get("/healthz")
        ids.append(response.headers["X-Request-Id"])
    assert all(HEX32.fullmatch(i) for i in ids), ids[:3]
    assert len(set(ids)) == 50


async def test_a_sane_incoming_request_id_is_kept_and_a_bad_one_replaced(
    client: AppClient,
) -> None:
    kept = await client.get("/healthz", headers={"X-Request-Id": "proxy-42"})
    assert kept.headers["X-Request-Id"] == "proxy-42"
    too_long = await client.get("/healthz", headers={"X-Request-Id": "x" * 65})
    assert HEX32.fullmatch(too_long.headers["X-Request-Id"])


def test_ids_are_unique_and_a_forked_child_draws_its_own() -> None:
    ids = RequestIds()
    parent = [ids() for _ in range(1000)]
    assert len(set(parent)) == 1000 and all(HEX32.fullmatch(i) for i in parent)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what a `serve --workers N` worker would hand out
        os.write(write, "\n".join(ids() for _ in range(1000)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split("\n")
    os.waitpid(pid, 0)
    assert len(child) == 1000
    assert not set(child) & set(parent), "the child repeated ids of its parent"
    assert child[0][:20] != parent[0][:20]
