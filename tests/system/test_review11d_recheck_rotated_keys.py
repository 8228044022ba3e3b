"""Review 11d: the first start's re-check of the receipts kept before v11 fails the
destinations whose receipt was verified by v10 but whose keys were rotated since.

A live loopback network (HQ, M-PARIS, M-HANOI as processes). v10 at M-PARIS verified
and kept, as a circular's second receipt:

- message 8: M-HANOI's receipt, signed with M-HANOI's signing key of that time;
- message 12: HQ's receipt, sealed to M-PARIS's encryption key of that time.

Then, as sites do (``valise keys rotate`` / ``keys retire``, gateway/site/keyring.py),
M-HANOI rotated its signing key and M-PARIS its encryption key, and retired the old
ones (not revoked: nothing was compromised). The store is upgraded to v11 and
``valise serve`` runs at M-PARIS: the re-check opens each kept receipt with the keys
*in force now* (gateway/relay/kept_receipts.py ``_open`` -> local_delivery.open_one), so
both are refused ("origin signature refused: ... retired" / "sealed to encryption
key ... which is retired"), the rows are left "not confirmed" and expiry then FAILS
two destinations whose signed, verified receipts v10 kept (``failed`` events,
webhooks, DSNs for mail that was delivered). Kept receipts are old by nature: the
older the receipt, the likelier its keys are retired, and a message long expired is
failed by the first expiry pass right after the start.

Before the migration these rows were ``delivered`` at the message level (v10), and
the migration marks them "re-checking"; no key was compromised. The re-check should
not turn "cannot be re-opened with today's keys" into "not delivered".

Fixed (gateway/relay/kept_receipts.py): M-HANOI's receipt is sealed to M-PARIS's new
key (so it opens) and is verified with M-HANOI's signing key listed retired; HQ's
cannot be opened (M-PARIS's key retired, its private file pruned): its head verifies
and the row closes on v10's verdict under a reason that says so. In process, on both
backends: a signing key revoked or no longer listed, an encryption key of M-PARIS
revoked, a tampered receipt and a second receipt still leave the row "not confirmed".
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from crypto.keys import DecryptionKey
from envelope.model import PartInfo, SealedHeader
from envelope.open import parse_framed_head
from envelope.receipt import RECEIPT_CLASS, RECEIPT_MEDIA_TYPE, RECEIPT_NAME, Receipt, write_receipt
from envelope.seal import Recipient, Sealing, new_routing, seal_bytes
from envelope.values import Priority
from gateway.demo.network import Network
from gateway.relay.kept_receipts import KEPT_UNOPENED, recheck_kept_receipts
from gateway.runtime.events import Event, EventBus
from gateway.site.context import SiteContext, load_site, read_trust
from gateway.site.keystore import SiteKeys, load_site_keys
from gateway.store.base import Store
from routing.directory import Directory, KeyState, parse_directory
from tests.component.test_migration_v11 import (
    EXPIRES,
    HANOI,
    HQ,
    PARIS,
    T0,
    OldStore,
    _build_sqlite,
    digest,
    mid,
    raw,
    upgraded,
)
from tests.component.test_review11b_migration_receipts import add_received_receipt
from tests.support.cli import valise as run_valise
from tests.support.keys import active
from tests.system.test_kept_receipts_recheck import receipt, world  # noqa: F401
from tests.system.test_receipt_relay import ENV, World

ROWS = (
    "SELECT outcome, reason, receipt_for IS NOT NULL FROM destinations"
    " WHERE message_id = ? AND site = ?"
)


def valise(*args: str) -> str:
    return run_valise(*args, check=True).stdout


def shown(folder: Path, site: str, key_id: str) -> str | None:
    d = parse_directory((folder / "directory.xml").read_bytes(), read_trust(folder / "keys"))
    found = d.site(site).states().get(key_id)
    return found[1].value if found else ("gone" if key_id in d.site(site).retired_ids else None)


def sealed_receipt(net: Network, signer: str, names: str) -> tuple[str, bytes, bytes]:
    """A genuine receipt of ``names`` (digest(8)-style digest of its number) signed with
    ``signer``'s active key and sealed to M-PARIS's active encryption key, as of now."""
    paris = net.sites[PARIS].directory
    d = parse_directory((paris / "directory.xml").read_bytes(), read_trust(paris / "keys"))
    n = int(names[-12:], 16)
    at = T0 + timedelta(minutes=3)
    body = write_receipt(Receipt(names, digest(n), signer, at))
    routing = new_routing(
        origin=signer,
        destinations=[PARIS],
        now=at,
        expires=EXPIRES,
        priority=Priority.IMMEDIATE,
        doc_class=RECEIPT_CLASS,
        in_reply_to=names,
    )
    data = seal_bytes(
        Sealing(
            routing=routing,
            sender=load_site_keys(net.sites[signer].directory / "keys").signing,
            recipients=[Recipient(PARIS, d.site(PARIS).active_encryption_key())],
            sealed=SealedHeader(parts=(PartInfo(RECEIPT_NAME, RECEIPT_MEDIA_TYPE, len(body)),)),
        ),
        [body],
    )
    return routing.message_id, data, parse_framed_head(data)[0].digest


def wait_for(what: str, test: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not test():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_receipts_verified_by_v10_under_since_retired_keys_are_not_failed(
    tmp_path: Path,
) -> None:
    env = {**ENV, "VALISE_KEYS_CHECK_SECONDS": "0.3", "VALISE_RELAY_DIRECTORY_POLL_SECONDS": "0.5"}
    net = Network(tmp_path / "net", (PARIS, HANOI), env=env)
    try:
        net.start()
        paris, hanoi = net.sites[PARIS].directory, net.sites[HANOI].directory
        hq_dir = net.sites[HQ].directory
        # What v10 received and verified, under the keys of that time.
        r12 = sealed_receipt(net, HQ, mid(12))  # sealed to M-PARIS's old encryption key
        hq8 = sealed_receipt(net, HQ, mid(8))
        hanoi12 = sealed_receipt(net, HANOI, mid(12))
        # Routine rotations since, the old keys retired (not revoked): M-PARIS's
        # encryption key first, then (8's receipt sealed to the new one in between, so
        # that it opens) M-HANOI's signing key.
        old_enc = active(paris, "encryption")
        valise(
            "keys",
            "rotate",
            "--kind",
            "encryption",
            "--now",
            "--overlap",
            "1h",
            "--dir",
            str(paris),
        )
        valise("keys", "retire", old_enc, "--dir", str(paris))
        wait_for(
            "M-PARIS to list its key retired", lambda: shown(paris, PARIS, old_enc) == "retired"
        )
        r8 = sealed_receipt(net, HANOI, mid(8))  # M-HANOI's old signing key
        old_sig = active(hanoi, "signing")
        valise(
            "keys", "rotate", "--kind", "signing", "--now", "--overlap", "1h", "--dir", str(hanoi)
        )
        valise("keys", "retire", old_sig, "--dir", str(hanoi))
        wait_for(
            "HQ to list both retired",
            lambda: (
                (shown(hq_dir, HANOI, old_sig), shown(hq_dir, PARIS, old_enc))
                == ("retired", "retired")
            ),
        )
        wait_for("M-PARIS to fetch it", lambda: shown(paris, HANOI, old_sig) == "retired")
    finally:
        net.close()

    # M-PARIS's v10 store: two circulars, each with its first receipt recorded and its
    # second one verified and kept; both long expired.
    s = OldStore(10, PARIS)
    s.envelope(8, origin=PARIS, destinations=(HQ, HANOI), receipt=hq8[1])
    s.delivery(8, HQ, "delivered", "receipt")
    add_received_receipt(s, *hq8, HQ)
    add_received_receipt(s, *r8, HANOI, at=T0 + timedelta(minutes=6))
    s.envelope(12, origin=PARIS, destinations=(HANOI, HQ), receipt=hanoi12[1])
    s.delivery(12, HQ, "delivered", "receipt")
    add_received_receipt(s, *hanoi12, HANOI)
    add_received_receipt(s, *r12, HQ, at=T0 + timedelta(minutes=6))
    for table, values in s.rows:
        if table == "envelopes" and values.get("doc_class") == "document":
            values["expires"] = T0 + timedelta(hours=1)
    db = paris / "store.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    _build_sqlite(db, s)
    os.chmod(db, 0o600)

    site = net.sites[PARIS]
    site.start()  # the migration, the re-check, then the workers (expiry)
    time.sleep(2)
    site.stop()
    c = sqlite3.connect(db)
    try:
        got8 = c.execute(ROWS, (mid(8), HANOI)).fetchone()
        got12 = c.execute(ROWS, (mid(12), HQ)).fetchone()
    finally:
        c.close()
    # v10 verified both; no key was revoked: they must not read failed (nor be left
    # to expiry as "not confirmed").
    assert got8[0] == "delivered", got8
    assert got12[0] == "delivered", got12
    # Fix (11d F1): 8's receipt is verified with M-HANOI's signing key listed retired,
    # and names its digest; 12's cannot be re-opened (M-PARIS's key retired, its private
    # file pruned): closed on v10's verdict, and its reason and status say so.
    assert got8 == ("delivered", "receipt", 1), got8
    assert got12 == ("delivered", KEPT_UNOPENED.format(old_enc), 0), got12
    status = valise("status", mid(12), "--dir", str(paris))
    assert "receipts relayed" in status, status
    asyncio.run(asyncio.sleep(0))


REASON = "SELECT reason FROM destinations WHERE message_id = $1 AND site = $2"
LAST = "SELECT reason FROM history WHERE message_id = $1 ORDER BY id DESC LIMIT 1"


def with_state(d: Directory, site: str, key_id: str, state: KeyState | None) -> Directory:
    """``d`` with ``site``'s key ``key_id`` in ``state`` (None: no longer listed, its id
    among the site's retired ids)."""
    e = d.site(site)

    def keys(listed: tuple, key: str) -> tuple:  # type: ignore[type-arg]
        if state is None:
            return tuple((k, s) for k, s in listed if k.key_id != key)
        return tuple((k, state if k.key_id == key else s) for k, s in listed)

    e = replace(
        e,
        signing=keys(e.signing, key_id),
        encryption=keys(e.encryption, key_id),
        retired_ids=e.retired_ids + ((key_id,) if state is None else ()),
    )
    return replace(d, sites=tuple(e if x.site == site else x for x in d.sites))


def over(
    ctx: SiteContext,
    store: Store,
    *,
    directory: Directory | None = None,
    keys: SiteKeys | None = None,
) -> SiteContext:
    """``ctx`` over ``store``, with ``directory`` and ``keys`` in force instead of its own."""
    directory, keys = directory or ctx.directory, keys or ctx.keys
    ctx = replace(ctx, store=store)
    if hasattr(ctx, "_current"):  # a frozen SiteContext: what it replaces as it runs
        return replace(ctx, _current=replace(ctx._current, directory=directory, keys=keys))
    return replace(ctx, directory=directory, keys=keys)


async def start(ctx: SiteContext) -> list[tuple[str, str, str]]:
    seen: list[Event] = []
    bus = EventBus()

    async def note(e: Event) -> None:
        seen.append(e)

    bus.subscribe(note)
    await recheck_kept_receipts(ctx, bus, now=T0 + timedelta(days=1))
    return [(e.kind, e.message_id, e.detail.get("site", "")) for e in seen]


def second_receipt_store(w: World, n: int = 8) -> tuple[OldStore, tuple[str, bytes, bytes]]:
    """v10's store: message ``n`` to HQ and M-HANOI, HQ's receipt recorded, M-HANOI's
    verified and kept (its id, bytes, digest returned)."""
    s = OldStore(10, PARIS)
    hq = receipt(w, HQ, mid(n), digest(n), mid(n))
    hanoi = receipt(w, HANOI, mid(n), digest(n), mid(n))
    s.envelope(n, origin=PARIS, destinations=(HQ, HANOI), receipt=hq[1])
    s.delivery(n, HQ, "delivered", "receipt")
    add_received_receipt(s, *hq, HQ)
    add_received_receipt(s, *hanoi, HANOI, at=T0 + timedelta(minutes=6))
    return s, hanoi


@pytest.mark.parametrize("state", ["retired", "revoked", "unlisted"])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_signers_key_retired_verifies_revoked_or_unlisted_refuses(
    world: World,  # noqa: F811
    backend: str,
    state: str,
    tmp_path: Path,
) -> None:
    s, hanoi = second_receipt_store(world)
    key_id = parse_framed_head(hanoi[1])[0].head.signature_key_id
    shown = {"retired": KeyState.RETIRED, "revoked": KeyState.REVOKED, "unlisted": None}[state]

    async def run() -> None:
        async with upgraded(backend, s, tmp_path) as up:
            ctx = await load_site(world.folder(PARIS))
            await ctx.store.close()
            ctx = over(ctx, up.store, directory=with_state(ctx.directory, HANOI, key_id, shown))
            seen = await start(ctx)
            d = {x.site: x for x in await up.store.destinations(mid(8))}[HANOI]
            reason = await raw(up, REASON, mid(8), HANOI)
            if state == "retired":
                assert (d.state, d.receipt_for, reason) == ("delivered", digest(8), "receipt")
                assert seen == [("delivered", mid(8), HANOI), ("completed", mid(8), "")]
                return
            why = {
                "revoked": f"signing key {key_id} of {HANOI} is revoked",
                "unlisted": f"key {key_id} of {HANOI} was retired or revoked (no longer listed)",
            }[state]
            assert d.state != "delivered"
            assert reason == (
                f"receipt kept before v11 not confirmed: EnvelopeError: origin signature"
                f" refused: {why}"
            )
            assert seen == []

    asyncio.run(run())


@pytest.mark.parametrize("state", ["retired", "revoked"])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_receipt_sealed_to_a_retired_key_of_here_stands_on_v10s_check(
    world: World,  # noqa: F811
    backend: str,
    state: str,
    tmp_path: Path,
) -> None:
    s, hanoi = second_receipt_store(world)
    # 9: M-HANOI's kept receipt altered in its sealed part (the head still verifies).
    hq9 = receipt(world, HQ, mid(9), digest(9), mid(9))
    h9 = receipt(world, HANOI, mid(9), digest(9), mid(9))
    s.envelope(9, origin=PARIS, destinations=(HQ, HANOI), receipt=hq9[1])
    s.delivery(9, HQ, "delivered", "receipt")
    add_received_receipt(s, *hq9, HQ)
    add_received_receipt(s, h9[0], h9[1][:-1] + bytes([h9[1][-1] ^ 1]), h9[2], HANOI)
    # 8 again: a second receipt from M-HANOI, acknowledged after the first: refused.
    later = receipt(world, HANOI, mid(8), digest(8), mid(8), minute=7)
    add_received_receipt(s, *later, HANOI, at=T0 + timedelta(minutes=9))
    key_id = parse_framed_head(hanoi[1])[0].head.recipients[0].key_id
    shown = KeyState(state)

    async def run() -> None:
        async with upgraded(backend, s, tmp_path) as up:
            ctx = await load_site(world.folder(PARIS))
            await ctx.store.close()
            # M-PARIS's encryption key the receipts are sealed to, retired (or revoked)
            # since, its private file gone: a new active key, the old one unusable.
            keys = replace(
                ctx.keys,
                decryption=DecryptionKey.generate(),
                decryptions={},
                unusable={key_id: state},
            )
            directory = with_state(ctx.directory, PARIS, key_id, shown)
            ctx = over(ctx, up.store, directory=directory, keys=keys)
            seen = await start(ctx)
            d8 = {x.site: x for x in await up.store.destinations(mid(8))}[HANOI]
            d9 = {x.site: x for x in await up.store.destinations(mid(9))}[HANOI]
            reason8 = await raw(up, REASON, mid(8), HANOI)
            reason9 = await raw(up, REASON, mid(9), HANOI)
            assert d9.state != "delivered"
            if state == "revoked":
                assert d8.state != "delivered"
                assert reason8 == (
                    "receipt kept before v11 not confirmed: KeyStoreError: sealed to"
                    f" encryption key {key_id} of {PARIS}, which is revoked"
                )
                assert seen == []
                return
            assert (d8.state, d8.receipt_for, d8.receipt_digest) == ("delivered", None, hanoi[2])
            assert reason8 == (
                "receipt kept before v11: v10's check stands, it cannot be re-opened"
                f" (encryption key {key_id} retired)"
            )
            assert d8.receipt_at == T0 + timedelta(minutes=6)
            history = [h.reason for h in await up.store.history(mid(8)) if h.peer == HANOI]
            assert history[-1].startswith(f"{reason8} sha256:"), history
            assert await raw(up, LAST, later[0]) == (
                f"receipt refused at the v11 re-check: a second receipt from {HANOI} for"
                f" {mid(8)}: the first (sha256 {hanoi[2].hex()[:16]}…) stands"
            ), await raw(up, LAST, later[0])
            assert reason9 == (
                "receipt kept before v11 not confirmed: DigestMismatch: segment 1 does not"
                " match the signed manifest"
            )
            assert seen == [("delivered", mid(8), HANOI), ("completed", mid(8), "")]

    asyncio.run(run())
