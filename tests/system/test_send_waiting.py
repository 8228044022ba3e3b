"""`valise send` in a revocation window (issue 10): a destination with no active
encryption key yet gets its document queued, held, and sealed to its new key by the
running site once the signed directory publishes one (gateway/relay/key_wait.py).

No network: an HQ site folder whose missions exist only in its directory, the test
holding their private keys (tests/support/offline_hq.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from crypto.keys import DecryptionKey, SigningKey, VerifyKey
from envelope.errors import EnvelopeError
from envelope.open import open_bytes, parse_framed_head
from gateway.cli.app import ExitCode
from gateway.relay.key_wait import WAITING_FOR_KEY, seal_waiting
from gateway.relay.key_watch import KeyWatcher
from gateway.site.context import SiteContext, load_site
from routing.directory import Directory, KeyState, SiteEntry, write_directory
from tests.support.offline_hq import (
    PaperMission,
    add_mission,
    make_hq,
    set_encryption_keys,
    valise,
)

NOTE = b"Note verbale 412\n"
T = TypeVar("T")


@pytest.fixture()
def hq(tmp_path: Path) -> Path:
    return make_hq(tmp_path)


@pytest.fixture()
def note(tmp_path: Path) -> Path:
    path = tmp_path / "note.txt"
    path.write_bytes(NOTE)
    return path


def _revoke_encryption(hq: Path, m: PaperMission) -> None:
    # By prefix, as an operator would type it from `keys list`.
    out = valise("keys", "revoke", m.decryption.key_id[:12], "--reason", "lost", "--dir", str(hq))
    assert out.exit_code == 0, out.output


def _with(hq: Path, fn: Callable[[SiteContext], Awaitable[T]]) -> T:
    """``fn`` run on the site loaded from ``hq`` (as a running site or the CLI would)."""
    return asyncio.run(_in_memory(hq, fn))


async def _deliveries(ctx: SiteContext, mid: str) -> list[tuple[str, str, str]]:
    return [
        (q.peer, q.state, q.last_reason) for q in await ctx.store.queue() if q.message_id == mid
    ]


async def _data(ctx: SiteContext, mid: str) -> bytes:
    record = await ctx.store.get_envelope(mid)
    assert record is not None
    return record.data


def test_a_send_in_a_revocation_window_is_queued_held_and_sealed_later(
    hq: Path, note: Path
) -> None:
    hanoi = add_mission(hq, "M-HANOI")
    revoked = hanoi.decryption
    _revoke_encryption(hq, hanoi)

    sent = valise("send", "--dir", str(hq), "--to", "M-HANOI", "--subject", "NV", str(note))
    assert sent.exit_code == 0, sent.output
    mid = sent.stdout.strip()
    assert (
        "no active encryption key for M-HANOI yet; the document is queued and will be sealed"
        " when one is published"
    ) in sent.stderr

    async def held(ctx: SiteContext) -> bytes:
        assert await _deliveries(ctx, mid) == [("M-HANOI", "held", f"{WAITING_FOR_KEY} M-HANOI")]
        # Never claimable as it is, and no stanza to the revoked key.
        claimed = await ctx.store.claim(
            peer="M-HANOI", owner="t", limit=10, lease_seconds=30, now=datetime.now(UTC)
        )
        assert claimed == []
        return await _data(ctx, mid)

    data = _with(hq, held)
    parsed, _ = parse_framed_head(data)
    assert [s.site for s in parsed.head.recipients] == ["M-HANOI"]
    assert revoked.key_id not in {s.key_id for s in parsed.head.recipients}
    hq_sign = _with(hq, _signing_key)
    with pytest.raises(EnvelopeError):
        open_bytes(data, sender=hq_sign, site="M-HANOI", key=revoked)
    # Nothing happens while M-HANOI has no key.
    assert _with(hq, lambda ctx: seal_waiting(ctx, now=datetime.now(UTC))) == []

    # M-HANOI's replacement is published: the running site seals the document to it.
    new = DecryptionKey.generate()
    set_encryption_keys(hq, "M-HANOI", ((revoked, KeyState.REVOKED), (new, KeyState.ACTIVE)))

    async def reseal(ctx: SiteContext) -> tuple[bytes, list[tuple[str, str, str]]]:
        results = await seal_waiting(ctx, now=datetime.now(UTC))
        assert [(r.message_id, r.done) for r in results] == [(mid, True)], results
        return await _data(ctx, mid), await _deliveries(ctx, mid)

    resealed, deliveries = _with(hq, reseal)
    assert [(peer, state) for peer, state, _ in deliveries] == [("M-HANOI", "queued")]
    head, sealed, parts = open_bytes(resealed, sender=hq_sign, site="M-HANOI", key=new)
    assert head.head.routing.message_id == mid
    assert head.head.routing == parsed.head.routing
    assert parts == [NOTE] and sealed.subject == "NV"
    with pytest.raises(EnvelopeError):
        open_bytes(resealed, sender=hq_sign, site="M-HANOI", key=revoked)


async def _signing_key(ctx: SiteContext) -> VerifyKey:
    return ctx.keys.signing.public


def test_a_destination_with_a_key_and_one_without_wait_together_and_both_open_after(
    hq: Path, note: Path
) -> None:
    paris = add_mission(hq, "M-PARIS")
    hanoi = add_mission(hq, "M-HANOI")
    _revoke_encryption(hq, hanoi)
    sent = valise("send", "--dir", str(hq), "--to", "M-PARIS", "--to", "M-HANOI", str(note))
    assert sent.exit_code == 0, sent.output
    mid = sent.stdout.strip()
    assert "for M-HANOI yet" in sent.stderr and "M-PARIS" not in sent.stderr

    async def look(ctx: SiteContext) -> tuple[list[tuple[str, str, str]], bytes]:
        return await _deliveries(ctx, mid), await _data(ctx, mid)

    deliveries, data = _with(hq, look)
    # The envelope carries a stanza that opens for no one: none of its copies leaves.
    assert {(p, s) for p, s, _ in deliveries} == {("M-PARIS", "held"), ("M-HANOI", "held")}
    hq_sign = _with(hq, _signing_key)
    _, _, parts = open_bytes(data, sender=hq_sign, site="M-PARIS", key=paris.decryption)
    assert parts == [NOTE]
    new = DecryptionKey.generate()
    set_encryption_keys(
        hq, "M-HANOI", ((hanoi.decryption, KeyState.REVOKED), (new, KeyState.ACTIVE))
    )
    _with(hq, lambda ctx: seal_waiting(ctx, now=datetime.now(UTC)))
    deliveries, data = _with(hq, look)
    assert {(p, s) for p, s, _ in deliveries} == {("M-PARIS", "queued"), ("M-HANOI", "queued")}
    for site, key in (("M-PARIS", paris.decryption), ("M-HANOI", new)):
        assert open_bytes(data, sender=hq_sign, site=site, key=key)[2] == [NOTE]


def test_the_automatic_reseal_takes_no_key_the_signed_directory_does_not_make_active(
    hq: Path, note: Path, tmp_path: Path
) -> None:
    hanoi = add_mission(hq, "M-HANOI")
    _revoke_encryption(hq, hanoi)
    mid = valise("send", "--dir", str(hq), "--to", "M-HANOI", str(note)).stdout.strip()
    planted = DecryptionKey.generate()

    # 1. A directory with an active key for M-HANOI, signed by a key HQ does not trust,
    #    planted on disk: the key watcher refuses it, and nothing is sealed to the key.
    async def forged(ctx: SiteContext) -> list[tuple[str, str, str]]:
        good = ctx.directory
        sites = tuple(
            e if e.site != "M-HANOI" else _with_encryption(e, planted, KeyState.ACTIVE)
            for e in good.sites
        )
        fake = Directory(good.serial + 1, good.issued, good.hub, sites)
        (hq / "directory.xml").write_bytes(write_directory(fake, SigningKey.generate()))
        watcher = KeyWatcher(ctx, None, [])
        watcher._adopt_disk_directory()
        assert ctx.directory.serial == good.serial
        assert await seal_waiting(ctx, now=datetime.now(UTC)) == []
        return await _deliveries(ctx, mid)

    assert asyncio.run(_in_memory(hq, forged)) == [
        ("M-HANOI", "held", f"{WAITING_FOR_KEY} M-HANOI")
    ]

    # 2. A key HQ's signed directory lists only as next (announced, not active): still
    #    waiting; the stanza stays one that opens for no one.
    (hq / "directory.xml").write_bytes((hq / "directories" / f"{_serial(hq)}.xml").read_bytes())
    set_encryption_keys(
        hq, "M-HANOI", ((hanoi.decryption, KeyState.REVOKED), (planted, KeyState.NEXT))
    )
    assert _with(hq, lambda ctx: seal_waiting(ctx, now=datetime.now(UTC))) == []
    data = _with(hq, lambda ctx: _data(ctx, mid))
    stanzas = {s.key_id for s in parse_framed_head(data)[0].head.recipients}
    assert stanzas.isdisjoint({planted.key_id, hanoi.decryption.key_id})


def _serial(hq: Path) -> int:
    return max(int(p.stem) for p in (hq / "directories").glob("*.xml"))


def _with_encryption(entry: SiteEntry, key: DecryptionKey, state: KeyState) -> SiteEntry:
    return replace(entry, encryption=((key.public, state),))


async def _in_memory(hq: Path, fn: Callable[[SiteContext], Awaitable[T]]) -> T:
    ctx = await load_site(hq)
    try:
        return await fn(ctx)
    finally:
        await ctx.store.close()


def test_unknown_and_disabled_sites_are_still_usage_errors(hq: Path, note: Path) -> None:
    unknown = valise("send", "--dir", str(hq), "--to", "M-NOWHERE", str(note))
    assert unknown.exit_code == ExitCode.USAGE and "not in directory" in unknown.stderr
    assert unknown.stdout == ""


def test_a_store_that_cannot_be_reached_is_a_temporary_failure(hq: Path, note: Path) -> None:
    from click.testing import CliRunner

    from gateway.cli.main import main

    env = {
        "VALISE_STORE_BACKEND": "postgres",
        "VALISE_STORE_DSN": "postgresql://postgres@127.0.0.1:1/none",
    }
    add_mission(hq, "M-HANOI")
    out = CliRunner(env=env).invoke(main, ["send", "--dir", str(hq), "--to", "M-HANOI", str(note)])
    assert out.exit_code == ExitCode.TEMPFAIL, out.output
    assert "nothing queued, try again" in out.stderr and out.stdout == ""


def test_queue_release_keeps_a_message_waiting_for_its_key(hq: Path, note: Path) -> None:
    # Released, it would go out with a stanza nobody can open; the peer would refuse it.
    hanoi = add_mission(hq, "M-HANOI")
    _revoke_encryption(hq, hanoi)
    mid = valise("send", "--dir", str(hq), "--to", "M-HANOI", str(note)).stdout.strip()
    out = valise("queue", "release", mid, "--dir", str(hq))
    assert out.exit_code == ExitCode.USAGE
    assert "waiting for a destination's encryption key" in out.stderr
    assert _with(hq, lambda ctx: _deliveries(ctx, mid)) == [
        ("M-HANOI", "held", f"{WAITING_FOR_KEY} M-HANOI")
    ]
