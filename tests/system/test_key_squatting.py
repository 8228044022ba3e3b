"""A mission claiming another site's keys, or growing the directory, on a live network.

Found by an adversarial review of issue 9 (holes F1 and F2):
- F1: M-EVIL published M-PARIS's public keys under its own entry through /v1/keys (no
  proof of possession, no uniqueness across sites), then revoked them there: all mail
  to M-PARIS was held everywhere, and HQ's ``valise keys revoke ID`` hit M-EVIL's copy.
  Now key ids and TLS pins are unique across the directory (routing/directory.py), and
  a new signing key comes with a signature by that key (gateway/trust/key_updates.py).
- F2: 16 new keys per request and no caps grew the directory past its 1 MiB limit in
  seconds; HQ wrote it to disk and could then neither publish nor restart. Now at most
  one new key per kind and update, a few usable keys per kind (routing/key_changes.py),
  a per-site rate of key updates (429), and a publish that checks the new version
  before it writes anything (gateway/trust/publish.py).
Every refusal has a reason and leaves HQ's directory as it was.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crypto.keys import DecryptionKey, SigningKey
from crypto.x509 import site_public_key
from gateway.demo.network import Network
from gateway.site.context import archived_directories
from gateway.trust.key_updates import MAX_UPDATES_PER_MINUTE, KeyUpdate, encode_update
from gateway.trust.publish import publish
from routing.directory import MAX_DIRECTORY_BYTES, Directory, DirectoryError, KeyState, SiteEntry
from routing.key_changes import MAX_LISTED_RETIRED, KeyChange
from tests.system.test_key_rotation import ENV
from tests.system.test_tls_identity import _directory, _post, _signing_key


def _keys_post(net: Network, site: str, body: bytes) -> tuple[int, dict[str, Any]]:
    keys = net.sites[site].directory / "keys"
    hq = net.sites["HQ"]
    ca = (keys / "ca.crt").read_bytes()
    cert, key = (keys / "tls.crt").read_bytes(), (keys / "tls.key").read_bytes()
    return asyncio.run(_post(hq.port, "/v1/keys", cert, key, ca, body))


def _update(
    site: str, signer: SigningKey, *changes: KeyChange, possession: tuple[SigningKey, ...] = ()
) -> bytes:
    return encode_update(KeyUpdate(site, datetime.now(UTC), changes), signer, possession)


def _snapshot(hq_dir: Path) -> tuple[bytes, list[int]]:
    return (hq_dir / "directory.xml").read_bytes(), [s for s, _ in archived_directories(hq_dir)]


def test_a_mission_cannot_claim_another_sites_keys(tmp_path: Path) -> None:
    with Network(tmp_path, missions=("M-PARIS", "M-EVIL"), env=ENV) as net:
        hq_dir = net.sites["HQ"].directory
        paris = _directory(hq_dir).site("M-PARIS")
        evil = _signing_key(net.sites["M-EVIL"].directory)
        enc = paris.active_encryption_key()
        sig = next(k for k, s in paris.signing if s is KeyState.ACTIVE)
        pin = next(p for p, s in paris.tls if s is KeyState.ACTIVE)
        paris_tls = site_public_key((net.sites["M-PARIS"].directory / "keys/tls.key").read_bytes())
        before = _snapshot(hq_dir)
        attempts = {
            "encryption": _update(
                "M-EVIL",
                evil,
                KeyChange("M-EVIL", "encryption", enc.key_id, KeyState.NEXT, enc.raw),
            ),
            # Without M-PARIS's private key, no proof of possession can come with it.
            "signing": _update(
                "M-EVIL", evil, KeyChange("M-EVIL", "signing", sig.key_id, KeyState.NEXT, sig.raw)
            ),
            "tls": encode_update(
                KeyUpdate(
                    "M-EVIL",
                    datetime.now(UTC),
                    (KeyChange("M-EVIL", "tls", pin, KeyState.NEXT),),
                    paris_tls,
                ),
                evil,
            ),
        }
        for kind, body in attempts.items():
            status, answer = _keys_post(net, "M-EVIL", body)
            assert status == 403, f"M-PARIS's {kind} key under M-EVIL: {status} {answer}"
            error = answer.get("error", "")
            assert "M-PARIS" in error or "possession" in error, (kind, error)
        assert _snapshot(hq_dir) == before, "a refused key update changed HQ's directory"


def test_a_new_signing_key_needs_proof_of_possession(tmp_path: Path) -> None:
    with Network(tmp_path, missions=("M-EVIL",), env=ENV) as net:
        hq_dir = net.sites["HQ"].directory
        evil = _signing_key(net.sites["M-EVIL"].directory)
        new = SigningKey.generate()
        change = KeyChange("M-EVIL", "signing", new.key_id, KeyState.NEXT, new.public.raw)
        before = _snapshot(hq_dir)
        status, answer = _keys_post(net, "M-EVIL", _update("M-EVIL", evil, change))
        assert status == 403, answer
        assert "proof of possession" in answer["error"], answer
        # A proof by another key is no proof.
        other = SigningKey.generate()
        status, answer = _keys_post(
            net, "M-EVIL", _update("M-EVIL", evil, change, possession=(other,))
        )
        assert status == 403 and "proof of possession" in answer["error"], answer
        assert _snapshot(hq_dir) == before
        status, answer = _keys_post(
            net, "M-EVIL", _update("M-EVIL", evil, change, possession=(new,))
        )
        assert status == 200, answer
        states = _directory(hq_dir).site("M-EVIL").states()
        assert states[new.key_id] == ("signing", KeyState.NEXT)


def _new_encryption(site: str) -> KeyChange:
    pub = DecryptionKey.generate().public
    return KeyChange(site, "encryption", pub.key_id, KeyState.NEXT, pub.raw)


def test_a_mission_cannot_grow_the_directory(tmp_path: Path) -> None:
    with Network(tmp_path, missions=("M-EVIL",), env=ENV) as net:
        hq_dir = net.sites["HQ"].directory
        evil = _signing_key(net.sites["M-EVIL"].directory)
        before = _snapshot(hq_dir)
        # Many new keys in one update: one new key per kind at most.
        many = tuple(_new_encryption("M-EVIL") for _ in range(16))
        status, answer = _keys_post(net, "M-EVIL", _update("M-EVIL", evil, *many))
        assert status == 403 and "one new encryption key" in answer["error"], answer
        assert _snapshot(hq_dir) == before
        # Next and revoked in one go, again and again: the per-site rate stops it (the
        # refused update above counts too: every update costs HQ a check).
        statuses = []
        for _ in range(MAX_UPDATES_PER_MINUTE):
            c = _new_encryption("M-EVIL")
            revoked = KeyChange("M-EVIL", "encryption", c.key_id, KeyState.REVOKED)
            status, answer = _keys_post(net, "M-EVIL", _update("M-EVIL", evil, c, revoked))
            statuses.append(status)
        assert statuses[-1] == 429, statuses
        assert "key updates" in answer["error"], answer
        assert all(s == 200 for s in statuses[:-1]), statuses
        # Revoked keys beyond the few listed are kept by their ids only.
        entry = _directory(hq_dir).site("M-EVIL")
        listed = [k.key_id for k, st in entry.encryption if st is KeyState.REVOKED]
        assert len(listed) == MAX_LISTED_RETIRED
        assert len(entry.retired_ids) == statuses.count(200) - MAX_LISTED_RETIRED


def test_updates_not_signed_by_the_site_do_not_spend_its_rate(tmp_path: Path) -> None:
    # A thief holding only a site's certificate (the recovery case: its revoked TLS key)
    # posts junk to spend the site's budget; the site's own update still goes through.
    with Network(tmp_path, missions=("M-EVIL",), env=ENV) as net:
        stranger = SigningKey.generate()
        statuses = [
            _keys_post(net, "M-EVIL", _update("M-EVIL", stranger, _new_encryption("M-EVIL")))[0]
            for _ in range(2 * MAX_UPDATES_PER_MINUTE)
        ]
        assert set(statuses) == {403}, statuses
        evil = _signing_key(net.sites["M-EVIL"].directory)
        status, answer = _keys_post(
            net, "M-EVIL", _update("M-EVIL", evil, _new_encryption("M-EVIL"))
        )
        assert status == 200, answer


def test_a_publish_that_would_break_the_directory_changes_nothing(tmp_path: Path) -> None:
    with Network(tmp_path, missions=("M-PARIS",), env=ENV) as net:
        hq_dir = net.sites["HQ"].directory
        before = _snapshot(hq_dir)
        paris = _directory(hq_dir).site("M-PARIS")

        def bloat(d: Directory, now: Any) -> Directory:
            fillers = tuple(
                SiteEntry(
                    site=f"M-FILL{i}",
                    endpoint="https://127.0.0.1:1/" + "x" * 1000,
                    signing=((SigningKey.generate().public, KeyState.ACTIVE),),
                    encryption=((DecryptionKey.generate().public, KeyState.ACTIVE),),
                    tls=((f"{i:064x}", KeyState.ACTIVE),),
                )
                for i in range(MAX_DIRECTORY_BYTES // 1000)
            )
            return Directory(d.serial + 1, now, d.hub, (*d.sites, *fillers))

        with pytest.raises(DirectoryError, match="limit"):
            publish(hq_dir, bloat)
        assert _snapshot(hq_dir) == before

        def squat(d: Directory, now: Any) -> Directory:
            hq = d.site("HQ")
            stolen = replace_enc(hq, paris)
            return Directory(
                d.serial + 1, now, d.hub, tuple(stolen if e is hq else e for e in d.sites)
            )

        with pytest.raises(DirectoryError, match="M-PARIS"):
            publish(hq_dir, squat)
        assert _snapshot(hq_dir) == before
        net.sites["HQ"].stop()
        net.sites["HQ"].start()  # HQ restarts on what it has


def replace_enc(entry: SiteEntry, victim: SiteEntry) -> SiteEntry:
    key = victim.active_encryption_key()
    return replace(entry, encryption=(*entry.encryption, (key, KeyState.NEXT)))


def test_hq_revoke_by_id_names_one_site(tmp_path: Path) -> None:
    """The operator's ``valise keys revoke ID`` at HQ revokes that key of its one site."""
    from tests.system.test_key_rotation import valise

    with Network(tmp_path, missions=("M-PARIS", "M-EVIL"), env=ENV) as net:
        hq_dir = net.sites["HQ"].directory
        sig = next(k for k, s in _directory(hq_dir).site("M-PARIS").signing if s is KeyState.ACTIVE)
        evil = _signing_key(net.sites["M-EVIL"].directory)
        change = KeyChange("M-EVIL", "signing", sig.key_id, KeyState.NEXT, sig.raw)
        status, _ = _keys_post(net, "M-EVIL", _update("M-EVIL", evil, change))
        assert status == 403
        out = valise(
            "keys", "revoke", sig.key_id, "--reason", "stolen", "--dir", str(hq_dir), check=False
        )
        assert "of M-PARIS" in out.stdout, out.stdout + out.stderr
        states = _directory(hq_dir).site("M-PARIS").states()
        assert states[sig.key_id] == ("signing", KeyState.REVOKED)
        assert out.returncode == 0
