"""Stored envelopes are never silently overwritten or resurrected, on every backend.

- ``delete`` leaves a tombstone until the message's expiry: accepting the id again
  (a replayed copy) is answered ``deleted`` and stores nothing, in accept() and in
  accept_many(), until the expiry housekeeping purges the tombstone.
- ``replace_sealed`` replaces only the copy its caller compared (``expected_digest``):
  a replacement checked against one copy cannot land on another.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from gateway.store._common import TOMBSTONE_GRACE
from gateway.store.base import Store
from tests.contract.helpers import HQ, PARIS, T0, mid, record

HELD = "sealed to revoked encryption key"


async def _accept(store: Store, n: int, *, at: timedelta = timedelta(0)) -> None:
    done = await store.accept(
        record(n), next_hops=[PARIS], deliver_here=False, hop_ack=b'{"first": 1}', now=T0 + at
    )
    assert done.new


async def test_a_deleted_message_is_refused_until_it_expires(store: Store) -> None:
    await _accept(store, 1)
    assert await store.delete(mid(1), now=T0 + timedelta(minutes=1), reason="recalled") == 1
    later = T0 + timedelta(minutes=2)
    again = await store.accept(
        record(1), next_hops=[PARIS], deliver_here=True, hop_ack=b"{}", now=later
    )
    assert again.deleted and not again.new and again.hop_ack is None
    assert await store.get_envelope(mid(1)) is None
    assert not [q for q in await store.queue() if q.message_id == mid(1)]
    assert [t.state for t in await store.history(mid(1))] == ["queued", "deleted"]
    # In a batch, beside a new envelope, and twice over.
    await store.accept_many(
        [(record(2), [PARIS], False, None)], now=later
    )  # another message, so the batch has a known id too
    outcomes = await store.accept_many(
        [
            (record(1), [PARIS], False, b"{}"),
            (record(3), [PARIS], False, b"{}"),
            (record(1), [PARIS], True, b"{}"),
            (record(2), [PARIS], False, b"{}"),
        ],
        now=later,
    )
    assert [(o.new, o.deleted) for o in outcomes] == [
        (False, True),
        (True, False),
        (False, True),
        (False, False),
    ]
    assert await store.get_envelope(mid(1)) is None
    assert await store.get_envelope(mid(3)) is not None


async def test_the_tombstone_is_purged_by_expiry_after_its_grace(store: Store) -> None:
    await _accept(store, 4)
    await store.delete(mid(4), now=T0 + timedelta(minutes=1), reason="recalled")
    expires = record(4).expires
    await store.expire(now=expires)  # expired, but within the grace: still refused
    kept = await store.accept(
        record(4), next_hops=[PARIS], deliver_here=False, hop_ack=None, now=expires
    )
    assert kept.deleted
    await store.expire(now=expires + TOMBSTONE_GRACE)
    # The hop checks refuse an expired envelope before the store sees it; the store
    # itself no longer remembers the id.
    gone = await store.accept(
        record(4), next_hops=[PARIS], deliver_here=False, hop_ack=None, now=expires
    )
    assert gone.new and not gone.deleted


async def test_deleting_an_expired_or_unknown_message_leaves_no_tombstone(store: Store) -> None:
    await store.accept(
        replace(record(5), expires=T0 + timedelta(minutes=5)),
        next_hops=[PARIS],
        deliver_here=False,
        hop_ack=None,
        now=T0,
    )
    await store.delete(mid(5), now=T0 + timedelta(minutes=10), reason="cleanup")
    assert await store.delete(mid(6), now=T0, reason="no such message") == 0
    for n in (5, 6):
        again = await store.accept(
            record(n), next_hops=[PARIS], deliver_here=False, hop_ack=None, now=T0
        )
        assert again.new, n


async def test_a_replacement_lands_only_on_the_copy_it_was_checked_against(store: Store) -> None:
    await store.accept(
        replace(record(7), origin=HQ), next_hops=[PARIS], deliver_here=False, hop_ack=None, now=T0
    )
    now = T0 + timedelta(minutes=1)
    await store.hold(mid(7), now=now, reason=f"{HELD} K of {PARIS}")
    kwargs = dict(
        data=b"resealed",
        digest=b"r" * 32,
        chain=b"c" * 64,
        hop_ack=b"{}",
        requeue=("held",),
        held_for=HELD,
        now=now,
        reason="resealed by its origin",
    )
    # Checked against another copy than the one stored (it changed meanwhile).
    assert await store.replace_sealed(mid(7), expected_digest=b"x" * 32, **kwargs) == 0
    got = await store.get_envelope(mid(7))
    assert got is not None and got.data == record(7).data
    assert [q.state for q in await store.queue() if q.message_id == mid(7)] == ["held"]
    assert await store.replace_sealed(mid(7), expected_digest=record(7).digest, **kwargs) == 1
