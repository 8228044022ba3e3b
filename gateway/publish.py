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
from gateway.keystore import _read_private
from gateway.site import archive_directory, file_lock, read_trust, write_private
from routing.directory import Directory, parse_directory, write_directory


def publish(
    site_dir: Path,
    change: Callable[[Directory, datetime], Directory],
    *,
    dry_run: bool = False,
    passphrase: bytes | None = None,
) -> tuple[Directory, bool]:
    """Apply ``change`` to the directory on disk; sign and write the result if it is a
    new version. Returns (the directory now in force, whether it is new). HQ only.
    Raises DirectoryError (from ``change``) with nothing written."""
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
        data = write_directory(new, key)
        archive_directory(site_dir, new.serial, data)
        write_private(site_dir / "directory.xml", data)
        return parse_directory(data, read_trust(keys)), True
