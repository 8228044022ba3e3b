"""Where the CLI writes what it exports: files created new, never through a link.

Rules:
- Every file an export writes (``inbox get``, ``open``, ``timestamp export``,
  ``evidence``) is created here with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, relative to
  a descriptor of its folder: a name that exists, as a file or as a planted symbolic
  link, is refused, never overwritten or written through. File names often come from
  a remote site (a part's name), so a name is one path component or it is refused.
- The folder is created (0700) when absent. An existing one must be a real folder
  (not a link to one) owned by the user running the command; another user's folder,
  say a shared /tmp subfolder, is refused.
- A refused or failed export removes what it created (the files, and the folder if
  it made it) and nothing else.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

FOLDER_MODE = 0o700
FILE_MODE = 0o600
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class ExportRefused(OSError):
    """The output folder or a file name in it cannot be written safely (one line; an
    OSError, so the CLI reports it like any other file it cannot write)."""


def check_name(name: str) -> str:
    """``name`` if it is a single, ordinary path component. Raises ExportRefused."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ExportRefused(f"{name!r} is not a file name")
    return name


class ExportDir:
    """An output folder opened for writing new files; use as a context manager (a
    failure inside removes what was written)."""

    def __init__(self, path: Path) -> None:
        """Create ``path`` (0700, parents as needed) or accept it if it is the user's
        own real folder. Raises ExportRefused."""
        self.path = path
        self.created_folder = False
        self.written: list[str] = []
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(path, FOLDER_MODE)
            self.created_folder = True
        except FileExistsError:
            pass
        except OSError as exc:
            raise ExportRefused(f"{path}: {exc.strerror or exc}") from None
        try:
            self._fd = os.open(path, _DIR_FLAGS)  # O_NOFOLLOW: a link is refused
        except OSError as exc:
            link = exc.errno in (errno.ELOOP, errno.ENOTDIR) and path.is_symlink()
            reason = "a symbolic link" if link else exc.strerror or str(exc)
            raise ExportRefused(f"{path} is not a folder to write into ({reason})") from None
        info = os.fstat(self._fd)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            os.close(self._fd)
            raise ExportRefused(f"{path} is not a folder of yours; give a new or own folder")

    def create(self, name: str) -> BinaryIO:
        """A new file ``name`` in the folder, open for writing. Raises ExportRefused."""
        check_name(name)
        try:
            fd = os.open(name, _FILE_FLAGS, FILE_MODE, dir_fd=self._fd)
        except FileExistsError:
            raise ExportRefused(f"{self.path / name} exists; refusing to overwrite it") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ExportRefused(f"{self.path / name} is a symbolic link; refusing it") from None
            raise ExportRefused(f"{self.path / name}: {exc.strerror or exc}") from None
        self.written.append(name)
        return os.fdopen(fd, "wb")

    def write(self, name: str, data: bytes) -> Path:
        """Write ``data`` to the new file ``name``; its path. Raises ExportRefused."""
        with self.create(name) as f:
            f.write(data)
        return self.path / name

    def discard(self) -> None:
        """Remove what this export wrote (and its folder, if it made it)."""
        for name in reversed(self.written):
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=self._fd)
        self.written.clear()
        if self.created_folder:
            shutil.rmtree(self.path, ignore_errors=True)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> ExportDir:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is not None:
                self.discard()
        finally:
            self.close()
