"""Who may read a site folder: its owner only.

A site folder holds private keys, the store (webhook secrets, integrator tokens' hashes,
every queued envelope), the opened documents of its inbox and Maildir. Other local
users must not read any of it, so:

Rules:
- Folders are created 0700 and files 0600 (``PRIVATE_DIR_MODE``, ``PRIVATE_FILE_MODE``):
  by explicit modes where the code creates them, and by the umask ``SITE_UMASK`` that
  every ``valise`` command and ``valise serve`` set at start, for what libraries create
  (SQLite's -wal and -shm files, exports, staged parts).
- ``valise serve`` refuses to start when the site folder, its keys folder, its store
  (with -wal and -shm) or its inbox / Maildir grants any bit to group or others, as
  PostgreSQL refuses a readable key: :func:`require_private` raises
  :class:`SiteModeError` with one line naming the path and the chmod that fixes it.
  It changes nothing itself: a mode someone loosened is a question for the operator.
- ``valise doctor`` shows the same findings as ``mode …`` rows (:func:`loose_paths`).
- A PostgreSQL store is protected by the database's own access control, not by modes.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from config.site import SiteConfig

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
SITE_UMASK = 0o077
OTHERS = stat.S_IRWXG | stat.S_IRWXO


class SiteModeError(Exception):
    """A site folder, its store or its inbox is open to other users. One line."""


@dataclass(frozen=True)
class Private:
    """A path that must be owner-only, and what it is (for messages and doctor rows)."""

    what: str  # "site folder", "store", ...
    path: Path
    mode: int  # its current mode bits

    @property
    def loose(self) -> bool:
        return bool(self.mode & OTHERS)

    @property
    def reason(self) -> str:
        want = "700" if stat.S_ISDIR(self.mode) else "600"
        return (
            f"{self.path} ({self.what}) is mode {stat.S_IMODE(self.mode):04o}, readable by "
            f"others: chmod {want} {self.path}"
        )


def guarded_paths(config: SiteConfig) -> list[tuple[str, Path]]:
    """The paths ``serve`` and ``doctor`` check, whether they exist or not."""
    d = config.directory
    paths = [("site folder", d), ("keys folder", config.keys_dir)]
    if config.store.backend == "sqlite":
        store = config.store_path
        paths += [
            ("store", store),
            ("store -wal", store.with_name(store.name + "-wal")),
            ("store -shm", store.with_name(store.name + "-shm")),
        ]
    paths += [("inbox", d / "inbox"), ("maildir", d / config.delivery.maildir)]
    return paths


def private_paths(config: SiteConfig) -> list[Private]:
    """Each guarded path that exists, with its mode (``lstat``: a link is judged itself)."""
    found = []
    for what, path in guarded_paths(config):
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue
        found.append(Private(what, path, mode))
    return found


def loose_paths(config: SiteConfig) -> list[Private]:
    return [p for p in private_paths(config) if p.loose]


def require_private(config: SiteConfig) -> None:
    """Raise :class:`SiteModeError` for the first guarded path others may use."""
    loose = loose_paths(config)
    if loose:
        extra = f" (and {len(loose) - 1} more: valise doctor)" if len(loose) > 1 else ""
        raise SiteModeError(f"refusing to serve: {loose[0].reason}{extra}")


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) as 0700, or tighten it to 0700 if it exists:
    the mode does not depend on the umask."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR_MODE)


def create_private_file(path: Path) -> None:
    """Create ``path`` empty as 0600 unless it exists (before a library opens it with the
    umask's mode: SQLite gives its -wal and -shm files the mode of the database)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)
