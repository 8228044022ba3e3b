"""gateway/relay/ack_renewal.py ack_for_repeat over a real store (both backends): a repeated
message is answered with its stored first hop acknowledgement unless that one was
signed with a key of ours the directory no longer accepts; then the fresh one is
stored in its place and returned (issue 10, loss 1).

The live test (test_revocation_losses.py) reaches this path only when the sender's
retry comes before the destination's receipt: with per-destination receipts (issue
11) the hub stops retrying as soon as the receipt it relays names the destination,
so the renewal itself is pinned here, with no race.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.relay.ack_renewal import ack_for_repeat
from gateway.store.base import Acceptance, Store
from routing.directory import KeyState
from tests.contract.helpers import HANOI, HQ, T0, mid, record

OLD, NEW = "a" * 32, "b" * 32


def ack(key: str, site: str = HANOI) -> bytes:
    return json.dumps({"site": site, "key": key, "id": mid(1)}).encode()


class Entry:
    def __init__(self, old: KeyState | None, *, retired: tuple[str, ...] = ()) -> None:
        self.old, self.retired_ids = old, retired

    def verify_keys(self) -> dict[str, object]:
        return {NEW: object()}

    def states(self) -> dict[str, tuple[str, KeyState]]:
        listed = {NEW: ("signing", KeyState.ACTIVE)}
        if self.old is not None:
            listed[OLD] = ("signing", self.old)
        return listed


def ctx(store: Store, entry: Entry) -> Any:
    return SimpleNamespace(
        here=HANOI,
        keys=SimpleNamespace(signing=SimpleNamespace(key_id=NEW)),
        directory=SimpleNamespace(site=lambda site: entry),
        store=store,
    )


async def stored_ack(store: Store) -> bytes | None:
    """What the store answers a repeat of message 1 with (its stored first ack)."""
    again = await store.accept(
        record(1, destinations=(HANOI,), received_from=HQ),
        next_hops=[],
        deliver_here=True,
        hop_ack=b"unused",
        now=T0,
    )
    assert not again.new
    return again.hop_ack


async def held_by_hanoi(store: Store, first: bytes) -> None:
    got = await store.accept(
        record(1, destinations=(HANOI,), received_from=HQ),
        next_hops=[],
        deliver_here=True,
        hop_ack=first,
        now=T0,
    )
    assert got == Acceptance(True, first)


def repeat(digest: bytes | None = None) -> Any:
    rec = record(1, destinations=(HANOI,), received_from=HQ)
    if digest is not None:
        rec = replace(rec, digest=digest)
    return SimpleNamespace(record=rec, hop_ack=ack(NEW))


@pytest.mark.parametrize("old", [KeyState.REVOKED, KeyState.RETIRED, None])
async def test_a_stale_first_ack_is_signed_again_and_kept(
    store: Store, old: KeyState | None, caplog: pytest.LogCaptureFixture
) -> None:
    """Revoked, retired, or retired long ago (listed by id only): renewed."""
    await held_by_hanoi(store, ack(OLD))
    entry = Entry(old, retired=(OLD,) if old is None else ())
    with caplog.at_level(logging.INFO, logger="valise.channel"):
        answer = await ack_for_repeat(ctx(store, entry), repeat(), ack(OLD), T0)
    assert answer == ack(NEW)
    assert await stored_ack(store) == ack(NEW)  # the next repeat gets it unchanged
    assert any("hop_ack_renewed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("first", [ack(NEW), ack(OLD, site=HQ), b"not json"])
async def test_a_good_or_foreign_first_ack_is_answered_as_stored(
    store: Store, first: bytes
) -> None:
    """Signed with our current key, signed by another site, or unreadable: not ours
    to judge, so the repeat gets the stored one back and nothing changes."""
    await held_by_hanoi(store, first)
    answer = await ack_for_repeat(ctx(store, Entry(KeyState.REVOKED)), repeat(), first, T0)
    assert answer == first
    assert await stored_ack(store) == first


@pytest.mark.parametrize("old", [KeyState.ACTIVE, KeyState.RETIRING, KeyState.NEXT])
async def test_an_ack_under_a_key_still_accepted_is_kept(store: Store, old: KeyState) -> None:
    await held_by_hanoi(store, ack(OLD))
    answer = await ack_for_repeat(ctx(store, Entry(old)), repeat(), ack(OLD), T0)
    assert answer == ack(OLD)
    assert await stored_ack(store) == ack(OLD)


async def test_another_copy_gets_its_own_ack_and_the_stored_one_stays(store: Store) -> None:
    """A re-sealed copy of the stored message (another digest): answered with the ack
    of what arrived; the stored copy's ack is not replaced, stale or not."""
    await held_by_hanoi(store, ack(OLD))
    other = repeat(digest=bytes([9]) * 32)
    answer = await ack_for_repeat(ctx(store, Entry(KeyState.REVOKED)), other, ack(OLD), T0)
    assert answer == ack(NEW)
    assert await stored_ack(store) == ack(OLD)
