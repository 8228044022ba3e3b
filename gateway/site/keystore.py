"""A site's key files on disk: generate, write (0600), load (refusing loose modes).

Layout of a key folder:

    SITE.signing.key      Ed25519 seed              0600
    SITE.encryption.key   ML-KEM-768+X25519 seeds   0600
    SITE.pub.xml          public key document       0600 (the site folder is private)

A private key file is stored encrypted (crypto/keyfile.py) when the site has a key
passphrase (``[keys] passphrase_file`` or VALISE_KEY_PASSPHRASE): every writer here
takes the passphrase, and :func:`_read_private` opens either form, so a folder of old
unencrypted keys keeps working and ``valise keys encrypt`` converts it in place.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crypto.armor import armor, load_decryption_key, load_signing_key
from crypto.errors import KeyFormatError
from crypto.keyfile import WrongPassphrase, decrypt_key_file, encrypt_key_file, is_encrypted
from crypto.keys import DecryptionKey, SigningKey
from envelope.keydoc import PublicKeyDoc, parse_public_key_doc, write_public_key_doc
from envelope.values import check_site_id, truncate_to_second

DEFAULT_KEY_VALIDITY = timedelta(days=365)
PRIVATE_MODE = 0o600


class KeyStoreError(Exception):
    """A key folder is missing, ambiguous, damaged or too readable."""


class KeyPassphraseError(KeyStoreError):
    """A private key file is encrypted and no passphrase, or not the right one, was given."""


class KeyNotHeld(KeyStoreError):
    """Sealed to a key this site's loaded keys do not include: maybe one the ring gained
    after they were loaded (another process rotated it); load them again and retry."""


@dataclass(frozen=True)
class SiteKeys:
    site: str
    signing: SigningKey
    decryption: DecryptionKey
    public: PublicKeyDoc
    public_xml: bytes
    # Every usable decryption key by id (active, next and retiring: gateway/site/keyring.py);
    # empty for a single-generation key folder, where ``decryption`` is the only one.
    decryptions: dict[str, DecryptionKey] = field(default_factory=dict)
    # Encryption key ids no longer usable here -> their state (retired, revoked).
    unusable: dict[str, str] = field(default_factory=dict)

    def decryption_for(self, key_id: str) -> DecryptionKey:
        """The private key for a recipient stanza's key id. Raises KeyStoreError with
        the specific reason when that key is retired, revoked or unknown here."""
        if key_id == self.decryption.key_id:
            return self.decryption
        if key_id in self.decryptions:
            return self.decryptions[key_id]
        if key_id in self.unusable:
            state = self.unusable[key_id]
            raise KeyStoreError(
                f"sealed to encryption key {key_id} of {self.site}, which is {state}"
            )
        raise KeyNotHeld(f"sealed to encryption key {key_id}, which {self.site} does not hold")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)  # the umask cannot loosen it
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def seal_private(data: bytes, passphrase: bytes | None) -> bytes:
    """A private key file's bytes as stored: encrypted when there is a passphrase."""
    if passphrase is None:
        return data
    try:
        return encrypt_key_file(data, passphrase)
    except KeyFormatError as exc:
        raise KeyStoreError(str(exc)) from None


def generate_site_keys(
    site: str,
    directory: Path,
    *,
    now: datetime | None = None,
    validity: timedelta | None = None,
    passphrase: bytes | None = None,
) -> SiteKeys:
    """Create a site's keys in ``directory`` (encrypted under ``passphrase`` if given).
    Refuses to overwrite existing keys."""
    check_site_id(site)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths = [directory / f"{site}.{kind}" for kind in ("signing.key", "encryption.key", "pub.xml")]
    existing = [p for p in paths if p.exists()]
    if existing:
        raise KeyStoreError(f"{existing[0]} exists; refusing to overwrite keys")
    signing, decryption = SigningKey.generate(), DecryptionKey.generate()
    start = truncate_to_second(now or datetime.now(UTC))
    doc = PublicKeyDoc(
        site=site,
        signing=signing.public,
        encryption=decryption.public,
        valid_from=start,
        valid_until=start + (validity or DEFAULT_KEY_VALIDITY),
    )
    public_xml = write_public_key_doc(doc, signing)
    _write_private(paths[0], seal_private(armor(signing), passphrase))
    _write_private(paths[1], seal_private(armor(decryption), passphrase))
    _write_private(paths[2], public_xml)  # public, but the folder is the owner's alone
    return SiteKeys(site, signing, decryption, doc, public_xml)


def read_private_file(path: Path) -> bytes:
    """A private key file's bytes as stored (encrypted or not), refusing loose modes."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyStoreError(f"{path} is missing") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyStoreError(
            f"{path} is readable by others (mode {stat.S_IMODE(mode):04o}); chmod 600 it"
        )
    return path.read_bytes()


def require_encrypted(keys_dir: Path, passphrase: bytes | None) -> None:
    """With a key passphrase set, every private key file in ``keys_dir`` and its ring
    must be stored encrypted: a clear one is refused, naming it (a key swapped in by
    whoever could write the folder would otherwise be used unnoticed). The offline
    tools still read clear keys; ``valise keys encrypt`` converts them.
    Raises KeyStoreError."""
    if passphrase is None:
        return
    ring = keys_dir / "ring"
    paths = sorted(keys_dir.glob("*.key")) + (sorted(ring.glob("*.key")) if ring.is_dir() else [])
    for path in paths:
        if not is_encrypted(read_private_file(path)):
            raise KeyStoreError(
                f"{path} is stored in the clear while a key passphrase is set: "
                f"run valise keys encrypt --dir {keys_dir.parent}"
            )


def _read_private(path: Path, passphrase: bytes | None = None) -> bytes:
    """A private key file's plaintext, decrypted under ``passphrase`` when it is stored
    encrypted. Raises KeyStoreError (missing, too readable) or KeyPassphraseError."""
    return open_private(path, read_private_file(path), passphrase)


def open_private(path: Path, data: bytes, passphrase: bytes | None) -> bytes:
    """The plaintext of key file ``data`` (read from ``path``, named in errors)."""
    if not is_encrypted(data):
        return data
    if passphrase is None:
        raise KeyPassphraseError(
            f"{path} is encrypted and no key passphrase is set "
            "(VALISE_KEY_PASSPHRASE or [keys] passphrase_file)"
        )
    try:
        return decrypt_key_file(data, passphrase)
    except WrongPassphrase:
        raise KeyPassphraseError(f"{path}: wrong key passphrase") from None
    except KeyFormatError as exc:
        raise KeyStoreError(f"{path}: {exc}") from None


def load_site_keys(directory: Path, passphrase: bytes | None = None) -> SiteKeys:
    """Load the one site whose keys are in ``directory``. Raises :class:`KeyStoreError`."""
    found = sorted(directory.glob("*.signing.key"))
    if not found:
        raise KeyStoreError(f"no site keys in {directory} (looked for SITE.signing.key)")
    if len(found) > 1:
        raise KeyStoreError(f"{directory} holds keys of several sites; give one site's folder")
    site = found[0].name.removesuffix(".signing.key")
    try:
        signing = load_signing_key(_read_private(found[0], passphrase))
        decryption = load_decryption_key(
            _read_private(directory / f"{site}.encryption.key", passphrase)
        )
    except KeyFormatError as exc:
        raise KeyStoreError(f"{directory}: {exc}") from None
    public_xml = read_public_doc_bytes(directory / f"{site}.pub.xml")
    public = parse_public_key_doc(public_xml)
    if public.signing != signing.public or public.encryption != decryption.public:
        raise KeyStoreError(f"{site}.pub.xml does not match the private keys beside it")
    return SiteKeys(site, signing, decryption, public, public_xml)


def read_public_doc_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyStoreError(f"{path} is missing") from None


def load_public_doc(path: Path) -> PublicKeyDoc:
    """Read and verify a SITE.pub.xml. Raises KeyStoreError or an EnvelopeError."""
    return parse_public_key_doc(read_public_doc_bytes(path))
