"""HQ publishing a new directory version: read, change, sign, write, under one lock.

The running gateway (enrollment, missions' key updates, retirement of keys) and the
admin CLI (``valise keys …`` at HQ) both publish. Each does read-modify-write of
DIR/directory.xml under an exclusive lock (DIR/directory.lock), reading the version
on disk, not one held in memory, so no two versions get one serial. A running HQ
notices a version written by another process on its next key check (gateway/
keys_lifecycle.py) and serves it from then on.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from crypto.armor import load_signing_key
from gateway.site.context import archive_directory, read_trust
from gateway.site.files import file_lock, write_private
from gateway.site.keystore import _read_private
from routing.directory import (
    MAX_DIRECTORY_BYTES,
    Directory,
    DirectoryError,
    parse_directory,
    write_directory,
)


class DirectoryTooLarge(DirectoryError):
    """A new version would exceed MAX_DIRECTORY_BYTES; nothing was written."""


def publish(
    site_dir: Path,
    change: Callable[[Directory, datetime], Directory],
    *,
    dry_run: bool = False,
    passphrase: bytes | None = None,
) -> tuple[Directory, bool]:
    """Apply ``change`` to the directory on disk; sign and write the result if it is a
    new version. Returns (the directory now in force, whether it is new). HQ only.
    Raises DirectoryError (from ``change``; KeyReuseError, DirectoryTooLarge from the
    new version's checks) with nothing written."""
    keys = site_dir / "keys"
    with file_lock(site_dir / "directory.lock"):
        held = parse_directory((site_dir / "directory.xml").read_bytes(), read_trust(keys))
        now = datetime.now(UTC)
        new = change(held, now)
        if new is held or new == held:
            return held, False
        if new.serial <= held.serial:
            new = Directory(held.serial + 1, now, new.hub, new.sites)
        if dry_run:
            return new, True
        key = load_signing_key(_read_private(keys / "directory.key", passphrase))
        # Built, size-checked and read back as a mission will read it before anything
        # is written: a version HQ could not read itself (too large, a key listed twice)
        # never reaches the disk, so HQ keeps publishing and restarting on the one it has.
        data = write_directory(new, key)  # raises KeyReuseError
        if len(data) > MAX_DIRECTORY_BYTES:
            raise DirectoryTooLarge(
                f"directory serial {new.serial} would be {len(data)} bytes, over the limit"
                f" of {MAX_DIRECTORY_BYTES}: not published"
            )
        published = parse_directory(data, read_trust(keys))
        archive_directory(site_dir, new.serial, data)  # each written whole, then renamed
        write_private(site_dir / "directory.xml", data)
        return published, True
