"""trust/unopened.py: whether something received here and not opened yet is sealed to a
key about to be pruned (the gateway's key watcher and ``valise keys`` both ask it)."""

from __future__ import annotations

import pytest

from gateway.store.base import InState, StoreError
from gateway.store.memory import MemoryStore
from gateway.trust import unopened
from gateway.trust.unopened import sealed_to
from tests.conftest import make_site, seal_envelope
from tests.contract.helpers import T0, mid, put

HQ, PARIS, HANOI = make_site("HQ", 1), make_site("M-PARIS", 2), make_site("M-HANOI", 3)
PARIS_KEY = PARIS.decryption.key_id
HANOI_KEY = HANOI.decryption.key_id


async def _store(*envelopes: bytes) -> MemoryStore:
    store = MemoryStore()
    for n, data in enumerate(envelopes, 1):
        await put(store, n, (), here=True, data=data)
    return store


async def test_an_unopened_envelope_to_the_key_going_keeps_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(unopened, "PAGE", 1)  # the match is on the last page
    store = await _store(
        b"not an envelope",
        seal_envelope(HQ, [HANOI], [b"to Hanoi"]),
        seal_envelope(HQ, [PARIS, HANOI], [b"to both"]),
    )
    assert await sealed_to(store, "M-PARIS", {PARIS_KEY, "other"})
    assert not await sealed_to(store, "M-PARIS", {"other"})
    assert not await sealed_to(store, "M-PARIS", set())
    # Hanoi's key id under another site's name does not count.
    assert not await sealed_to(store, "M-PARIS", {HANOI_KEY})


async def test_an_opened_envelope_no_longer_counts() -> None:
    store = await _store(seal_envelope(HQ, [PARIS], [b"opened"]))
    assert await sealed_to(store, "M-PARIS", {PARIS_KEY})
    await store.inbound_set(mid(1), InState.AVAILABLE, reason="opened", now=T0)
    assert not await sealed_to(store, "M-PARIS", {PARIS_KEY})


async def test_a_store_that_cannot_say_keeps_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    store = await _store()

    async def broken(*, after: str, limit: int) -> list[tuple[str, bytes]]:
        raise StoreError("database is locked")

    monkeypatch.setattr(store, "received_heads", broken)
    assert await sealed_to(store, "M-PARIS", {PARIS_KEY})
