"""The store's side of re-sealing, on every backend: the escrow is kept with the
envelope; a re-sealed copy replaces the stored one and requeues its deliveries, and a
relay takes it only in place of a copy held for a revoked key."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from gateway.store.base import Store
from tests.contract.helpers import HANOI, HQ, T0, mid, record

HELD = "sealed to revoked encryption key"


async def _sent(store: Store, n: int, *, escrow: bytes | None = b"escrow") -> None:
    await store.accept(
        replace(record(n), escrow=escrow), next_hops=[HQ], deliver_here=False, hop_ack=None, now=T0
    )


async def test_the_escrow_is_kept_and_a_resealed_copy_replaces_the_envelope(store: Store) -> None:
    await _sent(store, 1)
    await _sent(store, 2, escrow=None)
    assert await store.escrow(mid(1)) == b"escrow"
    assert await store.escrow(mid(2)) is None
    assert await store.escrow("unknown") is None
    now = T0 + timedelta(minutes=1)
    await store.hold(mid(1), now=now, reason=f"{HELD} K of {HANOI}")
    n = await store.replace_sealed(
        mid(1),
        data=b"new bytes",
        digest=b"n" * 32,
        chain=b"c" * 64,
        hop_ack=None,
        expected_digest=bytes([1]) * 32,
        requeue=("held", "deferred", "forwarded"),
        held_for=None,
        now=now,
        reason="resealed",
    )
    assert n == 1
    got = await store.get_envelope(mid(1))
    assert got is not None and got.data == b"new bytes" and got.digest == b"n" * 32
    assert [q.state for q in await store.queue() if q.message_id == mid(1)] == ["queued"]
    history = [(t.state, t.reason) for t in await store.history(mid(1))]
    assert history[-1] == ("queued", "resealed")
    # The same copy again changes nothing (same digest).
    again = await store.replace_sealed(
        mid(1),
        data=b"new bytes",
        digest=b"n" * 32,
        chain=b"c" * 64,
        hop_ack=None,
        expected_digest=b"n" * 32,
        requeue=("held", "queued"),
        held_for=None,
        now=now,
        reason="resealed",
    )
    assert again == 0


async def test_a_relay_replaces_only_a_copy_held_for_a_revoked_key(store: Store) -> None:
    await _sent(store, 3)
    now = T0 + timedelta(minutes=1)
    kwargs = dict(
        data=b"resealed",
        digest=b"r" * 32,
        chain=b"c" * 64,
        hop_ack=b"{}",
        expected_digest=bytes([3]) * 32,
        requeue=("held",),
        held_for=HELD,
        now=now,
        reason="resealed by its origin",
    )
    assert await store.replace_sealed(mid(3), **kwargs) == 0  # queued, not held
    await store.hold(mid(3), now=now, reason="operator: looking at it")
    assert await store.replace_sealed(mid(3), **kwargs) == 0  # held, for another reason
    got = await store.get_envelope(mid(3))
    assert got is not None and got.data != b"resealed"
    await store.release(mid(3), now=now, reason="ok")
    await store.hold(mid(3), now=now, reason=f"{HELD} K of {HANOI}")
    assert await store.replace_sealed(mid(3), **kwargs) == 1
    got = await store.get_envelope(mid(3))
    assert got is not None and got.data == b"resealed"
    # A retry of that copy gets the relay's acknowledgement of the re-sealed one.
    again = await store.accept(record(3), next_hops=[HQ], deliver_here=False, hop_ack=None, now=now)
    assert not again.new and again.hop_ack == b"{}"
