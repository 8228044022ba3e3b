"""The journal of the kept receipts' re-check: its events made durable (review 11d F2).

gateway/relay/kept_receipts.py closes every row whose kept receipt verifies in ONE store
transaction, then emits ``delivered`` (and ``completed``) row by row; the webhook
subscriber queues each in its own transaction. A start that stops in between (kill,
a stop request, a crash) would lose the events of the rows left: the next start finds
nothing waiting. The store's schema is not changed for this; a small file in the site
folder holds them instead.

Rules:
- ``write``: before the settle's commit, the rows about to be closed (message id, site,
  in the order their events go out) are written to ``NAME`` in the site folder: a
  temporary file created 0600 (gateway/site/modes.py), fsynced, renamed into place, the
  folder fsynced. It cannot be written: OSError, and nothing is committed.
- While the events go out, the index of each row whose events are out (or which the
  commit did not close) is appended on a line of its own, not fsynced: after a process
  stop, only the row in flight is emitted again. When every event is out the journal
  is removed.
- ``replay``, at the start of every re-check: a journal found means an earlier start
  stopped after its commit, or before it. For each of its rows not marked, in order,
  whose store row is delivered by a receipt now, ``delivered`` is emitted (the counts
  and receipt digest the store shows now), then ``completed`` after its message's
  last row there if no destination of that message is open; a row not delivered
  (the earlier start stopped before its commit, which the re-check now redoes) emits
  nothing. At least once: an event emitted just before the stop is emitted again.
  The journal is removed once done.
- The journal lies in the operator's folder, so its content is not trusted: it must be
  a regular file (not a link), owned by this user, granting nothing to group or others,
  at most ``MAX_BYTES``, one JSON header line naming this format, its version and this
  site, valid message and site ids, marks naming its rows (a torn last line is
  ignored). Anything else: it is refused, logged with the reason, set aside as
  ``NAME.refused`` for the operator, and no event is emitted from it. Its content never
  raises; it can only make events for rows the store shows delivered be emitted again.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import stat
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType

from envelope.errors import EnvelopeError
from envelope.values import check_message_id, check_site_id
from gateway.relay.circular_status import emit_completed
from gateway.runtime import logjson
from gateway.runtime.events import Event, EventBus
from gateway.site.modes import OTHERS, PRIVATE_FILE_MODE
from gateway.store.base import Destination, Store

log = logging.getLogger("valise.delivery")
NAME = "kept-receipts-events.journal"
FORMAT = "valise kept receipts events"
VERSION = 1
MAX_BYTES = 64 * 1024 * 1024
CLOSED = ("delivered", "failed")


class JournalRefused(Exception):
    """A journal whose content or file is not one this module wrote. One line."""


def path_of(site_folder: Path) -> Path:
    return site_folder / NAME


@asynccontextmanager
async def held(path: Path) -> AsyncIterator[None]:
    """The journal's lock (``NAME.lock`` beside it, flock), held exclusively by one
    start of the site at a time across replay, re-check and emission (review 11e: two
    starts of one site folder must not replace or remove each other's journal). A
    process that dies releases it."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path.with_name(path.name + ".lock"), flags, PRIVATE_FILE_MODE)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(0.05)
        yield
    finally:
        os.close(fd)


class Pending:
    """The journal of the events going out now (a context manager): ``done(index)``
    marks a row; leaving without an exception removes the journal, with one keeps it."""

    def __init__(self, path: Path | None, fd: int | None) -> None:
        self.path, self._fd = path, fd

    def done(self, index: int) -> None:
        if self._fd is None:
            return
        try:
            _write_all(self._fd, f"{index}\n".encode())
        except OSError as exc:  # a mark saves a duplicate event, nothing more
            logjson.event(log, logging.WARNING, "kept_receipts_journal_mark", reason=str(exc))
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Pending:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()
        if kind is None and self.path is not None:
            remove(self.path)


def write(path: Path, site: str, rows: Sequence[tuple[str, str]]) -> Pending:
    """Write the journal of ``rows`` durably (see the rules); nothing for no row.
    Raises OSError."""
    if not rows:
        return Pending(None, None)
    head = {"journal": FORMAT, "version": VERSION, "site": site, "rows": [list(r) for r in rows]}
    data = (json.dumps(head, separators=(",", ":")) + "\n").encode()
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    _sync_folder(path.parent)
    return Pending(path, os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC))


def remove(path: Path) -> None:
    """Remove the journal (its events are out). A failure is logged: the next start
    emits its events again."""
    try:
        path.unlink(missing_ok=True)
        _sync_folder(path.parent)
    except OSError as exc:
        logjson.event(
            log, logging.ERROR, "kept_receipts_journal_kept", path=str(path), reason=str(exc)
        )


async def replay(
    path: Path, here: str, store: Store, events: EventBus, now: datetime
) -> list[tuple[str, str]]:
    """Emit the events of the journal an earlier start left (see the rules), then remove
    it. The rows emitted for. Raises StoreError only."""
    try:
        rows, marked = read(path, here)
    except FileNotFoundError:
        return []
    except JournalRefused as exc:
        _set_aside(path, str(exc))
        return []
    except Exception as exc:  # its content never stops the start
        _set_aside(path, f"{type(exc).__name__}: {exc}")
        return []
    todo = [(i, m, s) for i, (m, s) in enumerate(rows) if i not in marked]
    logjson.event(
        log,
        logging.WARNING,
        "kept_receipts_journal_found",
        path=str(path),
        rows=len(rows),
        left=len(todo),
        note="an earlier start stopped while emitting: its events are emitted (at least once)",
    )
    last = {m: i for i, m, _ in todo}
    emitted: list[tuple[str, str]] = []
    skipped = 0
    with _reopen(path) as pending:
        seen: dict[str, list[Destination]] = {}
        for i, m, s in todo:
            if m not in seen:
                seen[m] = await store.destinations(m)
            dests = seen[m]
            d = next((x for x in dests if x.site == s), None)
            if d is None or d.state != "delivered" or d.receipt_digest is None:
                skipped += 1  # not closed by a receipt (a start stopped before its commit)
            else:
                delivered = sum(x.state == "delivered" for x in dests)
                detail = {
                    "site": s,
                    "receipt_sha256": d.receipt_digest.hex(),
                    "delivered": str(delivered),
                    "of": str(len(dests)),
                }
                await events.emit(Event("delivered", m, now, detail))
                emitted.append((m, s))
                if last[m] == i and all(x.state in CLOSED for x in dests):
                    await emit_completed(events, store, m, now)
            pending.done(i)
    logjson.event(
        log,
        logging.INFO,
        "kept_receipts_journal_replayed",
        path=str(path),
        emitted=len(emitted),
        not_delivered=skipped,
    )
    return emitted


def read(path: Path, here: str) -> tuple[list[tuple[str, str]], set[int]]:
    """The journal's rows and the indexes marked done. Raises FileNotFoundError (none),
    JournalRefused, or another error of a damaged file."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        if path.is_symlink():
            raise JournalRefused(f"{path} is a symbolic link") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise JournalRefused(f"{path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise JournalRefused(f"{path} is owned by uid {st.st_uid}, not {os.geteuid()}")
        if st.st_mode & OTHERS:
            mode = stat.S_IMODE(st.st_mode)
            raise JournalRefused(f"{path} is mode {mode:04o}: group or others may use it")
        if st.st_size > MAX_BYTES:
            raise JournalRefused(f"{path} is {st.st_size} bytes, over {MAX_BYTES}")
        data = _read_all(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise JournalRefused(f"{path} is over {MAX_BYTES} bytes")
    return parse(data, here)


def parse(data: bytes, here: str) -> tuple[list[tuple[str, str]], set[int]]:
    """The rows and marks of a journal's bytes. Raises JournalRefused."""
    lines = data.split(b"\n")
    if len(lines) < 2:
        raise JournalRefused("no complete header line")
    complete = lines[:-1]  # what follows the last newline is a torn mark, if anything
    try:
        head = json.loads(complete[0].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise JournalRefused(f"its header is not JSON: {exc}") from None
    if not isinstance(head, dict) or head.get("journal") != FORMAT:
        raise JournalRefused("its header does not name this journal's format")
    if head.get("version") != VERSION:
        raise JournalRefused(f"version {head.get('version')!r}, not {VERSION}")
    if head.get("site") != here:
        raise JournalRefused(f"written for site {head.get('site')!r}, not {here}")
    raw = head.get("rows")
    if not isinstance(raw, list):
        raise JournalRefused("its rows are not a list")
    rows: list[tuple[str, str]] = []
    for i, row in enumerate(raw):
        if not (isinstance(row, list) and len(row) == 2 and all(isinstance(x, str) for x in row)):
            raise JournalRefused(f"row {i} is not a message id and a site")
        try:
            rows.append((check_message_id(row[0]), check_site_id(row[1])))
        except EnvelopeError as exc:
            raise JournalRefused(f"row {i}: {exc}") from None
    marked: set[int] = set()
    for n, line in enumerate(complete[1:], start=2):
        text = line.decode("ascii", "replace")
        if not (text.isascii() and text.isdigit() and len(text) <= 12) or int(text) >= len(rows):
            raise JournalRefused(f"line {n} does not mark one of its rows")
        marked.add(int(text))
    return rows, marked


def _reopen(path: Path) -> Pending:
    """The journal being replayed, for its marks (none if it cannot be opened)."""
    # O_NONBLOCK: a journal swapped for a FIFO meanwhile must not hang the start.
    flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd: int | None = os.open(path, flags)
    except OSError:
        return Pending(path, None)
    assert fd is not None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        fd = None
    return Pending(path, fd)


def _set_aside(path: Path, reason: str) -> None:
    aside = path.with_name(path.name + ".refused")
    logjson.event(
        log,
        logging.ERROR,
        "kept_receipts_journal_refused",
        path=str(path),
        reason=reason,
        moved_to=str(aside),
        note="no event is emitted from it",
    )
    try:
        os.replace(path, aside)
    except OSError as exc:
        logjson.event(
            log, logging.ERROR, "kept_receipts_journal_kept", path=str(path), reason=str(exc)
        )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_all(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, min(1 << 20, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
