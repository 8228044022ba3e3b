"""What a delivered document's kept edXML header says: its kind, the document it
answers or replaces, which parts are the SDK's ZIP of a file; and its export.

Rules:
- Everything is read from the delivered files (DIR/inbox/ID/): the header part was
  sealed by the origin, so what it says is the origin integrator's claim, shown as
  such, never used to route or to decide anything here.
- A header part that does not parse makes the item a plain document (no kind, no
  unzipped view); the export then makes a header, as for a multipart submission.
  Whatever goes wrong reading it (any exception) is logged and treated so: one
  hostile document never breaks the inbox listing.
- The kept header is the last part, and the only one with its media type (the
  gateway refuses that type on every other part, edXML attachments included).
- Exported headers name organs as the national systems do: the origin's and each
  destination's first organ from the directory in force (the site id where a site
  serves none).
- The unzipped view is bounded as at submission (edxml.unzip_bounded): an archive
  that would unpack past the limits is refused, never half served.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from envelope.model import RoutingHeader
from gateway.bridges import edxml
from routing.directory import Directory
from routing.organs import primary_organ

log = logging.getLogger("valise.http")
INFO_CACHE = 4096  # inbox items whose kept header's account is kept in memory
MAX_CACHED_CHARS = 4096  # an account with more text than this is not kept
_CACHE: OrderedDict[tuple[Any, ...], EdxmlInfo | None] = OrderedDict()
_LOCK = threading.Lock()  # read_info runs in worker threads


@dataclass(frozen=True)
class EdxmlInfo:
    kind: str
    document_id: str
    response_for: dict[str, str] | None
    status_code: str
    status_description: str
    replaces: tuple[str, ...]
    zipped: tuple[int, ...]  # part numbers (as in the item's "parts") holding a ZIP of the file

    def weight(self) -> int:
        """How much text the account holds (what the cache would keep)."""
        texts = [self.kind, self.document_id, self.status_code, self.status_description]
        texts += [*self.replaces, *(self.response_for or {}).values()]
        return sum(len(t) for t in texts)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "document_id": self.document_id,
            "response_for": self.response_for,
            "status_code": self.status_code or None,
            "status_description": self.status_description or None,
            "replaces": list(self.replaces),
        }


def header_number(meta: dict[str, Any]) -> int | None:
    """The number of the kept header part, None for a document without one. The
    gateway seals it last and refuses its media type on any other part, so only the
    last part counts (a document that breaks this rule has no kept header here)."""
    parts = meta["parts"]
    if not parts or parts[-1]["media_type"] != edxml.HEADER_MEDIA_TYPE:
        return None
    if any(p["media_type"] == edxml.HEADER_MEDIA_TYPE for p in parts[:-1]):
        return None
    return len(parts) - 1


def attachment_numbers(meta: dict[str, Any]) -> list[int]:
    """The numbers of the parts that are attachments (every part but the kept header)."""
    h = header_number(meta)
    return [n for n in range(len(meta["parts"])) if n != h]


def _path(folder: Path, part: dict[str, Any]) -> Path | None:
    path = folder / str(part["name"])
    return path if path.parent == folder and path.is_file() else None


def read_info(folder: Path, meta: dict[str, Any]) -> EdxmlInfo | None:
    """The kept header's account of the item, None without a readable one.

    A delivered folder is written once (renamed into place whole), so an answer the
    header's content decided is kept (at most INFO_CACHE of them, each at most
    MAX_CACHED_CHARS of text: a peer's long DocumentId is read again, not kept); a
    read that failed for a local reason (OSError, anything unexpected) is not."""
    h = header_number(meta)
    if h is None:
        return None
    header = _path(folder, meta["parts"][h])
    if header is None:
        return None
    try:
        seen = header.stat()
    except OSError:
        return None
    shape = tuple((p["name"], p["media_type"], p["size"]) for p in meta["parts"])
    key = (str(folder), shape, seen.st_ino, seen.st_mtime_ns, seen.st_size)
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    try:
        info = _read_info(folder, meta, header)
    except OSError:
        return None
    except Exception:  # a view of what a peer's integrator wrote: never break a listing
        log.warning("edxml_header_unreadable", extra={"folder": folder.name}, exc_info=True)
        return None
    if info is None or info.weight() <= MAX_CACHED_CHARS:
        with _LOCK:
            _CACHE[key] = info
            while len(_CACHE) > INFO_CACHE:
                _CACHE.popitem(last=False)
    return info


def clear_cache() -> None:
    """Forget every kept account (tests; an operator never needs it)."""
    with _LOCK:
        _CACHE.clear()


def _read_info(folder: Path, meta: dict[str, Any], header: Path) -> EdxmlInfo | None:
    """Raises OSError (and, for a bug, anything); None when the content is no header."""
    data = header.read_bytes()
    try:
        doc = edxml.parse_edxml(data, max_bytes=edxml.MAX_HEADER_BYTES)
        numbers = attachment_numbers(meta)
        paths = [_path(folder, meta["parts"][n]) for n in numbers]
        zipped = (
            tuple(numbers[i] for i in edxml.zipped_parts(data, [p for p in paths if p]))
            if all(paths)
            else ()
        )
    except edxml.EdxmlError:
        return None
    r = doc.response_for
    return EdxmlInfo(
        kind=doc.kind.value,
        document_id=doc.document_id,
        response_for=(
            {"organ_id": r.organ_id, "code": r.code, "document_id": r.document_id}
            if r is not None
            else None
        ),
        status_code=doc.status_code,
        status_description=doc.status_description,
        replaces=tuple(i.document_id for i in doc.replacement_info),
        zipped=zipped,
    )


def _organ(directory: Directory, site: str) -> tuple[str, str]:
    organ = primary_organ(directory, site)
    return (organ.organ_id, organ.name or site) if organ is not None else (site, site)


def write_export(
    out: BinaryIO,
    folder: Path,
    meta: dict[str, Any],
    *,
    message_id: str,
    here: str,
    routing: RoutingHeader,
    directory: Directory,
) -> None:
    """Write the item as an edXML document in the real layout: the sender's kept
    header filled back, or one made from the routing header with organ ids."""
    h = header_number(meta)
    header = _path(folder, meta["parts"][h]) if h is not None else None
    attachments: Sequence[tuple[str, str, Path | bytes]] = [
        (p["name"], p["media_type"], _path(folder, p) or b"")
        for p in (meta["parts"][n] for n in attachment_numbers(meta))
    ]
    facts = edxml.Facts(
        message_id=message_id,
        origin=routing.origin,
        here=here,
        created=routing.created,
        subject=meta.get("subject") or "",
        doc_class=routing.doc_class,
        dossier=routing.dossier or "",
        priority=routing.priority.value,
        originator=meta.get("originator") or "",
        sender=_organ(directory, routing.origin),
        receivers=tuple(_organ(directory, site) for site in routing.destinations),
        expires=routing.expires,
    )
    kept = header.read_bytes() if header is not None else None
    try:
        edxml.write_edxml(out, kept, facts, attachments)
    except Exception as exc:  # a kept header that does not fit the parts: make one
        if not isinstance(exc, edxml.EdxmlError):
            log.warning("edxml_header_unexportable", extra={"id": message_id}, exc_info=True)
        out.seek(0)
        out.truncate()
        edxml.write_edxml(out, None, facts, attachments)


def unzip_part(folder: Path, meta: dict[str, Any], n: int, into: Path) -> edxml.UnzippedEntry:
    """The file inside part ``n`` (the SDK's ZIP of one file), unpacked into ``into``.
    Raises LookupError when part ``n`` is no such ZIP, edxml.EdxmlError (ZipBombError)
    when it would unpack past the limits."""
    info = read_info(folder, meta)
    if info is None or n not in info.zipped:
        raise LookupError(f"part {n} is not a zipped file")
    path = _path(folder, meta["parts"][n])
    if path is None:
        raise LookupError(f"part {n} is missing")
    entries = edxml.unzip_bounded(path, into)
    if len(entries) != 1:
        raise LookupError(f"part {n} holds {len(entries)} files, not one")
    return entries[0]
