"""Sealing and opening envelopes as files, streaming, in constant memory.

Rules:
- Output appears atomically: a sealed envelope is written to a temporary file
  beside its destination and renamed into place; opened parts are written to a
  temporary folder inside the output folder and renamed into place only after
  every segment's digest and last chunk have been checked. On any failure the
  temporaries are removed and nothing is left behind.
- Memory is bounded by PIPELINE_DEPTH batches of BATCH_CHUNKS chunks, whatever
  the size of the payload. Hashing and writing (both release the GIL) run in a
  worker thread each, beside the reads and the AEAD, so both cores are used.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from crypto.errors import DecryptionError
from crypto.keys import DecryptionKey, SigningKey, VerifyKey
from crypto.recipes import CHUNK_BYTES, chunk_count
from envelope.errors import DecryptionFailed, FramingError, UsageError
from envelope.framing import PREFIX_BYTES, read_prefix
from envelope.head import ParsedHead, parse_head
from envelope.model import PartInfo, RoutingHeader, SealedHeader
from envelope.open import Opening, chunk_layout
from envelope.seal import Recipient, Sealing
from envelope.sealed import DEFAULT_MEDIA_TYPE, sealed_header

BATCH_CHUNKS = 8
PIPELINE_DEPTH = 3


@dataclass(frozen=True)
class InputPart:
    path: Path
    name: str
    media_type: str = DEFAULT_MEDIA_TYPE


class _Pipeline:
    """Runs side work (hash, write) on one worker thread, in order, a bounded way ahead."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="valise-io")
        self._pending: deque[Future[None]] = deque()

    def submit(self, fn: Callable[[], None]) -> None:
        while len(self._pending) >= PIPELINE_DEPTH:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(fn))

    def drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.drain()
        self._pool.shutdown(wait=True)


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise FramingError("truncated envelope")
    return data


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- sealing --------------------------------------------------------------------


def seal_to_file(
    out: Path,
    *,
    routing: RoutingHeader,
    sender: SigningKey,
    recipients: Sequence[Recipient],
    inputs: Sequence[InputPart],
    subject: str | None = None,
    originator: str | None = None,
    durable: bool = True,
) -> Sealing:
    """Seal ``inputs`` into the envelope file ``out``. Raises UsageError or OSError."""
    parts = tuple(PartInfo(i.name, i.media_type, i.path.stat().st_size) for i in inputs)
    sealing = Sealing(
        routing=routing,
        sender=sender,
        recipients=recipients,
        sealed=sealed_header(parts, subject, originator),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            reserved = sealing.head_bytes
            f.seek(reserved)
            f.write(sealing.sealed_header_ciphertext)
            digests = [
                _seal_part(sealing, index, part.path, info.size, f)
                for index, (part, info) in enumerate(zip(inputs, parts, strict=True), start=1)
            ]
            head = sealing.finish(digests)
            if len(head) != reserved:  # fixed-width fields make this impossible
                raise RuntimeError("envelope head changed length while sealing")
            f.seek(0)
            f.write(head)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        tmp.replace(out)
        if durable:
            _fsync_dir(out.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return sealing


def _seal_part(sealing: Sealing, index: int, path: Path, size: int, out: BinaryIO) -> bytes:
    sealer = sealing.part_sealer(index)
    digest = hashlib.sha256()
    n = chunk_count(size)
    hasher, writer = _Pipeline(), _Pipeline()
    try:
        with path.open("rb") as f:
            done = 0
            while done < n:
                batch = []
                for _ in range(min(BATCH_CHUNKS, n - done)):
                    chunk = f.read(CHUNK_BYTES)
                    done += 1
                    batch.append(sealer.seal(chunk, last=done == n))
                hasher.submit(functools.partial(_hash_all, digest, batch))
                writer.submit(functools.partial(_write_all, out, batch))
            hasher.drain()
            writer.drain()
            if f.read(1):
                raise UsageError(f"{path} grew while it was being sealed")
    finally:
        hasher.close()
        writer.close()
    return digest.digest()


def _hash_all(digest: hashlib._Hash, blocks: list[bytes]) -> None:
    for block in blocks:
        digest.update(block)


def _write_all(out: BinaryIO, blocks: list[bytes]) -> None:
    for block in blocks:
        out.write(block)


# -- opening --------------------------------------------------------------------


def read_head_from(f: BinaryIO) -> tuple[ParsedHead, int]:
    """Parse the framed head at the start of ``f``; return it and the first segment's offset."""
    length = read_prefix(_read_exact(f, PREFIX_BYTES))
    return parse_head(_read_exact(f, length)), PREFIX_BYTES + length


def inspect_file(path: Path) -> ParsedHead:
    """Parse an envelope's head and check its framing. No keys needed."""
    with path.open("rb") as f:
        parsed, offset = read_head_from(f)
    _check_size(path, offset, parsed)
    return parsed


def _check_size(path: Path, offset: int, parsed: ParsedHead) -> None:
    expected = offset + parsed.head.manifest.total_length
    actual = path.stat().st_size
    if actual < expected:
        raise FramingError(f"truncated envelope: {actual} bytes of {expected}")
    if actual > expected:
        raise FramingError(f"trailing data: {actual - expected} bytes after the last segment")


# Control characters (C0 and C1), the Unicode line and paragraph separators, the bidi
# marks, embeddings, overrides and isolates that make a name display as another
# (``invoice\u202efdp.exe`` shows as ``invoiceexe.pdf``) and lone surrogates: a regex
# character class, the one definition (mail headers use it too:
# gateway/bridges/mail/headers.py).
DISPLAY_UNSAFE_CHARS = (
    "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
)
# Those, path separators and the characters Windows refuses.
_UNSAFE = re.compile(f'[{DISPLAY_UNSAFE_CHARS}/\\\\:*?"<>|]')


def safe_name(name: str) -> str:
    """A sealed file name made safe to create in one folder: no path, no traversal."""
    base = re.split(r"[/\\]", name)[-1]
    cleaned = _UNSAFE.sub("_", base).strip().lstrip(".")
    return cleaned[:200] or "part"


def _unique_names(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        candidate, n = name, 1
        while candidate in out:
            n += 1
            stem, dot, ext = name.rpartition(".")
            candidate = f"{stem}-{n}.{ext}" if dot and stem else f"{name}-{n}"
        out.append(candidate)
    return out


@dataclass(frozen=True)
class OpenedEnvelope:
    parsed: ParsedHead
    sealed: SealedHeader
    files: tuple[Path, ...]


def open_to_dir(
    path: Path, out_dir: Path, *, sender: VerifyKey, site: str, key: DecryptionKey
) -> OpenedEnvelope:
    """Verify, decrypt and write the parts of ``path`` into ``out_dir``.

    Raises an EnvelopeError (or OSError); on any failure nothing is left in ``out_dir``.
    """
    created_dir = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".valise-open-", dir=out_dir))
    try:
        with path.open("rb") as f:
            parsed, offset = read_head_from(f)
            _check_size(path, offset, parsed)
            opening = Opening.start(parsed, sender=sender, site=site, key=key)
            manifest = parsed.head.manifest
            sealed = opening.open_sealed_header(_read_exact(f, manifest.sealed_header.length))
            names = _unique_names([safe_name(p.name) for p in sealed.parts])
            clash = next((n for n in names if (out_dir / n).exists()), None)
            if clash is not None:
                raise FileExistsError(f"{out_dir / clash} exists; refusing to overwrite it")
            for index, name in enumerate(names, start=1):
                _open_part(opening, index, f, staging / name)
        final = tuple(out_dir / n for n in names)
        for name, target in zip(names, final, strict=True):
            (staging / name).replace(target)
        staging.rmdir()
        return OpenedEnvelope(parsed, sealed, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created_dir:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def _batches(f: BinaryIO, length: int) -> Iterator[list[tuple[bytes, bool]]]:
    batch: list[tuple[bytes, bool]] = []
    for size, last in chunk_layout(length):
        batch.append((_read_exact(f, size), last))
        if len(batch) == BATCH_CHUNKS or last:
            yield batch
            batch = []


def _open_part(opening: Opening, index: int, f: BinaryIO, target: Path) -> None:
    segment = opening.parsed.head.manifest.parts[index - 1]
    opener = opening.part_opener(index)
    digest = hashlib.sha256()
    hasher, writer = _Pipeline(), _Pipeline()
    try:
        with target.open("wb") as out:
            for batch in _batches(f, segment.length):
                hasher.submit(functools.partial(_hash_all, digest, [c for c, _ in batch]))
                try:
                    plaintext = [opener.open(c, last=last) for c, last in batch]
                except DecryptionError:
                    raise DecryptionFailed() from None
                writer.submit(functools.partial(_write_all, out, plaintext))
            hasher.drain()
            writer.drain()
            if not opener.finished:
                raise DecryptionFailed()
    finally:
        hasher.close()
        writer.close()
    opening.check_part(index, digest.digest())
