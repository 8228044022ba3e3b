"""ZIP attachments: telling the SDK's ZIP of a file from a file, and unzipping bounded.

The hub's SDK base64-encodes a ZIP holding the file (one entry, a generated name with
the file's extension) for most extensions; its receivers unzip. The real files mark
it unevenly: both ContentTypes application/zip (SDK, Bkav), only the Attachment's
(iOffice b6e1f29d, 852e179c), or neither (iOffice 874e0f18, 1da394ba: a ZIP of a .pdf
or .txt declared as such); while a .docx the VNPT library sent as is (a ZIP by nature,
several entries) has a Reference that says application/zip.

Rules:
- :func:`is_wrapped_zip`: the content starts with ``PK\\x03\\x04``, the name does not
  end in ``.zip``, the archive holds exactly one file, and either a declared
  ContentType is application/zip or that one file has the attachment's extension.
  It reads untrusted archives: any error while probing one (an entry without a
  name, a broken directory, ...) means "not a wrapped ZIP", never an exception.
- An entry is a directory when its name ends in ``/`` (never ``ZipInfo.is_dir()``,
  which raises IndexError on an entry without a name).
- :func:`unzip_bounded` never trusts the sizes an archive declares: it counts the
  bytes it decompresses and stops before writing past ``max_total_bytes`` or
  ``max_ratio`` times the archive's size; more than ``max_entries`` entries, an
  encrypted entry or an unreadable archive are refused too. Entries are written to
  files it names itself (0600, O_EXCL, O_NOFOLLOW); the entry's base name is only a
  label. Every refusal is a :class:`ZipBombError` and leaves no file behind.
"""

from __future__ import annotations

import io
import os
import secrets
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from gateway.bridges.edxml.b64 import create_private
from gateway.bridges.edxml.errors import ZipBombError
from gateway.bridges.edxml.limits import UNZIP_MAX_ENTRIES, UNZIP_MAX_RATIO, UNZIP_MAX_TOTAL_BYTES

ZIP_MAGIC = b"PK\x03\x04"
ZIP_TYPES = frozenset({"application/zip", "application/x-zip-compressed", "application/x-zip"})
_READ_BYTES = 64 * 1024


@dataclass(frozen=True)
class UnzippedEntry:
    name: str  # the entry's base name, a label only
    path: Path
    size: int


def _extension(name: str) -> str:
    suffix = PurePosixPath(name.replace("\\", "/")).suffix
    return suffix.lower()


def _is_dir(info: zipfile.ZipInfo) -> bool:
    return info.filename.endswith("/")


def is_wrapped_zip(content: Path | bytes, name: str, declared_types: Sequence[str]) -> bool:
    """``content`` is the SDK's ZIP of the file ``name`` (see the module rules)."""
    if name.lower().endswith(".zip"):
        return False
    try:
        raw: BinaryIO = io.BytesIO(content) if isinstance(content, bytes) else open(content, "rb")  # noqa: SIM115
        with raw:
            if raw.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
                return False
            raw.seek(0)
            with zipfile.ZipFile(raw) as archive:
                files = [i for i in archive.infolist() if not _is_dir(i)]
    except Exception:  # untrusted bytes: whatever zipfile trips on, it is not the SDK's ZIP
        return False
    if len(files) != 1:
        return False
    declared_zip = any(t.split(";")[0].strip().lower() in ZIP_TYPES for t in declared_types)
    ext = _extension(name)
    return declared_zip or (bool(ext) and _extension(files[0].filename) == ext)


def _label(filename: str) -> str:
    base = PurePosixPath(filename.replace("\\", "/")).name
    if base in ("", ".", ".."):
        raise ZipBombError(f"ZIP entry {filename[:60]!r} has no file name")
    return base


class _Budget:
    """Decompressed bytes counted against the smaller of the two bounds."""

    def __init__(self, archive_path: Path, max_total_bytes: int, max_ratio: float) -> None:
        archive_size = max(1, os.path.getsize(archive_path))
        self.limit = min(max_total_bytes, int(max_ratio * archive_size))
        self.why = "total" if self.limit == max_total_bytes else f"ratio {max_ratio:g}"
        self.total = 0

    def take(self, n: int) -> None:
        self.total += n
        if self.total > self.limit:
            raise ZipBombError(f"the ZIP unpacks to more than {self.limit} bytes ({self.why})")


def _chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> Iterator[bytes]:
    try:
        with archive.open(info) as src:
            while chunk := src.read(_READ_BYTES):
                budget.take(len(chunk))
                yield chunk
    except ZipBombError:
        raise
    except Exception as exc:  # zlib, bz2, lzma, a bad CRC: the archive's fault
        raise ZipBombError(f"ZIP entry {info.filename[:60]!r} is unreadable: {exc}") from None


def _entries(
    archive_path: Path, *, max_total_bytes: int, max_entries: int, max_ratio: float
) -> Iterator[tuple[str, Iterator[bytes]]]:
    """Each file entry's label and decompressed chunks, bounded as the rules say."""
    budget = _Budget(archive_path, max_total_bytes, max_ratio)
    try:
        archive = zipfile.ZipFile(archive_path)
    except Exception as exc:  # zipfile's own errors and whatever a hostile directory trips
        raise ZipBombError(f"not a readable ZIP archive: {exc}") from None
    with archive:
        infos = [i for i in archive.infolist() if not _is_dir(i)]
        if len(infos) > max_entries:
            raise ZipBombError(f"the ZIP holds {len(infos)} entries, more than {max_entries}")
        for info in infos:
            if info.flag_bits & 0x1:
                raise ZipBombError(f"ZIP entry {info.filename[:60]!r} is encrypted")
            yield _label(info.filename), _chunks(archive, info, budget)


def unzip_bounded(
    path: Path,
    out_dir: Path,
    *,
    max_total_bytes: int = UNZIP_MAX_TOTAL_BYTES,
    max_entries: int = UNZIP_MAX_ENTRIES,
    max_ratio: float = UNZIP_MAX_RATIO,
) -> list[UnzippedEntry]:
    """Unzip ``path`` into new files in ``out_dir``. Raises :class:`ZipBombError`
    (after deleting what it wrote)."""
    made: list[UnzippedEntry] = []
    token = secrets.token_hex(6)
    try:
        for n, (label, chunks) in enumerate(
            _entries(
                path, max_total_bytes=max_total_bytes, max_entries=max_entries, max_ratio=max_ratio
            ),
            start=1,
        ):
            target = out_dir / f"unzipped-{token}-{n:03d}"
            size = 0
            with os.fdopen(create_private(target), "wb") as out:
                made.append(UnzippedEntry(label, target, 0))
                for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
            made[-1] = UnzippedEntry(label, target, size)
    except BaseException:
        for entry in made:
            entry.path.unlink(missing_ok=True)
        raise
    return made


def check_zip(
    path: Path,
    *,
    max_total_bytes: int = UNZIP_MAX_TOTAL_BYTES,
    max_entries: int = UNZIP_MAX_ENTRIES,
    max_ratio: float = UNZIP_MAX_RATIO,
) -> list[tuple[str, int]]:
    """Decompress ``path`` without keeping anything; each entry's label and size.
    Raises :class:`ZipBombError` as :func:`unzip_bounded` would."""
    sizes: list[tuple[str, int]] = []
    for label, chunks in _entries(
        path, max_total_bytes=max_total_bytes, max_entries=max_entries, max_ratio=max_ratio
    ):
        sizes.append((label, sum(len(c) for c in chunks)))
    return sizes
