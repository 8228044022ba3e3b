"""What the checks of an evidence bundle share: the bundle's state and how a check ends.

:class:`BundleState` reads the bundle's files (nothing outside it, nothing beyond
:data:`MAX_FILE_BYTES`) and holds what the checks so far established for the checks
after them; a check raises :class:`Failed` (the reason) or :class:`Skipped` (the piece
is not in the bundle). :func:`key_at` and :func:`segments_match` are the two steps
several checks take: a signer's key in the directory in force, and ciphertext against
its signed manifest.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath

from crypto.keys import VerifyKey
from crypto.tsa_verify import TokenInfo
from envelope.head import ParsedHead
from envelope.values import format_time
from gateway.evidence.layout import ENVELOPE, ReceiptFiles, in_force
from routing.directory import Directory, DirectoryError

MAX_FILE_BYTES = 1 << 30  # no bundle piece is read beyond this


class Failed(Exception):
    """This check failed, for the reason given."""


class Skipped(Exception):
    """This check does not apply: the piece is not in the bundle."""


@dataclass
class BundleState:
    """What the checks so far established, for the checks after them."""

    folder: Path
    trust_pin: VerifyKey | None
    ca_pin: bytes | None
    manifest_id: str | None = None
    trust: VerifyKey | None = None
    directories: list[Directory] = field(default_factory=list)
    format: str | None = None
    message: ParsedHead | None = None
    message_data: bytes = b""
    # The receipts that verified, by their signer (a destination): head, bytes, names.
    receipts: dict[str, tuple[ParsedHead, bytes, ReceiptFiles]] = field(default_factory=dict)
    proved: set[str] = field(default_factory=set)  # receipt-content ok: delivery proven
    refused: set[str] = field(default_factory=set)  # sites whose receipt files failed
    # Earlier copies of the envelope that verified (gateway/evidence/copies.py): their
    # digest -> copies/HEX.head. A receipt naming one proves delivery of this message.
    copies: dict[bytes, str] = field(default_factory=dict)
    copy_heads: list[ParsedHead] = field(default_factory=list)
    # Which copy each proved site's receipt names, when not the envelope itself.
    proved_copy: dict[str, str] = field(default_factory=dict)
    tokens: list[tuple[str, TokenInfo]] = field(default_factory=list)

    @property
    def receipt_heads(self) -> list[ParsedHead]:
        return [p for p, _, _ in self.receipts.values()]

    def verified(self, names: ReceiptFiles) -> tuple[str, ParsedHead, bytes] | None:
        """The signer, head and bytes of the receipt filed as ``names``, if it verified."""
        for site, (parsed, data, n) in self.receipts.items():
            if n == names:
                return site, parsed, data
        return None

    def path(self, name: str) -> Path:
        return self.folder.joinpath(*PurePosixPath(name).parts)

    def has(self, name: str) -> bool:
        path = self.path(name)
        return path.is_file() and self._inside(path)

    def _inside(self, path: Path) -> bool:
        """Is ``path`` (symlinks followed) inside the bundle? Nothing outside is read."""
        return path.resolve().is_relative_to(self.folder.resolve())

    def read(self, name: str) -> bytes:
        path = self.path(name)
        if not path.is_file():
            raise Failed(f"{name} is missing")
        if not self._inside(path):
            raise Failed(f"{name} points outside the bundle")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise Failed(f"{name} is larger than {MAX_FILE_BYTES} bytes")
        return path.read_bytes()

    def need_message(self) -> ParsedHead:
        if self.message is None:
            raise Failed(f"cannot check: {ENVELOPE} did not verify")
        return self.message

    def need_directories(self) -> list[Directory]:
        if not self.directories:
            raise Failed("cannot check: no directory in the bundle verified")
        return self.directories


def segments_match(data: bytes, parsed: ParsedHead, offset: int, what: str) -> None:
    manifest = parsed.head.manifest
    if len(data) != offset + manifest.total_length:
        raise Failed(
            f"{what} is truncated"
            if len(data) < offset + manifest.total_length
            else f"{what} is followed by trailing data"
        )
    for i, segment in enumerate(manifest.segments):
        if not hmac.compare_digest(
            hashlib.sha256(data[offset : offset + segment.length]).digest(), segment.sha256
        ):
            raise Failed(f"{what}: ciphertext segment {i} does not match the signed manifest")
        offset += segment.length


def key_at(
    s: BundleState, site: str, key_id: str, moment: datetime, what: str
) -> tuple[VerifyKey, Directory]:
    d = in_force(s.need_directories(), moment)
    if d is None:
        raise Failed(f"{what}: no directory in the bundle was in force at {format_time(moment)}")
    try:
        key = d.site(site).verify_keys().get(key_id)
    except DirectoryError as exc:
        raise Failed(f"{what}: {exc}") from None
    if key is None:
        raise Failed(
            f"{what}: key {key_id} is not an active or retiring key of {site} "
            f"in directory serial {d.serial}"
        )
    return key, d
