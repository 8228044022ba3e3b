"""The relay end to end, as real processes on loopback: delivery with receipts,
kill -9 at every step, a randomised crash run, a peer down then back, expiry.

Every check is the same: each accepted message is delivered exactly once at its
destination (one inbox folder, one 'received' transition) and its origin holds a
verified receipt.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.demo.network import Network
from gateway.relay.outbox import Document, send_documents
from gateway.site.context import SiteContext, load_site

FAST = {
    "VALISE_RELAY_LEASE_SECONDS": "2",
    "VALISE_RELAY_RETRY_BASE_SECONDS": "0.2",
    "VALISE_RELAY_RETRY_MAX_SECONDS": "1",
    "VALISE_RELAY_REQUEST_TIMEOUT_SECONDS": "5",
    "VALISE_RELAY_DIRECTORY_POLL_SECONDS": "1",
}


async def _send(net: Network, origin: str, to: str, n: int, tag: str) -> list[str]:
    ctx = await load_site(net.sites[origin].directory)
    try:
        return [
            await send_documents(
                ctx,
                [to],
                [Document(f"{tag}-{i}.txt", "text/plain", f"{tag} {i}\n".encode())],
                now=datetime.now(UTC),
                subject=f"{tag} {i}",
            )
            for i in range(n)
        ]
    finally:
        await ctx.store.close()


async def _wait_receipts(net: Network, origin: str, ids: list[str], timeout: float) -> set[str]:
    ctx = await load_site(net.sites[origin].directory)
    try:
        deadline = time.monotonic() + timeout
        missing = set(ids)
        while missing and time.monotonic() < deadline:
            for mid in list(missing):
                if await ctx.store.receipt(mid) is not None:
                    missing.discard(mid)
            if missing:
                await asyncio.sleep(0.1)
        return missing
    finally:
        await ctx.store.close()


async def _check_exactly_once(net: Network, destination: str, ids: list[str]) -> None:
    ctx: SiteContext = await load_site(net.sites[destination].directory)
    try:
        inbox = net.sites[destination].directory / "inbox"
        for mid in ids:
            assert (inbox / mid).is_dir(), f"{mid} not delivered at {destination}"
            received = [t for t in await ctx.store.history(mid) if t.state == "received"]
            assert len(received) == 1, f"{mid} received {len(received)} times"
        folders = [p.name for p in inbox.iterdir() if not p.name.startswith(".")]
        assert sorted(folders) == sorted(ids), "unexpected or duplicate deliveries"
    finally:
        await ctx.store.close()


def test_documents_flow_with_receipts_both_ways(tmp_path: Path) -> None:
    with Network(tmp_path, env=FAST) as net:
        relayed = asyncio.run(_send(net, "M-PARIS", "M-HANOI", 5, "relayed"))
        to_hq = asyncio.run(_send(net, "M-PARIS", "HQ", 3, "to-hq"))
        from_hq = asyncio.run(_send(net, "HQ", "M-HANOI", 3, "from-hq"))
        assert not asyncio.run(_wait_receipts(net, "M-PARIS", relayed + to_hq, 30))
        assert not asyncio.run(_wait_receipts(net, "HQ", from_hq, 30))
        asyncio.run(_check_exactly_once(net, "M-HANOI", relayed + from_hq))
        asyncio.run(_check_exactly_once(net, "HQ", to_hq))
        # HQ relayed the mission-to-mission envelopes blind: it holds no plaintext.
        assert not any((net.sites["HQ"].directory / "inbox" / mid).exists() for mid in relayed)


# Which process dies at which point of a mission -> HQ -> mission delivery.
CRASHES = [
    ("HQ", "hop-before-commit"),
    ("HQ", "hop-after-commit"),
    ("M-PARIS", "courier-after-claim"),
    ("M-PARIS", "courier-after-post"),
    ("HQ", "courier-after-post"),
    ("M-HANOI", "hop-after-commit"),
    ("M-HANOI", "deliver-after-inbox"),
    ("M-HANOI", "deliver-after-receipt"),
    ("M-PARIS", "receipt-before-mark"),
]


@pytest.mark.parametrize(("victim", "point"), CRASHES, ids=[f"{v}:{p}" for v, p in CRASHES])
def test_kill_9_at_each_step_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, victim: str, point: str
) -> None:
    site_env = {victim: {"VALISE_RELAY_CRASH_AT": point}}
    with Network(tmp_path, env=FAST, site_env=site_env) as net:
        ids = asyncio.run(_send(net, "M-PARIS", "M-HANOI", 5, point))
        proc = net.sites[victim]
        deadline = time.monotonic() + 30
        while proc.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not proc.running, f"{victim} never reached {point}"
        assert (proc.directory / f".crashed-{point}").exists()
        assert proc.proc is not None and proc.proc.returncode == -9
        proc.start()
        assert not asyncio.run(_wait_receipts(net, "M-PARIS", ids, 45))
        asyncio.run(_check_exactly_once(net, "M-HANOI", ids))


def test_randomised_hq_kills_300_messages(tmp_path: Path) -> None:
    rng = random.Random(20261201)
    with Network(tmp_path, env=FAST) as net:
        hq = net.sites["HQ"]
        ids: list[str] = []
        for round_ in range(4):
            ids += asyncio.run(_send(net, "M-PARIS", "M-HANOI", 75, f"r{round_}"))
            time.sleep(rng.uniform(0.0, 1.5))
            hq.kill()
            time.sleep(rng.uniform(0.1, 1.0))
            hq.start()
        assert len(ids) == 300
        assert not asyncio.run(_wait_receipts(net, "M-PARIS", ids, 120))
        asyncio.run(_check_exactly_once(net, "M-HANOI", ids))


def test_peer_down_then_back_drains_by_itself(tmp_path: Path) -> None:
    with Network(tmp_path, env=FAST) as net:
        hanoi = net.sites["M-HANOI"]
        hanoi.stop()
        ids = asyncio.run(_send(net, "M-PARIS", "M-HANOI", 10, "down"))
        time.sleep(3)  # HQ accepts and keeps retrying with backoff
        assert asyncio.run(_wait_receipts(net, "M-PARIS", ids, 0.1)) == set(ids)
        hanoi.start()
        assert not asyncio.run(_wait_receipts(net, "M-PARIS", ids, 45))
        asyncio.run(_check_exactly_once(net, "M-HANOI", ids))


def test_expired_message_fails_with_a_reason(tmp_path: Path) -> None:
    with Network(tmp_path, env=FAST) as net:
        net.sites["M-HANOI"].stop()

        async def send_short_lived() -> str:
            ctx = await load_site(net.sites["M-PARIS"].directory)
            try:
                from envelope.model import PartInfo, SealedHeader
                from envelope.seal import Recipient, Sealing, new_routing, seal_bytes
                from gateway.relay.submit import submit

                now = datetime.now(UTC)
                routing = new_routing(
                    origin="M-PARIS",
                    destinations=["M-HANOI"],
                    now=now,
                    expires=now + timedelta(seconds=3),
                )
                key = ctx.directory.site("M-HANOI").active_encryption_key()
                sealing = Sealing(
                    routing=routing,
                    sender=ctx.keys.signing,
                    recipients=[Recipient("M-HANOI", key)],
                    sealed=SealedHeader(parts=(PartInfo("x", "text/plain", 1),)),
                )
                await submit(ctx, seal_bytes(sealing, [b"x"]), now)
                return routing.message_id
            finally:
                await ctx.store.close()

        mid = asyncio.run(send_short_lived())

        async def states() -> list[tuple[str, str]]:
            ctx = await load_site(net.sites["HQ"].directory)
            try:
                return [(t.state, t.reason) for t in await ctx.store.history(mid)]
            finally:
                await ctx.store.close()

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and ("failed", "expired") not in asyncio.run(states()):
            time.sleep(0.3)
        assert ("failed", "expired") in asyncio.run(states())

        async def origin_states() -> list[tuple[str, str]]:
            ctx = await load_site(net.sites["M-PARIS"].directory)
            try:
                return [(t.state, t.reason) for t in await ctx.store.history(mid)]
            finally:
                await ctx.store.close()

        # The origin learns by itself: forwarded, but no receipt before expiry.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and ("failed", "expired") not in asyncio.run(
            origin_states()
        ):
            time.sleep(0.3)
        assert ("failed", "expired") in asyncio.run(origin_states())
