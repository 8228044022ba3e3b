"""The key ring on disk (gateway/site/keyring.py): a legacy folder read as one generation,
the migration into ring/, the state changes, pruning, and the keys a site loads."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from crypto.x509 import (
    SiteCA,
    certificate_pin,
    generate_site_key,
    issue_site_certificate,
    site_public_key,
)
from envelope.keydoc import parse_public_key_doc
from gateway.site.files import write_private
from gateway.site.keyring import (
    RING,
    KeyRing,
    RingKey,
    add_key,
    decryption_key,
    generate_key,
    load_ring,
    prune,
    ring_site_keys,
    save_ring,
    tls_files,
)
from gateway.site.keystore import KeyNotHeld, KeyStoreError, generate_site_keys
from gateway.site.ring_states import activate, due_for_retirement, retire, revoke
from routing.directory import Directory, KeyState, SiteEntry
from tests.conftest import NOW

SITE = "M-PARIS"
OVERLAP = timedelta(days=2)
LEGACY = (f"{SITE}.signing.key", f"{SITE}.encryption.key", "tls.key", "tls.crt")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def ca() -> SiteCA:
    return SiteCA.create(now=NOW - timedelta(days=1))


@pytest.fixture()
def folder(tmp_path: Path, ca: SiteCA) -> Path:
    """A key folder as sites made it before the ring (gateway/trust/enroll.py init_hub)."""
    keys = tmp_path / "keys"
    generate_site_keys(SITE, keys, now=NOW)
    cert, key = issue_site_certificate(ca, SITE, now=NOW)
    write_private(keys / "tls.key", key)
    (keys / "tls.crt").write_bytes(cert)
    return keys


def directory_of(ring: KeyRing, **shown: KeyState) -> Directory:
    """A directory listing the ring's signing, encryption and TLS keys; ``shown``
    overrides the state published for a key id (default: the ring's own state)."""
    from gateway.site.keyring import decryption_key, signing_key

    def state(k: RingKey) -> KeyState:
        return shown.get(k.id, k.key_state)

    signing = tuple(
        (signing_key(ring, k).public, state(k))
        for k in ring.keys
        if k.kind == "signing" and ring.path(k).exists()
    )
    encryption = tuple(
        (decryption_key(ring, k).public, state(k))
        for k in ring.keys
        if k.kind == "encryption" and ring.path(k).exists()
    )
    tls = tuple((k.id, state(k)) for k in ring.keys if k.kind == "tls")
    entry = SiteEntry(SITE, "https://127.0.0.1:8444", signing, encryption, tls)
    return Directory(serial=2, issued=NOW, hub=SITE, sites=(entry,))


# -- the legacy folder and the migration --------------------------------------------------


def test_a_legacy_folder_is_one_active_generation(folder: Path) -> None:
    ring = load_ring(folder)
    assert ring.legacy and ring.site == SITE
    doc = parse_public_key_doc((folder / f"{SITE}.pub.xml").read_bytes())
    pin = certificate_pin((folder / "tls.crt").read_bytes())
    assert [(k.kind, k.id, k.state) for k in ring.keys] == [
        ("signing", doc.signing.key_id, "active"),
        ("encryption", doc.encryption.key_id, "active"),
        ("tls", pin, "active"),
    ]
    assert ring.path(ring.active("signing")) == folder / f"{SITE}.signing.key"
    assert ring.path(ring.active("tls"), ".crt") == folder / "tls.crt"
    keys = ring_site_keys(ring)
    assert keys.signing.public == doc.signing and keys.decryption.public == doc.encryption
    assert tls_files(ring) == ((folder / "tls.crt").read_bytes(), (folder / "tls.key").read_bytes())
    assert not (folder / RING).exists()  # loading creates nothing


def test_the_first_save_migrates_into_the_ring(folder: Path) -> None:
    public_xml = (folder / f"{SITE}.pub.xml").read_bytes()
    old_tls = (folder / "tls.crt").read_bytes()
    ring = load_ring(folder)
    new = generate_key(ring, "signing", now=NOW)
    assert new.state == "next" and new.expires == (NOW + timedelta(days=365)).isoformat()
    save_ring(ring)

    assert not ring.legacy
    assert mode(folder / RING) == 0o600
    body = json.loads((folder / RING).read_text())
    assert body["site"] == SITE and len(body["keys"]) == 4
    ring_files = sorted(p.name for p in (folder / "ring").iterdir())
    assert len(ring_files) == 5  # 2 signing, 1 encryption, tls .key and .crt
    for p in (folder / "ring").glob("*.key"):
        assert mode(p) == 0o600, p
    assert (folder / "ring" / f"tls-{ring.active('tls').id}.crt").read_bytes() == old_tls
    # No activation: the public key document is as it was.
    assert (folder / f"{SITE}.pub.xml").read_bytes() == public_xml

    again = load_ring(folder)
    assert not again.legacy and again.keys == ring.keys
    assert again.path(new) == folder / "ring" / f"signing-{new.id}.key"
    assert ring_site_keys(again).signing.key_id == again.active("signing").id


def test_the_first_save_removes_the_legacy_files(folder: Path) -> None:
    ring = load_ring(folder)
    generate_key(ring, "signing", now=NOW)
    save_ring(ring)
    assert [name for name in LEGACY if (folder / name).exists()] == []


def test_a_save_without_new_keys_removes_the_legacy_files(folder: Path) -> None:
    ring = load_ring(folder)
    assert ring.legacy
    save_ring(ring)  # commits the one generation into ring/
    assert [name for name in LEGACY if (folder / name).exists()] == []
    assert load_ring(folder).keys == ring.keys


# -- state changes -------------------------------------------------------------------------


def test_activate_retire_and_due(folder: Path) -> None:
    ring = load_ring(folder)
    old = ring.active("signing")
    new = generate_key(ring, "signing", now=NOW)
    save_ring(ring)
    public_xml = (folder / f"{SITE}.pub.xml").read_bytes()
    later = NOW + timedelta(hours=1)

    changed = activate(ring, new.id, now=later, overlap=OVERLAP)
    assert [(k.id, k.state) for k in changed] == [(old.id, "retiring"), (new.id, "active")]
    assert ring.get(old.id).retire_after == (later + OVERLAP).isoformat()
    assert ring.get(new.id).activated == later.isoformat()
    assert activate(ring, new.id, now=later, overlap=OVERLAP) == []
    with pytest.raises(KeyStoreError, match="only a next key can be activated"):
        activate(ring, old.id, now=later, overlap=OVERLAP)
    save_ring(ring)
    # Activation rewrites SITE.pub.xml for the new active signing key.
    rewritten = (folder / f"{SITE}.pub.xml").read_bytes()
    assert rewritten != public_xml
    assert parse_public_key_doc(rewritten).signing.key_id == new.id
    assert ring_site_keys(load_ring(folder)).signing.key_id == new.id

    assert due_for_retirement(ring, later + OVERLAP - timedelta(seconds=1)) == []
    assert due_for_retirement(ring, later + OVERLAP) == [ring.get(old.id)]

    with pytest.raises(KeyStoreError, match="only a retiring key is retired"):
        retire(ring, new.id, now=later)
    done = retire(ring, old.id, now=later + OVERLAP)
    assert [(k.id, k.state) for k in done] == [(old.id, "retired")]
    assert ring.get(old.id).retired == (later + OVERLAP).isoformat()
    assert retire(ring, old.id, now=later + OVERLAP) == []
    assert due_for_retirement(ring, later + OVERLAP * 10) == []
    save_ring(ring)
    assert load_ring(folder).get(old.id).state == "retired"


def test_revoke(folder: Path) -> None:
    ring = load_ring(folder)
    active = ring.active("encryption")
    with pytest.raises(KeyStoreError, match="activate a replacement before revoking"):
        revoke(ring, active.id, now=NOW, reason="stolen laptop")
    nxt = generate_key(ring, "encryption", now=NOW)
    changed = revoke(ring, nxt.id, now=NOW, reason="stolen laptop")
    assert [(k.id, k.state, k.reason) for k in changed] == [(nxt.id, "revoked", "stolen laptop")]
    assert ring.get(nxt.id).revoked == NOW.isoformat()
    assert revoke(ring, nxt.id, now=NOW, reason="again") == []
    with pytest.raises(KeyStoreError, match="is revoked; only a next key"):
        activate(ring, nxt.id, now=NOW, overlap=OVERLAP)
    with pytest.raises(KeyStoreError, match="no key"):
        revoke(ring, "ff" * 16, now=NOW, reason="?")
    with pytest.raises(KeyStoreError, match="in the ring already"):
        add_key(ring, "encryption", b"x", nxt.id, now=NOW, expires=NOW)
    with pytest.raises(KeyStoreError, match="unknown key kind"):
        add_key(ring, "ssh", b"x", "00" * 16, now=NOW, expires=NOW)
    with pytest.raises(KeyStoreError, match="signing or encryption keys"):
        generate_key(ring, "tls", now=NOW)


def test_a_new_tls_key(folder: Path, ca: SiteCA) -> None:
    ring = load_ring(folder)
    old = ring.active("tls")
    key = generate_site_key()
    cert, _ = issue_site_certificate(ca, SITE, site_public_key(key), now=NOW)
    k = add_key(
        ring,
        "tls",
        key,
        certificate_pin(cert),
        now=NOW,
        expires=NOW + timedelta(days=90),
        cert=cert,
    )
    # The certificate is public, but nothing in a site folder is for other users.
    assert mode(ring.path(k)) == 0o600 and mode(ring.path(k, ".crt")) == 0o600
    activate(ring, k.id, now=NOW, overlap=OVERLAP)
    save_ring(ring)
    ring = load_ring(folder)
    assert ring.get(old.id).state == "retiring"
    assert tls_files(ring) == (cert, key)


# -- pruning ------------------------------------------------------------------------------


def test_prune_waits_for_the_directory_to_show_the_state(folder: Path) -> None:
    ring = load_ring(folder)
    old_s, old_e = ring.active("signing"), ring.active("encryption")
    new_s = generate_key(ring, "signing", now=NOW)
    new_e = generate_key(ring, "encryption", now=NOW)
    bad = generate_key(ring, "encryption", now=NOW)
    save_ring(ring)
    activate(ring, new_s.id, now=NOW, overlap=OVERLAP)
    activate(ring, new_e.id, now=NOW, overlap=OVERLAP)
    retire(ring, old_s.id, now=NOW)
    revoke(ring, bad.id, now=NOW, reason="leaked")
    save_ring(ring)

    # The directory still shows the old states: nothing is deleted yet.
    stale = directory_of(ring, **{old_s.id: KeyState.RETIRING, bad.id: KeyState.NEXT})
    assert prune(ring, stale) == []
    assert ring.path(ring.get(old_s.id)).exists() and ring.path(ring.get(bad.id)).exists()

    shown = directory_of(ring)
    pruned = prune(ring, shown)
    assert sorted(k.id for k in pruned) == sorted([old_s.id, bad.id])
    assert not ring.path(ring.get(old_s.id)).exists()
    assert not ring.path(ring.get(bad.id)).exists()
    # Usable keys keep their files; pruned keys keep their entries.
    for k in (new_s, new_e, old_e):
        assert ring.path(ring.get(k.id)).exists()
    assert ring.get(old_s.id).state == "retired" and ring.get(bad.id).reason == "leaked"
    assert prune(ring, shown) == []
    assert ring_site_keys(ring).signing.key_id == new_s.id


# -- the keys a site loads ------------------------------------------------------------------


def test_ring_site_keys_decrypts_with_usable_keys_only(folder: Path) -> None:
    ring = load_ring(folder)
    old = ring.active("encryption")
    nxt = generate_key(ring, "encryption", now=NOW)
    save_ring(ring)
    keys = ring_site_keys(ring)
    assert set(keys.decryptions) == {old.id, nxt.id}
    assert keys.decryption.key_id == old.id
    assert keys.decryption_for(nxt.id).key_id == nxt.id

    activate(ring, nxt.id, now=NOW, overlap=OVERLAP)
    save_ring(ring)
    keys = ring_site_keys(ring)
    assert keys.decryption.key_id == nxt.id and keys.public.encryption.key_id == nxt.id
    assert keys.decryption_for(old.id).key_id == old.id  # retiring: still opens

    retire(ring, old.id, now=NOW)
    third = generate_key(ring, "encryption", now=NOW)
    revoke(ring, third.id, now=NOW, reason="test")
    save_ring(ring)
    keys = ring_site_keys(ring)
    assert set(keys.decryptions) == {nxt.id}
    assert keys.unusable == {old.id: "retired", third.id: "revoked"}
    with pytest.raises(KeyStoreError, match="which is retired") as retired:
        keys.decryption_for(old.id)
    assert not isinstance(retired.value, KeyNotHeld)
    with pytest.raises(KeyStoreError, match="which is revoked"):
        keys.decryption_for(third.id)
    with pytest.raises(KeyNotHeld, match="does not hold"):
        keys.decryption_for("ab" * 16)


def test_a_loose_ring_key_is_refused(folder: Path) -> None:
    ring = load_ring(folder)
    generate_key(ring, "signing", now=NOW)
    save_ring(ring)
    path = ring.path(ring.active("signing"))
    path.chmod(0o644)
    with pytest.raises(KeyStoreError, match="readable by others"):
        ring_site_keys(load_ring(folder))


def test_pub_xml_not_matching_the_ring_is_refused(folder: Path, tmp_path: Path) -> None:
    ring = load_ring(folder)
    generate_key(ring, "signing", now=NOW)
    save_ring(ring)
    other = generate_site_keys("M-PARIS", tmp_path / "other", now=NOW)
    (folder / f"{SITE}.pub.xml").write_bytes(other.public_xml)
    with pytest.raises(KeyStoreError, match="does not match the active keys"):
        ring_site_keys(load_ring(folder))


@pytest.mark.parametrize(
    "damage",
    [
        "{not json",
        "[]",
        '{"site": "M-PARIS"}',
        '{"site": "M-PARIS", "keys": [{"kind": "signing"}]}',
        "TWO_ACTIVE",
        "BAD_STATE",
        "NO_ACTIVE_TLS",
    ],
)
def test_a_damaged_ring_is_refused(folder: Path, damage: str) -> None:
    ring = load_ring(folder)
    generate_key(ring, "signing", now=NOW)
    save_ring(ring)
    path = folder / RING
    body = json.loads(path.read_text())
    if damage == "TWO_ACTIVE":
        body["keys"][3]["state"] = "active"
        text = json.dumps(body)
    elif damage == "BAD_STATE":
        body["keys"][3]["state"] = "dormant"
        text = json.dumps(body)
    elif damage == "NO_ACTIVE_TLS":
        body["keys"] = [k for k in body["keys"] if k["kind"] != "tls"]
        text = json.dumps(body)
    else:
        text = damage
    path.write_text(text)
    with pytest.raises(KeyStoreError, match=r"is damaged|active"):
        load_ring(folder)


def test_no_keys_at_all(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="no key ring"):
        load_ring(tmp_path)


def test_a_revoked_key_still_held_opens_and_is_read_once(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """held_key (review 10c F2/F4): the private key of an own encryption key revoked
    since an envelope was taken, while its file is kept; read once, not at every
    envelope (a passphrase-protected file costs an scrypt run); gone with its file."""
    from types import SimpleNamespace

    from gateway.site import context

    ring = load_ring(folder)
    old = ring.active("encryption")
    nxt = generate_key(ring, "encryption", now=NOW)
    activate(ring, nxt.id, now=NOW, overlap=OVERLAP)
    revoke(ring, old.id, now=NOW, reason="test")
    save_ring(ring)
    config = SimpleNamespace(keys_dir=folder, key_passphrase=None)
    reads: list[str] = []
    real = decryption_key

    def counting(r: KeyRing, k: object) -> object:
        reads.append(getattr(k, "id", ""))
        return real(r, k)  # type: ignore[arg-type]

    monkeypatch.setattr(context, "decryption_key", counting)
    first = context.held_key(config, old.id)  # type: ignore[arg-type]
    assert first.key_id == old.id
    assert context.held_key(config, old.id) is first  # type: ignore[arg-type]
    assert reads == [old.id]
    ring.path(ring.get(old.id)).unlink()
    with pytest.raises(KeyStoreError, match="is gone"):
        context.held_key(config, old.id)  # type: ignore[arg-type]
    with pytest.raises(KeyStoreError, match="is gone"):
        context.held_key(config, "ab" * 16)  # type: ignore[arg-type]
