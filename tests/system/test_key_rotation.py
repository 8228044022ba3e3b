"""Key rotation and revocation on a live network (HQ + two missions as processes).

- The drill: every kind of key (signing, encryption, TLS) rotated at every site with
  ``valise keys rotate`` while documents flow continuously: nothing bounced, nothing
  lost, every document delivered once with its receipt, and the old keys retired
  by the running sites once the overlap is over.
- Envelopes sealed or signed with an old key still open during the overlap; after
  retirement they are refused, with a reason naming the retired key.
- Revocation at HQ stops a key at the other sites within one directory poll; a TLS
  peer presenting a revoked key is refused; the site replaces a revoked key itself.
"""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import ClientSession, TCPConnector

from gateway.demo.network import Network
from gateway.relay.outbox import Document, send_documents
from gateway.site.context import load_site, read_trust
from gateway.site.keystore import KeyStoreError
from gateway.site.tls import client_context
from routing.directory import KeyState, parse_directory
from tests.component.test_queue_todo import changed_only_by_its_audit_record, store_tables
from tests.support.cli import valise as run_valise
from tests.support.keys import active, keys_of
from tests.system.test_relay import FAST, _check_exactly_once, _wait_receipts

POLL = 0.5
ENV = {
    **FAST,
    "VALISE_RELAY_DIRECTORY_POLL_SECONDS": str(POLL),
    "VALISE_KEYS_CHECK_SECONDS": "0.3",
}
KINDS = ("signing", "encryption", "tls")


valise = functools.partial(run_valise, check=True)


def wait_for(what: str, test: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


async def send_one(site_dir: Path, to: str, tag: str) -> str:
    for _ in range(50):  # the ring may be mid-change by another process: load again
        try:
            ctx = await load_site(site_dir)
            break
        except KeyStoreError:
            await asyncio.sleep(0.05)
    try:
        doc = Document(f"{tag}.txt", "text/plain", f"{tag}\n".encode())
        return await send_documents(ctx, [to], [doc], now=datetime.now(UTC), subject=tag)
    finally:
        await ctx.store.close()


async def history_reasons(site_dir: Path, message_id: str) -> list[str]:
    ctx = await load_site(site_dir)
    try:
        return [f"{t.state}: {t.reason}" for t in await ctx.store.history(message_id)]
    finally:
        await ctx.store.close()


def directory_state(site_dir: Path, site: str, key_id: str) -> str | None:
    d = parse_directory((site_dir / "directory.xml").read_bytes(), read_trust(site_dir / "keys"))
    found = d.site(site).states().get(key_id)
    return found[1].value if found else None


def test_rotation_drill_every_kind_every_site_while_documents_flow(tmp_path: Path) -> None:
    with Network(tmp_path, env=ENV) as net:
        dirs = {s: p.directory for s, p in net.sites.items()}
        pairs = [("M-PARIS", "M-HANOI"), ("M-HANOI", "HQ"), ("HQ", "M-PARIS")]
        sent: dict[str, list[str]] = {s: [] for s in dirs}
        stop = threading.Event()
        errors: list[BaseException] = []

        def flow() -> None:
            i = 0
            try:
                while not stop.is_set():
                    origin, to = pairs[i % len(pairs)]
                    sent[origin].append(asyncio.run(send_one(dirs[origin], to, f"drill-{i}")))
                    i += 1
                    time.sleep(0.05)
            except BaseException as exc:  # reported below
                errors.append(exc)

        before = {(s, k): active(d, k) for s, d in dirs.items() for k in KINDS}
        sender = threading.Thread(target=flow)
        sender.start()
        try:
            for site_dir in dirs.values():
                for kind in KINDS:
                    out = valise(
                        "keys", "rotate", "--kind", kind, "--overlap", "6s", "--dir", str(site_dir)
                    )
                    assert "published" in out.stdout
                    time.sleep(0.5)  # documents keep flowing between rotations
            time.sleep(2)
        finally:
            stop.set()
            sender.join()
        assert not errors, errors
        assert sum(len(v) for v in sent.values()) >= 30
        for origin, ids in sent.items():
            missing = asyncio.run(_wait_receipts(net, origin, ids, 90))
            if missing:
                first = sorted(missing)[0]
                story = {site: asyncio.run(history_reasons(d, first)) for site, d in dirs.items()}
                raise AssertionError(
                    f"{len(missing)} of {origin}'s documents got no receipt: {story}"
                )
        for origin, to in pairs:
            ids = sent[origin]
            asyncio.run(_check_exactly_once_subset(net, to, ids))
        # Every site rotated every kind; the running sites retired the old keys by
        # themselves once the overlap was over, and the directory says so.
        for (site, kind), old in before.items():
            # Announced, then activated by the running site once every site fetched it.
            wait_for(
                f"{site} {kind} rotated", lambda s=site, k=kind, o=old: active(dirs[s], k) != o
            )
            wait_for(
                f"{site} {kind} {old} retired",
                lambda s=site, o=old: directory_state(dirs["HQ"], s, o) == "retired",
            )
        for site, site_dir in dirs.items():
            states = {k["id"]: k["state"] for k in keys_of(site_dir)}
            for kind in KINDS:
                assert states[before[(site, kind)]] == "retired"


async def _check_exactly_once_subset(net: Network, destination: str, ids: list[str]) -> None:
    ctx = await load_site(net.sites[destination].directory)
    try:
        inbox = net.sites[destination].directory / "inbox"
        for mid in ids:
            assert (inbox / mid).is_dir(), f"{mid} not delivered at {destination}"
            received = [t for t in await ctx.store.history(mid) if t.state == "received"]
            assert len(received) == 1, f"{mid} received {len(received)} times"
    finally:
        await ctx.store.close()


def test_old_keys_work_through_the_overlap_and_are_refused_after_retirement(
    tmp_path: Path,
) -> None:
    with Network(tmp_path, env=ENV) as net:
        paris, hanoi = net.sites["M-PARIS"], net.sites["M-HANOI"]
        old_enc = active(hanoi.directory, "encryption")
        paris.stop()  # what M-PARIS seals now waits in its queue, sealed to old_enc
        during = asyncio.run(send_one(paris.directory, "M-HANOI", "during-overlap"))
        after = asyncio.run(send_one(paris.directory, "M-HANOI", "after-retirement"))
        valise("queue", "hold", after, "--dir", str(paris.directory))
        valise(
            "keys",
            "rotate",
            "--kind",
            "encryption",
            "--now",  # M-PARIS is down: it would hold an announced key back for an hour
            "--overlap",
            "1h",
            "--dir",
            str(hanoi.directory),
        )
        assert active(hanoi.directory, "encryption") != old_enc
        paris.start()
        # Sealed to the old (now retiring) key: still opened, with a receipt.
        assert not asyncio.run(_wait_receipts(net, "M-PARIS", [during], 30))
        asyncio.run(_check_exactly_once_subset(net, "M-HANOI", [during]))
        # Retire the old key; the held envelope sealed to it is then refused.
        valise("keys", "retire", old_enc, "--dir", str(hanoi.directory))
        wait_for(
            "M-HANOI to load its ring",
            lambda: directory_state(net.sites["HQ"].directory, "M-HANOI", old_enc) == "retired",
        )
        time.sleep(1)
        valise("queue", "release", after, "--dir", str(paris.directory))

        def refused() -> bool:  # M-HANOI refuses it; HQ holds it for M-PARIS's re-seal
            reasons = asyncio.run(history_reasons(net.sites["HQ"].directory, after))
            return any(r.startswith("held") and "retired" in r and old_enc in r for r in reasons)

        wait_for("the destination to refuse the envelope sealed to a retired key", refused)
        assert not (hanoi.directory / "inbox" / after).exists()

        # The same for a signature: an envelope signed with M-PARIS's retired signing key.
        old_sig = active(paris.directory, "signing")
        paris.stop()
        signed_old = asyncio.run(send_one(paris.directory, "M-HANOI", "old-signature"))
        valise(
            "keys",
            "rotate",
            "--kind",
            "signing",
            "--now",  # at once: retired just below, the gateway being down
            "--overlap",
            "1h",
            "--dir",
            str(paris.directory),
        )
        valise("keys", "retire", old_sig, "--dir", str(paris.directory))
        paris.start()

        def refused_signature() -> bool:
            reasons = asyncio.run(history_reasons(paris.directory, signed_old))
            return any(
                "failed" in r and f"signing key {old_sig}" in r and "retired" in r for r in reasons
            )

        wait_for("HQ to refuse the envelope signed with a retired key", refused_signature)


def test_revocation_reaches_every_site_within_one_poll_and_refuses_tls_peers(
    tmp_path: Path,
) -> None:
    with Network(tmp_path, env=ENV) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        tls_pin = active(paris.directory, "tls")
        old_cert = (paris.directory / "keys" / "tls.crt").read_bytes()
        old_key = (paris.directory / "keys" / "tls.key").read_bytes()
        signing = active(paris.directory, "signing")
        out = valise(
            "keys",
            "revoke",
            signing,
            "--reason",
            "drill: key compromised",
            "--dir",
            str(hq.directory),
        )
        assert "revoked" in out.stdout
        revoked_at = time.monotonic()
        wait_for(
            "M-HANOI to hold the revocation",
            lambda: directory_state(hanoi.directory, "M-PARIS", signing) == "revoked",
        )
        # One poll (plus the time to fetch and check it, on a shared machine).
        assert time.monotonic() - revoked_at < 5 * POLL + 5
        # M-PARIS sees its key revoked and replaces it; documents flow again.
        wait_for(
            "M-PARIS to replace its signing key",
            lambda: active(paris.directory, "signing") != signing,
        )
        mid = asyncio.run(send_one(paris.directory, "M-HANOI", "after-revocation"))
        assert not asyncio.run(_wait_receipts(net, "M-PARIS", [mid], 30))

        # TLS: HQ revokes M-PARIS's TLS key; a peer presenting it is refused.
        valise(
            "keys", "revoke", tls_pin, "--reason", "drill: tls key lost", "--dir", str(hq.directory)
        )
        wait_for(
            "M-HANOI to hold the TLS revocation",
            lambda: directory_state(hanoi.directory, "M-PARIS", tls_pin) == "revoked",
        )
        time.sleep(2 * POLL)
        for target in (hq, hanoi):
            status = asyncio.run(_post_hop(target.port, old_cert, old_key, paris.directory))
            assert status == 403, f"{target.site} accepted a revoked TLS key ({status})"
        wait_for(
            "M-PARIS to replace its TLS key", lambda: active(paris.directory, "tls") != tls_pin
        )
        mid = asyncio.run(send_one(paris.directory, "M-HANOI", "after-tls-revocation"))
        assert not asyncio.run(_wait_receipts(net, "M-PARIS", [mid], 45))


async def _post_hop(port: int, cert: bytes, key: bytes, site_dir: Path) -> int:
    ca = (site_dir / "keys" / "ca.crt").read_bytes()
    ctx = client_context(cert, key, ca)
    async with (
        ClientSession(connector=TCPConnector(ssl=ctx, force_close=True)) as session,
        session.post(
            f"https://127.0.0.1:{port}/v1/hop",
            data=b"",
            headers={"Content-Type": "application/vnd.valise.envelopes"},
        ) as resp,
    ):
        status = resp.status
    await asyncio.sleep(0.1)  # let the TLS transport close before the loop ends
    return status


_ = (KeyState, _check_exactly_once)


def test_tls_certificates_renew_by_themselves_and_directory_status_shows_the_fetches(
    tmp_path: Path,
) -> None:
    # Renew when the certificate ends within 400 days: at once, for the 365-day one it
    # enrolled with (tls_renew_days must be under tls_days, so tls_days is 800 here).
    site_env = {"M-HANOI": {"VALISE_KEYS_TLS_RENEW_DAYS": "400", "VALISE_KEYS_TLS_DAYS": "800"}}
    with Network(tmp_path, env=ENV, site_env=site_env) as net:
        hq, hanoi = net.sites["HQ"], net.sites["M-HANOI"]

        def tls_keys() -> dict[str, str]:
            return {k["state"]: k["id"] for k in keys_of(hanoi.directory) if k["kind"] == "tls"}

        # It renews on its first key check, maybe before we look: the enrolled key is
        # then retiring beside the new active one.
        wait_for("M-HANOI to renew its TLS key", lambda: "retiring" in tls_keys())
        first, renewed = tls_keys()["retiring"], tls_keys()["active"]
        # HQ's directory says so once the activation is published there (CI saw it
        # still 'next' right after the ring changed, on a loaded machine).
        wait_for(
            "HQ's directory to show the renewed TLS key active",
            lambda: directory_state(hq.directory, "M-HANOI", renewed) == "active",
        )
        assert directory_state(hq.directory, "M-HANOI", first) == "retiring"
        mid = asyncio.run(send_one(net.sites["M-PARIS"].directory, "M-HANOI", "after-renewal"))
        assert not asyncio.run(_wait_receipts(net, "M-PARIS", [mid], 45))

        def status() -> dict[str, dict[str, object]]:
            out = valise("directory", "status", "--json", "--dir", str(hq.directory)).stdout
            return {row["site"]: row for row in json.loads(out)}

        wait_for(
            "every mission to fetch the current directory",
            lambda: all(r["status"] in ("current", "publisher") for r in status().values()),
        )
        rows = status()
        assert set(rows) == {"HQ", "M-PARIS", "M-HANOI"}
        assert rows["M-HANOI"]["fetched"] == rows["M-HANOI"]["current"]
        assert rows["M-PARIS"]["at"] is not None
        text = valise("directory", "status", "--dir", str(hq.directory)).stdout
        assert "M-PARIS" in text and "current" in text


def test_mail_held_for_a_revoked_key_is_resealed_by_its_origin(tmp_path: Path) -> None:
    with Network(tmp_path, env=ENV) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        old_enc = active(hanoi.directory, "encryption")
        hanoi.stop()  # the document waits at HQ, sealed to old_enc
        mid = asyncio.run(send_one(paris.directory, "M-HANOI", "to-be-resealed"))

        def at_hq(state: str) -> bool:
            rows = json.loads(valise("queue", "list", "--json", "--dir", str(hq.directory)).stdout)
            return any(r["id"] == mid and r["state"] == state for r in rows)

        wait_for(
            "HQ to hold the document for M-HANOI", lambda: at_hq("deferred") or at_hq("queued")
        )
        valise("keys", "revoke", old_enc, "--reason", "drill: key lost", "--dir", str(hq.directory))
        wait_for("HQ to put it on hold (sealed to a revoked key)", lambda: at_hq("held"))
        reasons = asyncio.run(history_reasons(hq.directory, mid))
        assert any("sealed to revoked encryption key" in r and old_enc in r for r in reasons)
        # Nothing to re-seal while M-HANOI has no new key published. M-PARIS is
        # stopped before it sees the replacement, so that the operator's commands do
        # the re-seal (a running gateway does it by itself: test_key_drill.py).
        paris.stop()
        hanoi.start()  # it sees its key revoked and publishes a replacement
        wait_for(
            "M-HANOI's new encryption key at HQ",
            lambda: _active_enc_elsewhere(hq.directory, "M-HANOI") not in (None, old_enc),
        )
        shutil.copyfile(hq.directory / "directory.xml", paris.directory / "directory.xml")
        # A dry run says what it would do and changes nothing (compared with the
        # gateway stopped, so that only the command could change the store).
        before = store_tables(paris.directory / "store.sqlite")
        dry = valise("queue", "reseal", "--all", "--dry-run", "--dir", str(paris.directory))
        after = store_tables(paris.directory / "store.sqlite")
        changed_only_by_its_audit_record(before, after, "cli.queue.reseal")
        assert dry.stdout.splitlines()[0] == "would re-seal 1", dry.stdout
        assert f"{mid}\twould\twould re-seal (stale: M-HANOI:{old_enc})" in dry.stdout
        out = valise("queue", "reseal", "--all", "--dir", str(paris.directory))
        assert f"{mid}\tresealed" in out.stdout, out.stdout
        paris.start()
        # HQ takes the re-sealed copy in place of the held one; M-HANOI opens it.
        assert not asyncio.run(_wait_receipts(net, "M-PARIS", [mid], 45))
        asyncio.run(_check_exactly_once_subset(net, "M-HANOI", [mid]))
        again = valise("queue", "reseal", mid, "--dir", str(paris.directory), check=False)
        assert again.returncode != 0 and "nothing to do" in again.stdout


def _active_enc_elsewhere(site_dir: Path, site: str) -> str | None:
    d = parse_directory((site_dir / "directory.xml").read_bytes(), read_trust(site_dir / "keys"))
    return next((k.key_id for k, s in d.site(site).encryption if s is KeyState.ACTIVE), None)
