"""Maildir delivery (https://cr.yp.to/proto/maildir.html), exactly once per key.

Layout: ``[delivery] maildir`` (DIR/maildir by default) holds one Maildir per
mailbox, ``<maildir>/<mailbox>/{tmp,new,cur}``; documents sent to no mailbox go to
``<maildir>/default``, and so do documents whose mailbox is not one plain local
dot-atom (gateway/bridges/mail/address.py), which is always a safe path component.

Rules:
- A message is written to ``tmp/NAME``, fsynced, hard-linked to ``new/NAME`` (a link
  never replaces an existing file), the ``new`` directory fsynced, the caller's
  done-marker written, and only then ``tmp/NAME`` removed.
- ``NAME`` is ``<key>.valise``, derived from the message id alone (no time, pid or
  host name, which change across a restart), so a retry of the same message finds
  its earlier delivery instead of making a second one: in ``new/`` (the link fails),
  or, when a mail reader has since moved it, in ``cur/NAME:2,...`` — looked for only
  when ``tmp/NAME`` is still there, i.e. when an earlier attempt was cut short.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from gateway.bridges.mail.address import AddressSyntaxError, local_mailbox

DEFAULT_MAILBOX = "default"
_KEY = re.compile(r"[A-Za-z0-9._\-]{1,128}")
FILE_MODE = 0o600
DIR_MODE = 0o700


def mailbox_folder(root: Path, mailbox: str | None) -> Path:
    """The Maildir of ``mailbox`` under ``root``: its own folder if it is one plain
    local dot-atom (a safe single path component), else the default mailbox's.
    Callers check the mailbox first and record a refusal; this is the last guard."""
    try:
        name = local_mailbox(mailbox) if mailbox else DEFAULT_MAILBOX
    except AddressSyntaxError:
        name = DEFAULT_MAILBOX
    return root / name


def file_name(key: str) -> str:
    if _KEY.fullmatch(key) is None or key.startswith("."):
        raise ValueError(f"not a Maildir key: {key!r}")
    return f"{key}.valise"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _moved_to_cur(maildir: Path, name: str) -> bool:
    prefix = name + ":"
    with os.scandir(maildir / "cur") as entries:
        return any(e.name == name or e.name.startswith(prefix) for e in entries)


def deliver(maildir: Path, key: str, data: bytes, *, marker: Path | None = None) -> Path:
    """Deliver ``data`` into ``maildir`` once for ``key``; return the ``new/`` path.

    ``marker``, if given, is written once the message is safely in ``new/`` and makes
    any later call a no-op. Raises OSError (disk full, permissions) and ValueError.
    """
    name = file_name(key)
    target = maildir / "new" / name
    if marker is not None and marker.exists():
        return target
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    staged = maildir / "tmp" / name
    if not (staged.exists() and _moved_to_cur(maildir, name)):
        _write_file(staged, data)
        # FileExistsError: delivered by an attempt that died before removing tmp/NAME.
        with contextlib.suppress(FileExistsError):
            os.link(staged, target)
        _fsync_dir(target.parent)
    if marker is not None:
        _write_file(marker, b"")
    staged.unlink(missing_ok=True)
    return target


def delivered_keys(maildir: Path) -> list[str]:
    """The keys of every message in ``new/`` and ``cur/`` (for tests and the CLI)."""
    keys: list[str] = []
    for sub in ("new", "cur"):
        folder = maildir / sub
        if folder.is_dir():
            for entry in folder.iterdir():
                base = entry.name.split(":", 1)[0]
                if base.endswith(".valise"):
                    keys.append(base.removesuffix(".valise"))
    return sorted(keys)
