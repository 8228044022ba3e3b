"""A circular that lists its own origin among its destinations (review 11, F2):
M-PARIS -> [M-PARIS, M-HANOI] and HQ -> [HQ, M-HANOI] must end delivered (2 of 2) at the
origin once both copies are in, and expiry must not fail the copy opened at the origin."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.demo.network import Network
from tests.system.test_receipt_relay import ENV, World, on_site, send


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    net = Network(tmp_path_factory.mktemp("rev11self"), ("M-PARIS", "M-HANOI"), env=ENV)
    try:
        net.start()
        yield World(net)
    finally:
        net.close()


def dests(world: World, site: str, mid: str) -> dict[str, tuple[str, str]]:
    async def q(ctx: Any) -> Any:
        return {d.site: (d.state, d.reason) for d in await ctx.store.destinations(mid)}

    got: dict[str, tuple[str, str]] = on_site(world, site, q)
    return got


@pytest.mark.parametrize("origin", ["M-PARIS", "HQ"])
def test_a_circular_to_its_own_origin_completes(world: World, origin: str) -> None:
    x = send(world, origin, [origin, "M-HANOI"])
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        rows = dests(world, origin, x)
        if rows and all(s == "delivered" for s, _ in rows.values()):
            break
        time.sleep(0.5)
    print(origin, "rows:", dests(world, origin, x))

    async def inbox(ctx: Any) -> Any:
        return [(i.message_id == x, i.state) for i in await ctx.store.inbox() if i.message_id == x]

    print(origin, "inbox item:", on_site(world, origin, inbox))
    assert all(s == "delivered" for s, _ in dests(world, origin, x).values())


def test_expiry_does_not_fail_the_origins_own_delivered_copy(world: World) -> None:
    from datetime import UTC, datetime, timedelta

    from gateway.relay.outbox import Document, send_documents

    doc = Document("short.txt", "text/plain", b"short-lived\n")
    expires = datetime.now(UTC) + timedelta(seconds=12)
    x: str = on_site(
        world,
        "M-PARIS",
        lambda ctx: send_documents(
            ctx, ["M-PARIS", "M-HANOI"], [doc], now=datetime.now(UTC), expires=expires
        ),
    )
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        rows = dests(world, "M-PARIS", x)
        if rows and all(s in ("delivered", "failed") for s, _ in rows.values()):
            break
        time.sleep(0.5)
    rows = dests(world, "M-PARIS", x)

    async def inbox(ctx: Any) -> Any:
        return [i.state for i in await ctx.store.inbox() if i.message_id == x]

    print("rows after expiry:", rows, "own inbox:", on_site(world, "M-PARIS", inbox))
    assert rows["M-HANOI"][0] == "delivered"
    assert rows["M-PARIS"][0] != "failed", "the origin's own copy, in its inbox, reads failed"
