"""A site on disk and its runtime context.

DIR/valise.toml          configuration (config/site.py)
DIR/directory.xml        the last good signed directory
DIR/directories/N.xml    every directory version this site has held (evidence)
DIR/keys/SITE.*          envelope keys (gateway/site/keystore.py), until the first rotation
DIR/keys/tls.crt|.key    this site's TLS certificate and key (key 0600), likewise
DIR/keys/ring.json, ring/   every generation of those keys (gateway/site/keyring.py)
DIR/keys/ca.crt          the HQ site CA
DIR/keys/directory.pub   the directory key this site trusts (base64, raw Ed25519)
DIR/keys/ca.key, directory.key     HQ only (0600)
DIR/inbox/ID/...                   opened documents at the destination

Everything in a site folder is owner-only (0700 folders, 0600 files): gateway/site/modes.py.
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from config.site import SiteConfig, load_site_config
from crypto.armor import load_signing_key
from crypto.keys import DecryptionKey, SigningKey, VerifyKey
from crypto.x509 import SiteCA
from gateway.runtime.doorbell import Doorbell
from gateway.site.files import write_private
from gateway.site.keyring import (
    KeysChanging,
    decryption_key,
    load_ring,
    ring_site_keys,
    tls_files,
)
from gateway.site.keystore import KeyStoreError, SiteKeys, _read_private, seal_private
from gateway.site.modes import PRIVATE_DIR_MODE, create_private_file
from gateway.store.base import Store
from routing.directory import Directory, DirectoryError, accept_update, parse_directory


@dataclass(frozen=True)
class TlsMaterial:
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes


class ContextChangedOffThread(RuntimeError):
    """A running site's directory or keys were replaced from another thread than the
    event loop's that loaded it (a worker thread must read, never replace)."""


@dataclass
class _Current:
    """What a running site replaces while it runs: the directory in force and the keys
    loaded. Each is replaced whole, on the loading thread only."""

    directory: Directory
    keys: SiteKeys
    tls: TlsMaterial
    owner: int = field(default_factory=threading.get_ident)

    def check_thread(self) -> None:
        if threading.get_ident() != self.owner:
            raise ContextChangedOffThread("the site context is replaced on its event loop only")


@dataclass(frozen=True)
class SiteContext:
    """Everything a running site needs. Frozen: nothing rebinds its fields. The directory
    in force and the keys loaded change as new versions arrive, through
    :meth:`install_directory` and :meth:`adopt_keys` only, on the event loop that loaded
    the site (a worker thread that needs newer keys loads them for itself)."""

    config: SiteConfig
    trust: VerifyKey
    store: Store
    _current: _Current = field(repr=False, compare=False)
    directory_key: SigningKey | None = None  # HQ only
    # HQ: site -> (directory serial, monotonic time) last written to the store's
    # directory_fetches, so that a poll of an unchanged version costs no write each time.
    fetched: dict[str, tuple[int, float]] = field(default_factory=dict)
    # Rung with the next hops once work is durably queued (gateway/relay/submit.py,
    # reseal): a running site's couriers and stamper listen (gateway/runtime/doorbell.py).
    queued: Doorbell = field(default_factory=Doorbell, repr=False, compare=False)

    @property
    def here(self) -> str:
        return self.config.site.id

    @property
    def directory(self) -> Directory:
        return self._current.directory

    @property
    def keys(self) -> SiteKeys:
        return self._current.keys

    @property
    def tls(self) -> TlsMaterial:
        return self._current.tls

    def install_directory(self, data: bytes) -> bool:
        """Verify and adopt ``data`` if newer; persist it. Raises DirectoryError,
        ContextChangedOffThread."""
        self._current.check_thread()
        new = install_directory_file(self.config.directory, self.trust, self.directory, data)
        if new is None:
            return False
        self._current.directory = new
        return True

    def adopt_keys(self, keys: SiteKeys, tls: TlsMaterial | None = None) -> None:
        """Make ``keys`` (and ``tls``) the ones in use. Raises ContextChangedOffThread."""
        self._current.check_thread()
        self._current.keys = keys
        if tls is not None:
            self._current.tls = tls


def install_directory_file(
    site_dir: Path, trust: VerifyKey, held: Directory | None, data: bytes
) -> Directory | None:
    """Verify ``data``; if it is newer than ``held``, archive it and make it the site's
    DIR/directory.xml. Returns it, or None when it is ``held`` again. Raises
    DirectoryError (a forgery or a rollback) with nothing written."""
    new = parse_directory(data, trust)
    if not accept_update(held, new):
        return None
    archive_directory(site_dir, new.serial, data)
    write_private(site_dir / "directory.xml", data)
    return new


def load_site_ca(keys_dir: Path, passphrase: bytes | None = None) -> SiteCA:
    """HQ's site CA (keys/ca.crt and the 0600 keys/ca.key, encrypted under
    ``passphrase`` if it was written so). Raises KeyStoreError, CertificateError."""
    key = _read_private(keys_dir / "ca.key", passphrase)
    return SiteCA.from_pem((keys_dir / "ca.crt").read_bytes(), key)


def write_private_key(path: Path, data: bytes, passphrase: bytes | None) -> None:
    """Write a private key file (0600, atomically), encrypted under ``passphrase`` if any."""
    write_private(path, seal_private(data, passphrase))


def archive_directory(site_dir: Path, serial: int, data: bytes) -> None:
    """Keep directory version ``serial`` as DIR/directories/SERIAL.xml (evidence needs
    the keys that were in force when a message was sent)."""
    folder = site_dir / "directories"
    folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    path = folder / f"{serial}.xml"
    if not path.exists():
        write_private(path, data)


def archived_directories(site_dir: Path) -> list[tuple[int, Path]]:
    """(serial, path) of every archived directory version, oldest first."""
    folder = site_dir / "directories"
    found = [(int(p.stem), p) for p in folder.glob("*.xml") if p.stem.isdigit()]
    return sorted(found)


def read_trust(keys_dir: Path) -> VerifyKey:
    return VerifyKey.from_bytes(base64.b64decode((keys_dir / "directory.pub").read_text().strip()))


def load_directory(config: SiteConfig, trust: VerifyKey) -> Directory:
    path = config.directory / "directory.xml"
    try:
        return parse_directory(path.read_bytes(), trust)
    except FileNotFoundError:
        raise DirectoryError(f"{path} is missing") from None


async def open_store(config: SiteConfig) -> Store:
    if config.store.backend == "postgres":
        from gateway.store.postgres import PostgresStore

        return await PostgresStore.open(config.store.dsn, schema=config.store.schema or None)
    from gateway.store.sqlite import SqliteStore

    create_private_file(config.store_path)  # 0600 whatever the umask; -wal/-shm follow it
    return await SqliteStore.open(config.store_path)


async def create_store(directory: Path) -> None:
    """Create (and migrate) a new site's store, so that its log starts with its creation."""
    store = await open_store(load_site_config(directory))
    await store.close()


def load_keys(config: SiteConfig) -> tuple[SiteKeys, TlsMaterial]:
    """The site's envelope keys and TLS material from its key ring (gateway/site/keyring.py).
    A ring caught mid-change by another process (KeysChanging) is read again, a few times
    (CI saw ``valise keys rotate`` start just as the running gateway activated a key)."""
    for attempt in range(1, KEYS_CHANGING_ATTEMPTS + 1):
        ring = load_ring(config.keys_dir, config.key_passphrase)
        try:
            cert, key = tls_files(ring)
            keys = ring_site_keys(ring)
        except KeysChanging:
            if attempt == KEYS_CHANGING_ATTEMPTS:
                raise
            time.sleep(KEYS_CHANGING_PAUSE_SECONDS * attempt)
            continue
        return keys, TlsMaterial(cert, key, (config.keys_dir / "ca.crt").read_bytes())
    raise AssertionError("unreachable")  # pragma: no cover


def held_key(config: SiteConfig, key_id: str) -> DecryptionKey:
    """The private key of our encryption key ``key_id``, retired or revoked (no longer in
    SiteKeys), while its file is still in the ring: an envelope taken here before the
    change opens with it (gateway/relay/opening.py; the file is kept until nothing
    received needs it, gateway/trust/unopened.py). KeyStoreError once it is gone.

    Kept in memory by the file's identity (a few keys): a passphrase-protected file
    costs an scrypt run to read, and a document whose hand-off is deferred is opened
    again at every retry (review 10c F4)."""
    ring = load_ring(config.keys_dir, config.key_passphrase)
    k = ring.find(key_id)
    path = ring.path(k) if k is not None and k.kind == "encryption" else None
    try:
        st = path.stat() if path is not None else None
    except FileNotFoundError:
        st = None
    if path is None or st is None:
        raise KeyStoreError(f"the private file of encryption key {key_id} is gone")
    assert k is not None
    stamp = (str(path), st.st_ino, st.st_mtime_ns, st.st_size)
    with _HELD_LOCK:
        if (cached := _HELD.get(stamp)) is not None:
            return cached
    key = decryption_key(ring, k)
    with _HELD_LOCK:
        _HELD[stamp] = key
        while len(_HELD) > HELD_KEYS:
            del _HELD[next(iter(_HELD))]
    return key


HELD_KEYS = 8
_HELD: dict[tuple[str, int, int, int], DecryptionKey] = {}
_HELD_LOCK = threading.Lock()  # held_key runs on local delivery's worker threads


KEYS_CHANGING_ATTEMPTS = 5
KEYS_CHANGING_PAUSE_SECONDS = 0.05  # then 0.1, 0.15, 0.2: at most half a second in all


async def load_site(directory: Path, *, store: Store | None = None) -> SiteContext:
    """Load a site folder, over the store its config names or, when given, ``store``
    (the in-memory store of the component tests). Raises ConfigError, KeyStoreError,
    DirectoryError, OSError."""
    config = load_site_config(directory)
    keys, tls = load_keys(config)
    k = config.keys_dir
    trust = read_trust(k)
    directory_key = None
    if config.is_hub:
        directory_key = load_signing_key(_read_private(k / "directory.key", config.key_passphrase))
    store = store if store is not None else await open_store(config)
    return SiteContext(
        config=config,
        trust=trust,
        store=store,
        _current=_Current(load_directory(config, trust), keys, tls),
        directory_key=directory_key,
    )
