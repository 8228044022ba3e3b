"""A site's key ring on disk: every generation of its signing, encryption and TLS keys.

Layout (beside the files of gateway/site/keystore.py):

    keys/ring.json                 the ring: one entry per key, with its state and times
    keys/ring/signing-ID.key       Ed25519 seed                      0600
    keys/ring/encryption-ID.key    ML-KEM-768+X25519 seeds           0600
    keys/ring/tls-PIN.key|.crt     P-256 TLS key and certificate     0600
    keys/SITE.pub.xml              public key document of the active signing and
                                   encryption keys, rewritten on every activation

Rules:
- A site created before the ring has one generation in the legacy files
  (SITE.signing.key, SITE.encryption.key, tls.key, tls.crt); they are read as the
  active keys, and the first change moves them into ring/.
- States go next -> active -> retiring -> retired, and any -> revoked; nothing comes
  back (the moves: gateway/site/ring_states.py). One key per kind is active. A
  retired or revoked key's private file is deleted once the directory shows its new
  state (:func:`prune`): it can no longer open or sign anything (its entry stays, for
  the reason).
- A next key announced by ``valise keys rotate`` records the directory version that
  announced it and when it becomes active at the latest (``announced_in``,
  ``activate_by``: gateway/trust/announce.py); a ring written before these fields
  loads with the keys not announced.
- With a key passphrase (``KeyRing.passphrase``) every private file is written
  encrypted (crypto/keyfile.py) and read through it; files written before are read as
  they are. A ring whose keys are encrypted refuses a new key without the passphrase
  (no silent downgrade to a plaintext key beside encrypted ones).
- Key files are written first, ring.json last (temp file, fsync, rename): ring.json
  is the commit point, so a crash leaves the old ring or the new one. Read-modify-
  write of the ring is under an exclusive lock (keys/ring.lock), shared by the
  running gateway and the admin CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from crypto.armor import armor, load_decryption_key, load_signing_key
from crypto.errors import CryptoError, KeyFormatError
from crypto.keyfile import is_encrypted
from crypto.keys import DecryptionKey, SigningKey
from crypto.x509 import certificate_not_after, certificate_pin
from envelope.errors import EnvelopeError
from envelope.keydoc import PublicKeyDoc, parse_public_key_doc, write_public_key_doc
from envelope.values import truncate_to_second
from gateway.site.files import file_lock, write_private
from gateway.site.keystore import (
    DEFAULT_KEY_VALIDITY,
    PRIVATE_MODE,
    KeyPassphraseError,
    KeyStoreError,
    SiteKeys,
    _read_private,
    read_private_file,
    seal_private,
)
from routing.directory import USABLE, Directory, KeyState

KINDS = ("signing", "encryption", "tls")
RING = "ring.json"
MAX_OVERLAP_SECONDS = 3650 * 86400.0  # an overlap kept in the ring: ten years at most
# A publication (a sync: POST /v1/keys, or HQ's local apply) takes at most its request
# timeout (30 s); another waits for the publishing lock this long, trying every 50 ms.
PUBLISH_LOCK_SECONDS = 120.0
LOCK_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class RingKey:
    kind: str  # signing | encryption | tls
    id: str  # key id (signing, encryption) or SPKI pin (tls)
    state: str
    created: str
    expires: str
    activated: str = ""
    retire_after: str = ""  # set when the key became retiring: end of the overlap
    retired: str = ""
    revoked: str = ""
    reason: str = ""
    # Set by ``keys rotate`` (not --now) on a next key: the directory serial that
    # announced it, when it becomes active at the latest (routing/announce.py), and
    # the overlap the command asked for, kept for the activation (None: the config's).
    # Rings written before these existed load with the defaults: not announced.
    announced_in: int = 0
    activate_by: str = ""
    overlap_seconds: float | None = None

    @property
    def key_state(self) -> KeyState:
        return KeyState(self.state)

    @property
    def deadline(self) -> datetime | None:
        """When this announced key becomes active at the latest; None if not announced."""
        return datetime.fromisoformat(self.activate_by) if self.activate_by else None


@dataclass
class KeyRing:
    """The ring of one site (mutable; :func:`save_ring` commits it)."""

    folder: Path
    site: str
    keys: list[RingKey] = field(default_factory=list)
    legacy: bool = False  # read from the pre-ring files; the first save moves them
    leftovers: list[Path] = field(default_factory=list)  # legacy files to drop on save
    passphrase: bytes | None = field(default=None, repr=False)  # keys encrypted under it

    # -- queries ------------------------------------------------------------------
    def get(self, key_id: str) -> RingKey:
        for k in self.keys:
            if k.id == key_id:
                return k
        raise KeyStoreError(f"no key {key_id} in the key ring of {self.site}")

    def find(self, key_id: str) -> RingKey | None:
        return next((k for k in self.keys if k.id == key_id), None)

    def of(self, kind: str, state: KeyState) -> list[RingKey]:
        return [k for k in self.keys if k.kind == kind and k.state == state.value]

    def active(self, kind: str) -> RingKey:
        found = self.of(kind, KeyState.ACTIVE)
        if len(found) != 1:
            raise KeyStoreError(f"{self.site} has {len(found)} active {kind} keys, not one")
        return found[0]

    def path(self, k: RingKey, suffix: str = ".key") -> Path:
        if self.legacy:
            legacy = {
                ("signing", ".key"): f"{self.site}.signing.key",
                ("encryption", ".key"): f"{self.site}.encryption.key",
                ("tls", ".key"): "tls.key",
                ("tls", ".crt"): "tls.crt",
            }
            return self.folder / legacy[(k.kind, suffix)]
        return self.folder / "ring" / f"{k.kind}-{k.id}{suffix}"

    # -- changes (in memory; save_ring commits) -------------------------------------
    def replace(self, k: RingKey, **changes: Any) -> RingKey:
        new = replace(k, **changes)
        self.keys[self.keys.index(k)] = new
        return new


def now_text(now: datetime) -> str:
    return truncate_to_second(now.astimezone(UTC)).isoformat()


def ring_lock(folder: Path) -> contextlib.AbstractContextManager[None]:
    """Hold the ring's exclusive lock (blocking) for a read-modify-write."""
    return file_lock(folder / "ring.lock")


@contextlib.asynccontextmanager
async def publish_lock(folder: Path, timeout: float = PUBLISH_LOCK_SECONDS) -> AsyncIterator[None]:
    """Hold the site's publishing lock (keys/publish.lock) across an await: tried
    without blocking the event loop, every ``LOCK_POLL_SECONDS``. Raises TimeoutError
    if another process or task holds it for longer than ``timeout``."""
    fd = os.open(folder / "publish.lock", os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{folder / 'publish.lock'} held too long") from None
                await asyncio.sleep(LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(fd)


def load_ring(folder: Path, passphrase: bytes | None = None) -> KeyRing:
    """The ring in ``folder`` (a site's keys/), its private files read and written under
    ``passphrase`` (config.key_passphrase). Raises :class:`KeyStoreError`."""
    path = folder / RING
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return _legacy_ring(folder, passphrase)
    except (OSError, ValueError) as exc:
        raise KeyStoreError(f"{path} is damaged: {exc}") from None
    try:
        keys = [RingKey(**entry) for entry in raw["keys"]]
        ring = KeyRing(folder, str(raw["site"]), keys, passphrase=passphrase)
        for kind in KINDS:
            ring.active(kind)
        for k in keys:
            KeyState(k.state)
            _check_announce(k)
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyStoreError(f"{path} is damaged: {exc}") from None
    return ring


def _check_announce(k: RingKey) -> None:
    """Raise ValueError unless the announce fields are a serial and an aware time."""
    if type(k.announced_in) is not int or k.announced_in < 0:
        raise ValueError(f"key {k.id}: announced_in must be a directory serial")
    if not isinstance(k.activate_by, str):
        raise ValueError(f"key {k.id}: activate_by must be a time")
    deadline = k.deadline
    if deadline is not None and deadline.tzinfo is None:
        raise ValueError(f"key {k.id}: activate_by must name its time zone")
    if (deadline is None) != (k.announced_in == 0):
        raise ValueError(f"key {k.id}: announced_in and activate_by go together")
    overlap = k.overlap_seconds
    if overlap is not None and (
        type(overlap) not in (int, float) or not 0 <= overlap <= MAX_OVERLAP_SECONDS
    ):
        raise ValueError(f"key {k.id}: overlap_seconds must be 0 to {MAX_OVERLAP_SECONDS:.0f}")


def _legacy_ring(folder: Path, passphrase: bytes | None) -> KeyRing:
    found = sorted(folder.glob("*.signing.key"))
    if len(found) != 1:
        raise KeyStoreError(f"no key ring and no single SITE.signing.key in {folder}")
    site = found[0].name.removesuffix(".signing.key")
    try:
        doc = parse_public_key_doc((folder / f"{site}.pub.xml").read_bytes())
        cert = (folder / "tls.crt").read_bytes()
        tls_expires = certificate_not_after(cert)
        pin = certificate_pin(cert)
    except (OSError, CryptoError, ValueError) as exc:
        raise KeyStoreError(f"{folder}: {exc}") from None
    created, expires = doc.valid_from.isoformat(), doc.valid_until.isoformat()
    active = KeyState.ACTIVE.value
    keys = [
        RingKey("signing", doc.signing.key_id, active, created, expires, activated=created),
        RingKey("encryption", doc.encryption.key_id, active, created, expires, activated=created),
        RingKey("tls", pin, active, created, tls_expires.isoformat(), activated=created),
    ]
    return KeyRing(folder, site, keys, legacy=True, passphrase=passphrase)


def _migrate(ring: KeyRing) -> None:
    """Copy the legacy files into ring/ (the old files go once ring.json is written)."""
    (ring.folder / "ring").mkdir(mode=0o700, exist_ok=True)
    for k in ring.keys:
        suffixes = (".key", ".crt") if k.kind == "tls" else (".key",)
        for suffix in suffixes:
            source = ring.path(k, suffix)
            ring.leftovers.append(source)
            # As stored: an encrypted key moves encrypted, a plaintext one stays as it was.
            data = read_private_file(source) if suffix == ".key" else source.read_bytes()
            write_private(ring.folder / "ring" / f"{k.kind}-{k.id}{suffix}", data)
    ring.legacy = False


def save_ring(ring: KeyRing) -> None:
    """Commit the ring: ring.json (atomically), then drop files no entry needs."""
    if ring.legacy:
        _migrate(ring)
    # The public key document is made first (it decrypts keys: slow under a passphrase)
    # and written right after ring.json, so that a reader in another process (which
    # reads ring.json, then SITE.pub.xml) meets the two out of step only for an instant.
    public = _public_doc(ring)
    body = {"site": ring.site, "keys": [asdict(k) for k in ring.keys]}
    write_private(ring.folder / RING, json.dumps(body, indent=2).encode())
    if public is not None:
        write_private(ring.folder / f"{ring.site}.pub.xml", public)
    for path in ring.leftovers:  # the pre-ring files, copied into ring/ by _migrate
        path.unlink(missing_ok=True)
    ring.leftovers.clear()


def prune(ring: KeyRing, directory: Directory) -> list[RingKey]:
    """Delete the private file of every retired or revoked key whose state the
    directory shows already (until then it may still have to sign the update that
    publishes it). Returns the keys pruned."""
    pruned = prunable(ring, directory)
    for k in pruned:
        ring.path(k).unlink()
    return pruned


def prunable(ring: KeyRing, directory: Directory) -> list[RingKey]:
    """The keys :func:`prune` deletes the private file of."""
    published = directory.site(ring.site).states()
    found = []
    for k in ring.keys:
        shown = published.get(k.id)
        unusable = k.key_state not in USABLE
        if unusable and (shown is None or shown[1] is k.key_state) and ring.path(k).exists():
            found.append(k)
    return found


def add_key(
    ring: KeyRing,
    kind: str,
    private: bytes,
    key_id: str,
    *,
    now: datetime,
    expires: datetime,
    cert: bytes | None = None,
) -> RingKey:
    """Add a new key as ``next`` (its private file written now, the entry on save)."""
    if kind not in KINDS:
        raise KeyStoreError(f"unknown key kind {kind!r} (signing, encryption or tls)")
    if ring.find(key_id) is not None:
        raise KeyStoreError(f"key {key_id} is in the ring already")
    if ring.passphrase is None and _encrypted(ring.path(ring.active("signing"))):
        raise KeyPassphraseError(
            f"the keys of {ring.site} are encrypted: a new key needs the key passphrase "
            "(VALISE_KEY_PASSPHRASE or [keys] passphrase_file)"
        )
    if ring.legacy:
        _migrate(ring)
    (ring.folder / "ring").mkdir(mode=0o700, exist_ok=True)
    k = RingKey(kind, key_id, KeyState.NEXT.value, now_text(now), now_text(expires))
    write_private(ring.path(k, ".key"), seal_private(private, ring.passphrase))
    if cert is not None:
        write_private(ring.path(k, ".crt"), cert)
    ring.keys.append(k)
    return k


def generate_key(
    ring: KeyRing, kind: str, *, now: datetime, validity: timedelta = DEFAULT_KEY_VALIDITY
) -> RingKey:
    """Generate a signing or encryption key as ``next`` (TLS keys: gateway/trust/lifecycle.py)."""
    if kind == "signing":
        sk = SigningKey.generate()
        return add_key(ring, kind, armor(sk), sk.key_id, now=now, expires=now + validity)
    if kind == "encryption":
        dk = DecryptionKey.generate()
        return add_key(ring, kind, armor(dk), dk.key_id, now=now, expires=now + validity)
    raise KeyStoreError(f"generate_key makes signing or encryption keys, not {kind}")


# -- loading the keys a running site uses -----------------------------------------------


def signing_key(ring: KeyRing, k: RingKey) -> SigningKey:
    try:
        return load_signing_key(_read_private(ring.path(k), ring.passphrase))
    except KeyFormatError as exc:
        raise KeyStoreError(f"{ring.path(k)}: {exc}") from None


def decryption_key(ring: KeyRing, k: RingKey) -> DecryptionKey:
    try:
        return load_decryption_key(_read_private(ring.path(k), ring.passphrase))
    except KeyFormatError as exc:
        raise KeyStoreError(f"{ring.path(k)}: {exc}") from None


class KeysChanging(KeyStoreError):
    """SITE.pub.xml and the ring disagree: another process is between writing one and the
    other (an activation rewrites both), or the folder was edited by hand. Reading the
    ring again a moment later settles the first case (gateway/site/context.py load_keys)."""


def ring_site_keys(ring: KeyRing) -> SiteKeys:
    """The site's keys: the active ones, and every usable decryption key by id."""
    # SITE.pub.xml first, right after the ring was read: another process activating a
    # key rewrites both, and the keys below may take a while to decrypt (scrypt).
    public_xml = (ring.folder / f"{ring.site}.pub.xml").read_bytes()
    signing = signing_key(ring, ring.active("signing"))
    active_enc = ring.active("encryption")
    decryptions = {
        k.id: decryption_key(ring, k)
        for k in ring.keys
        if k.kind == "encryption" and k.key_state in USABLE
    }
    public = parse_public_key_doc(public_xml)
    if public.signing != signing.public or public.encryption != decryptions[active_enc.id].public:
        raise KeysChanging(f"{ring.site}.pub.xml does not match the active keys of the ring")
    unusable = {
        k.id: k.state for k in ring.keys if k.kind == "encryption" and k.key_state not in USABLE
    }
    return SiteKeys(
        ring.site, signing, decryptions[active_enc.id], public, public_xml, decryptions, unusable
    )


def tls_files(ring: KeyRing) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of the active TLS key."""
    k = ring.active("tls")
    return ring.path(k, ".crt").read_bytes(), _read_private(ring.path(k, ".key"), ring.passphrase)


def _public_doc(ring: KeyRing) -> bytes | None:
    """SITE.pub.xml for the active signing and encryption keys; None if it is so already."""
    signing = signing_key(ring, ring.active("signing"))
    enc = ring.active("encryption")
    decryption = decryption_key(ring, enc)
    path = ring.folder / f"{ring.site}.pub.xml"
    with contextlib.suppress(OSError, EnvelopeError):
        current = parse_public_key_doc(path.read_bytes())
        if current.signing == signing.public and current.encryption == decryption.public:
            return None
    s_entry = ring.active("signing")
    valid_from = max(datetime.fromisoformat(s_entry.created), datetime.fromisoformat(enc.created))
    valid_until = min(datetime.fromisoformat(s_entry.expires), datetime.fromisoformat(enc.expires))
    doc = PublicKeyDoc(ring.site, signing.public, decryption.public, valid_from, valid_until)
    return write_public_key_doc(doc, signing)


def _encrypted(path: Path) -> bool:
    try:
        return is_encrypted(path.read_bytes())
    except OSError:
        return False


def encrypt_key_files(folder: Path, passphrase: bytes) -> list[Path]:
    """Encrypt in place every plaintext private key file in ``folder`` (a site's keys/)
    and its ring/, under the ring lock. Files encrypted already must open with
    ``passphrase`` (one passphrase per site). Checks every file before writing any.
    Returns the files encrypted. Raises KeyStoreError / KeyPassphraseError."""
    with ring_lock(folder):
        ring_dir = folder / "ring"
        paths = sorted(folder.glob("*.key")) + (
            sorted(ring_dir.glob("*.key")) if ring_dir.is_dir() else []
        )
        plain: list[tuple[Path, bytes]] = []
        for path in paths:
            data = read_private_file(path)
            if is_encrypted(data):
                _read_private(path, passphrase)  # the same passphrase, or refuse all
            else:
                plain.append((path, data))
        for path, data in plain:
            write_private(path, seal_private(data, passphrase))
        return [path for path, _ in plain]
