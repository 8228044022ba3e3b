"""What the key drill (test_key_drill.py) found, each reproduced alone (each failed
before its fix):

- Mail sealed to a mission's encryption key that HQ revoked waited, held, for an
  operator's ``queue reseal`` although the mission had published its new key: its
  origin now seals it again by itself (gateway/relay/reseal_sweeps.py reseal_revoked).
- A document its origin signed again (its signing key revoked) after the first copy
  had already reached the relay and its destination was never receipted: the relay
  answered the new copy with its stored acknowledgement of the old one, which the
  origin could not verify (the delivery failed), and the destination's receipt named
  the old copy's digest, which the origin refused. The relay now acknowledges the copy
  it received (gateway/relay/ack_renewal.py), and the origin accepts a receipt for any copy
  it replaced (the store keeps their digests, migration v10).
- A receipt sealed to the origin's encryption key that HQ revoked while the receipt was
  on its way stayed held at HQ for ever: receipts kept no escrow, and their sender
  counts them done once HQ took them. They now keep one, and their sender seals them
  again when it sees the key revoked (gateway/relay/receipt_reseal.py).
- The key watcher signed again a message whose one delivery was being sent: the store
  replaced the copy though no delivery was queued again, the try in flight (old copy)
  was refused, and the message stayed failed. Now nothing is replaced then.
- Mail caught by a revocation of its origin's encryption key and then of its
  destination's could not be re-sealed: its escrow was wrapped to the origin's revoked
  key, deleted. Escrows are wrapped again to the new key first now.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gateway.demo.network import Network
from gateway.store._common import split_digests
from gateway.store.base import EnvelopeRecord, Store, StoreError
from tests.contract.helpers import T0, mid, record
from tests.support.drill import (
    MISSIONS,
    delivery_states,
    drill_config,
    look,
    own_keys,
    poll,
    published,
)
from tests.system.test_key_rotation import send_one, valise
from tests.system.test_relay_integrity import (
    _send,
    assert_refused,
    directory_at,
    keys,
    post,
    seal,
    stored,
)


def _receipted(net: Network, origin: str, *ids: str) -> bool:
    return set(ids) <= set(look(net.sites[origin], list(ids)).receipts)


def test_mail_held_for_a_revoked_key_goes_out_once_the_replacement_is_published(
    tmp_path: Path,
) -> None:
    with Network(tmp_path, MISSIONS, configure=drill_config) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        (old_enc,) = own_keys(hanoi.directory, "encryption")
        hanoi.stop()  # what is sent to it now waits at HQ, sealed to old_enc
        relayed = asyncio.run(send_one(paris.directory, "M-HANOI", "relayed"))
        direct = asyncio.run(send_one(hq.directory, "M-HANOI", "direct"))
        poll("M-PARIS's document to wait at HQ", lambda: "M-HANOI" in delivery_states(hq, relayed))
        valise("keys", "revoke", old_enc, "--reason", "drill", "--dir", str(hq.directory))
        poll(
            "HQ to hold both (sealed to a revoked key)",
            lambda: all(delivery_states(hq, m).get("M-HANOI") == "held" for m in (relayed, direct)),
        )
        hanoi.start()  # it replaces its revoked key and publishes the new one
        poll("receipts, with no operator step", lambda: _receipted(net, "M-PARIS", relayed))
        poll("HQ's receipt", lambda: _receipted(net, "HQ", direct))
        history = look(paris, [relayed]).history[relayed]
        assert any(h.startswith("queued HQ: resealed") and old_enc in h for h in history), history
        received = look(hanoi, [relayed, direct]).received
        assert received == Counter({relayed: 1, direct: 1})


def _held_at_hq_for_a_revoked_key(net: Network) -> tuple[str, str]:
    """M-PARIS's document held at HQ for M-HANOI's encryption key, revoked; M-PARIS is
    stopped (it would re-seal the document by itself), M-HANOI has published its new
    key and deleted the old one. (document id, the revoked key id)"""
    hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
    (old_enc,) = own_keys(hanoi.directory, "encryption")
    hanoi.stop()
    doc = asyncio.run(send_one(paris.directory, "M-HANOI", "stale"))
    poll("the document to wait at HQ", lambda: "M-HANOI" in delivery_states(hq, doc))
    valise("keys", "revoke", old_enc, "--reason", "drill", "--dir", str(hq.directory))
    poll("HQ to hold it", lambda: delivery_states(hq, doc) == {"M-HANOI": "held"})
    paris.stop()
    hanoi.start()
    poll(
        "M-HANOI's new key, its old one deleted",
        lambda: (
            own_keys(hanoi.directory, "encryption") != {old_enc}
            and not any((hanoi.directory / "keys" / "ring").glob(f"*{old_enc}*"))
        ),
    )
    poll(
        "HQ to list it",
        lambda: bool(published(hq.directory, "M-HANOI", "encryption") - {old_enc}),
    )
    return doc, old_enc


def test_a_destination_refuses_a_copy_sealed_to_its_revoked_key_and_the_relay_holds_it(
    tmp_path: Path,
) -> None:
    """Found by the drill: HQ's try of a copy sealed to M-PARIS's key, in flight while
    M-PARIS was paused, reached it after HQ revoked that key. M-PARIS took it, could not
    open it (its private key deleted) and recorded it undeliverable; the re-sealed copy
    that followed was a duplicate: the receipt was lost. Now a destination refuses such
    a copy (new to it) with a reason the relay holds it for, not fails it, and the
    origin's re-sealed copy goes through. Here an operator releases HQ's held copy by
    mistake, which sends it to M-HANOI as that try did."""
    with Network(tmp_path, MISSIONS, configure=drill_config) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        doc, old_enc = _held_at_hq_for_a_revoked_key(net)
        valise("queue", "release", doc, "--dir", str(hq.directory))
        refused = f"{old_enc} of M-HANOI: encryption key {old_enc} of M-HANOI is revoked"

        def held_again() -> bool:
            rows = [r for r in look(hq).deliveries if r[0] == doc]
            return any(state == "held" and refused in why for _, _, state, _, why in rows)

        poll("M-HANOI to refuse it and HQ to hold it again", held_again)
        assert not look(hanoi, [doc]).history[doc], "M-HANOI took the copy it cannot open"
        paris.start()  # re-seals it to M-HANOI's new key by itself
        poll("its receipt", lambda: _receipted(net, "M-PARIS", doc), 60)
        assert look(hanoi, [doc]).received == Counter({doc: 1})


def test_a_relay_sends_the_re_sealed_copy_in_place_of_a_stale_one_it_did_not_hold(
    tmp_path: Path,
) -> None:
    """A relay took the origin's re-sealed copy in place of its own only if it held its
    own: a stale copy merely waiting (deferred: an operator released it, or a try was
    in flight when the key was revoked) stayed, and went to a destination that could
    not open it, the new one acknowledged and dropped. Now a stale copy not passed on
    yet is replaced, whatever its delivery's state."""
    with Network(tmp_path, MISSIONS, configure=drill_config) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        doc, _ = _held_at_hq_for_a_revoked_key(net)
        hanoi.stop()
        valise("queue", "release", doc, "--dir", str(hq.directory))
        poll("HQ to try it", lambda: delivery_states(hq, doc)["M-HANOI"] == "deferred")
        paris.start()  # re-seals it; HQ's copy is deferred, not held

        def replaced() -> bool:
            return any("resealed by its origin" in h for h in look(hq, [doc]).history[doc])

        poll("HQ to take the re-sealed copy", replaced)
        hanoi.start()
        poll("its receipt", lambda: _receipted(net, "M-PARIS", doc), 60)
        assert look(hanoi, [doc]).received == Counter({doc: 1})


def _delivered_with_receipt_waiting_at_hq(net: Network) -> tuple[str, str]:
    """A document from M-PARIS delivered at M-HANOI, whose receipt waits at HQ for a
    stopped M-PARIS: (document id, receipt id)."""
    hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
    hanoi.stop()
    doc = asyncio.run(send_one(paris.directory, "M-HANOI", "first"))
    poll("M-PARIS to hand it to HQ", lambda: delivery_states(paris, doc) == {"HQ": "forwarded"})
    paris.stop()
    hanoi.start()
    poll("M-HANOI to receive it", lambda: doc in look(hanoi).inbox)

    def receipt() -> str | None:
        return next(
            (m for m, peer, _, _, _ in look(hq).deliveries if peer == "M-PARIS" and m != doc),
            None,
        )

    poll("its receipt to wait at HQ", lambda: receipt() is not None)
    found = receipt()
    assert found is not None
    return doc, found


def test_a_document_signed_again_after_its_first_copy_was_delivered_gets_its_receipt(
    tmp_path: Path,
) -> None:
    with Network(tmp_path, MISSIONS, configure=drill_config) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        (old_sig,) = own_keys(paris.directory, "signing")
        doc, receipt = _delivered_with_receipt_waiting_at_hq(net)
        # The receipt waits until M-PARIS has signed the document again.
        valise("queue", "hold", receipt, "--dir", str(hq.directory))
        valise("keys", "revoke", old_sig, "--reason", "drill", "--dir", str(hq.directory))
        paris.start()  # it replaces its key, and signs again what it signed with it

        def signed_again() -> bool:
            return any("signed again" in h for h in look(paris, [doc]).history[doc])

        poll("M-PARIS to sign the document again", signed_again)
        poll(
            "HQ to answer the new copy",
            lambda: delivery_states(paris, doc)["HQ"] in ("forwarded", "failed"),
        )
        assert delivery_states(paris, doc) == {"HQ": "forwarded"}, look(paris, [doc]).history
        valise("queue", "release", receipt, "--dir", str(hq.directory))
        poll("the receipt, naming the first copy", lambda: _receipted(net, "M-PARIS", doc), 60)
        assert look(hanoi, [doc]).received == Counter({doc: 1})


def test_a_receipt_sealed_to_a_key_revoked_on_its_way_is_sealed_again(tmp_path: Path) -> None:
    with Network(tmp_path, MISSIONS, configure=drill_config) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        (old_enc,) = own_keys(paris.directory, "encryption")
        doc, receipt = _delivered_with_receipt_waiting_at_hq(net)
        valise("keys", "revoke", old_enc, "--reason", "drill", "--dir", str(hq.directory))
        poll(
            "HQ to hold the receipt (sealed to a revoked key)",
            lambda: delivery_states(hq, receipt) == {"M-PARIS": "held"},
        )
        paris.start()  # it replaces its key and publishes the new one
        poll("the receipt, sealed again by M-HANOI", lambda: _receipted(net, "M-PARIS", doc), 60)
        history = look(hanoi, [receipt]).history[receipt]
        assert any(h.startswith("queued HQ: resealed") for h in history), history


def test_a_co_recipient_s_copy_of_mail_passed_on_already_gets_no_acknowledgement(
    tmp_path: Path,
) -> None:
    """The attack on the fresh acknowledgement of another copy: M-EVIL, a co-recipient,
    seals its own envelope under the id of mail HQ passed on already and posts it. It
    is refused, with no acknowledgement, as when HQ holds the mail: only its origin's
    re-seal or re-signature of that very message gets one, and HQ keeps its copy."""
    with Network(tmp_path, (*MISSIONS, "M-EVIL"), configure=drill_config) as net:
        doc = asyncio.run(_send(net, "M-PARIS", ["M-EVIL", "M-HANOI"], "genuine.txt", b"mine\n"))
        # Passed on to both (a hop whose destination's receipt HQ relayed reads
        # delivered there, issue 11).
        poll(
            "HQ to pass it on",
            lambda: (
                set(delivery_states(net.sites["HQ"], doc)) == {"M-EVIL", "M-HANOI"}
                and set(delivery_states(net.sites["HQ"], doc).values())
                <= {"forwarded", "delivered"}
            ),
        )
        before = stored(net, "HQ", doc)
        key = directory_at(net, "HQ").site("M-HANOI").active_encryption_key()
        evil = keys(net, "M-EVIL")
        _, forged = seal(
            origin="M-EVIL",
            signer=evil.signing,
            to={"M-HANOI": key, "M-EVIL": evil.decryption.public},
            part=b"wire the money to M-EVIL\n",
            name="forged.txt",
            message_id=doc,
        )
        assert_refused(post(net, "HQ", "M-EVIL", forged), doc, "origin", "M-PARIS", "M-EVIL")
        after = stored(net, "HQ", doc)
        assert after["digest"] == before["digest"] and after["deliveries"] == before["deliveries"]


def test_mail_whose_origin_key_was_revoked_too_is_resealed(tmp_path: Path) -> None:
    """Found by the drill when two revocations follow each other closely: M-PARIS's
    document waits at HQ for M-HANOI; HQ revokes M-PARIS's encryption key, then
    M-HANOI's. M-PARIS could not re-seal it to M-HANOI's new key: its escrow opened
    only with M-PARIS's revoked key, deleted meanwhile. The escrow is now wrapped again
    to the new key first (gateway/trust/escrow_rewrap.py)."""
    with Network(tmp_path, MISSIONS, configure=drill_config) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        (paris_enc,) = own_keys(paris.directory, "encryption")
        (hanoi_enc,) = own_keys(hanoi.directory, "encryption")
        hanoi.stop()
        doc = asyncio.run(send_one(paris.directory, "M-HANOI", "caught-twice"))
        poll("the document to wait at HQ", lambda: "M-HANOI" in delivery_states(hq, doc))
        valise("keys", "revoke", paris_enc, "--reason", "drill", "--dir", str(hq.directory))
        poll(
            "M-PARIS to replace its key",
            lambda: own_keys(paris.directory, "encryption") != {paris_enc},
        )
        valise("keys", "revoke", hanoi_enc, "--reason", "drill", "--dir", str(hq.directory))
        poll("HQ to hold it", lambda: delivery_states(hq, doc) == {"M-HANOI": "held"})
        hanoi.start()
        log = tmp_path / "M-PARIS.log"

        def tried() -> list[str]:
            return [
                line for line in log.read_text().splitlines() if doc in line and "reseal" in line
            ]

        poll("M-PARIS to try to re-seal it", lambda: bool(tried()))
        assert '"event": "resealed"' in tried()[0], tried()
        poll("its receipt", lambda: _receipted(net, "M-PARIS", doc))


async def test_a_replaced_copy_s_digest_is_kept(store: Store) -> None:
    first = record(1)
    await store.accept(first, next_hops=["HQ"], deliver_here=False, hop_ack=None, now=T0)
    assert await store.superseded_digests([mid(1)]) == {}
    digests = [first.digest, bytes([2]) * 32, bytes([3]) * 32]
    for old, new in itertools.pairwise(digests):
        replaced = await store.replace_sealed(
            mid(1),
            data=b"copy " + new,
            digest=new,
            chain=b"",
            hop_ack=None,
            expected_digest=old,
            requeue=("queued",),
            held_for=None,
            now=datetime.now(UTC),
            reason="signed again",
        )
        assert replaced == 1
    # Not replaced: the stored copy is not the one compared.
    assert not await store.replace_sealed(
        mid(1),
        data=b"other",
        digest=bytes([4]) * 32,
        chain=b"",
        hop_ack=None,
        expected_digest=first.digest,
        requeue=("queued",),
        held_for=None,
        now=datetime.now(UTC),
        reason="late",
    )
    got = await store.superseded_digests([mid(1), mid(2), mid(1)])
    assert got == {mid(1): tuple(digests[:2])}
    sent = (await store.sent_digests([mid(1)]))[mid(1)]
    # The stored copy is the last one; a receipt naming any of the three is accepted.
    assert sent.stored == digests[2]
    assert sent.digests == frozenset(digests)


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=8))
def test_superseded_digests_read_back_as_written(digests: list[bytes]) -> None:
    assert split_digests("".join(d.hex() for d in digests)) == tuple(digests)
    assert split_digests("".join(d.hex().upper() for d in digests)) == tuple(digests)


@given(st.text(max_size=200))
def test_a_damaged_superseded_column_is_a_store_error(text: str) -> None:
    try:
        got = split_digests(text)
    except StoreError:
        return
    assert "".join(d.hex() for d in got) == text.lower() and all(len(d) == 32 for d in got)


async def test_nothing_is_replaced_while_its_one_delivery_is_being_sent(store: Store) -> None:
    """Found by the drill: the key watcher signed again a message whose one delivery a
    courier was sending at that moment. The new copy replaced the stored one although
    no delivery was queued again; the try in flight, of the old copy, was refused, and
    the message was failed for good (its stored copy no longer looked stale)."""
    first = record(1)
    await store.accept(first, next_hops=["HQ"], deliver_here=False, hop_ack=None, now=T0)
    claimed = await store.claim(peer="HQ", owner="courier", limit=8, lease_seconds=60, now=T0)
    assert [c.message_id for c in claimed] == [mid(1)]
    replaced = await store.replace_sealed(
        mid(1),
        data=b"signed again",
        digest=bytes([9]) * 32,
        chain=b"",
        hop_ack=None,
        expected_digest=first.digest,
        requeue=("queued", "deferred", "held", "forwarded", "failed"),
        held_for=None,
        now=T0,
        reason="signed again",
    )
    assert replaced == 0
    kept = await store.get_envelope(mid(1))
    assert kept is not None and kept.digest == first.digest and kept.data == first.data
    assert await store.superseded_digests([mid(1)]) == {}


async def test_open_escrows_are_those_not_delivered_and_change_only_if_still_read(
    store: Store,
) -> None:
    def receipt(n: int, created: datetime) -> EnvelopeRecord:
        r = dataclasses.replace(record(n, created=created), escrow=f"e{n}".encode())
        return dataclasses.replace(r, doc_class="receipt")

    kept, done = (
        dataclasses.replace(record(1), escrow=b"e1"),
        dataclasses.replace(record(2), escrow=b"e2"),
    )
    recent, old = receipt(4, T0), receipt(5, T0 - timedelta(days=3))
    for r in (kept, done, record(3), recent, old):
        await store.accept(r, next_hops=["HQ"], deliver_here=False, hop_ack=None, now=T0)
    # Delivered: a document's receipt; for receipts of ours, the hub's hop ack.
    acked = [(mid(n), b"receipt or hop ack") for n in (2, 4, 5)]
    await store.forwarded([], owner="x", now=T0, receipts=acked)
    since = T0 - timedelta(days=2)
    assert await store.open_escrows(receipts_since=since) == [(mid(1), b"e1"), (mid(4), b"e4")]
    assert not await store.replace_escrow(mid(1), old=b"other", new=b"x")
    assert await store.replace_escrow(mid(1), old=b"e1", new=b"e1 again")
    assert await store.escrow(mid(1)) == b"e1 again"
    assert not await store.replace_escrow(mid(9), old=b"e1", new=b"x")
