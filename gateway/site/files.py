"""Writing the site folder's files: atomically, private, and under a lock when the
running gateway and the admin CLI both read-modify-write one."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from gateway.site.keystore import PRIVATE_MODE


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created 0600) for a read-modify-write shared
    by the running gateway and the admin CLI. Blocks until it is free."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes, *, mode: int = PRIVATE_MODE) -> None:
    """Write atomically (temp file, fsync, rename) with ``mode``."""
    # A temp name of our own: another process may be writing the same file (the admin
    # CLI and the running gateway both install directories); the last rename wins.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
