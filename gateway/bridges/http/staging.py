"""Reading a submission's body onto disk: multipart, a raw body, or an edXML document.

Rules:
- Bodies are streamed in CHUNK_BYTES pieces into files under the API's work folder;
  the handler never holds a whole body in memory (an edXML document too: it is
  parsed streaming, each attachment decoded into its own file).
- One byte budget, [http] max_body_bytes, covers the whole submission: a declared
  Content-Length past it is refused before reading, a body that grows past it is
  refused as soon as it does (413). Every byte read from the request is charged
  (:class:`Metered`), boundaries, part headers and preamble included: a body of empty
  parts is not free.
- A submission has at most MAX_PARTS parts: the part after that is refused before
  its file exists (422), so a body of empty parts cannot fill the work folder.
- Files are created (O_EXCL, 0600) and closed in a worker thread, never on the loop.
- Any Content-Encoding, on the request or on a part, is refused (415): the gateway
  seals what it is given and does not decompress on anyone's behalf.
- A body aiohttp cannot parse is refused in our words: its parser's text (bytes,
  boundaries, internal states) never reaches the client.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, MultipartReader, StreamReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import content_disposition_filename, parse_content_disposition

from envelope.limits import MAX_DESTINATIONS, MAX_PARTS
from envelope.seal import DEFAULT_TTL
from gateway.bridges import edxml
from gateway.bridges.http.common import ApiError, state
from gateway.relay.submit import longest_lifetime
from routing.directory import Directory
from routing.organs import ORGAN_ID_RE, resolve

CHUNK_BYTES = 64 * 1024
MAX_METADATA_BYTES = 64 * 1024
MULTIPART_TYPES = ("multipart/form-data", "multipart/mixed", "multipart/related")
# Raw bodies carry their metadata in headers (text values percent-encoded UTF-8).
HEADER_FIELDS = {
    "Valise-To": "to",
    "Valise-Class": "class",
    "Valise-Subject": "subject",
    "Valise-Priority": "priority",
    "Valise-Dossier": "dossier",
    "Valise-Expires": "expires",
    "Valise-In-Reply-To": "in_reply_to",
}
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_MALFORMED = (ValueError, AssertionError, RuntimeError, TypeError, LookupError, HttpProcessingError)


@dataclass(frozen=True)
class StagedPart:
    name: str
    media_type: str
    path: Path
    sha256: str
    size: int


@dataclass
class Staged:
    metadata: dict[str, Any]
    parts: list[StagedPart] = field(default_factory=list)
    originator: str | None = None  # from an edXML From


class Budget:
    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise ApiError(413, "payload_too_large", f"the body exceeds {self.limit} bytes")


class Metered:
    """``request.content`` as the multipart reader and the raw-body stager see it, each
    byte handed out charged to ``budget`` once.

    The multipart reader gives back what it read past a boundary (``unread_data``);
    that is kept here and served again without a second charge, so aiohttp's
    deprecated ``StreamReader.unread_data`` is never called either.
    """

    def __init__(self, content: StreamReader, budget: Budget) -> None:
        self._content, self._budget, self._back = content, budget, b""

    def _fresh(self, data: bytes) -> bytes:
        self._budget.take(len(data))
        return data

    def _served(self, n: int) -> bytes:
        data, self._back = self._back[:n], self._back[n:]
        return data

    async def read(self, n: int = -1) -> bytes:
        if self._back:
            return self._served(len(self._back) if n < 0 else n)
        return self._fresh(await self._content.read(n))

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        if self._back:
            end = self._back.find(b"\n")
            if end >= 0:
                return self._served(end + 1)
            head = self._served(len(self._back))
            return head + self._fresh(await self._content.readline(max_line_length=max_line_length))
        return self._fresh(await self._content.readline(max_line_length=max_line_length))

    def at_eof(self) -> bool:
        return not self._back and self._content.at_eof()

    def unread_data(self, data: bytes) -> None:
        self._back = bytes(data) + self._back


def _media_type(value: str | None, name: str) -> str:
    if value:
        return value.split(";", 1)[0].strip().lower()
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class Stager:
    """Stages one request's parts in ``folder`` (a fresh temporary folder), at most
    ``max_parts`` of them."""

    def __init__(self, folder: Path, budget: Budget, max_parts: int = MAX_PARTS) -> None:
        self.folder, self.budget, self.max_parts = folder, budget, max_parts
        self.count = 0  # parts staged
        self._files = 0  # files created (parts and the edXML scratch copy)

    async def _create(self, *, part: bool = True) -> tuple[Path, Any]:
        """A new file of our own in the folder; refuses the part after ``max_parts``
        before creating anything."""
        if part:
            if self.count >= self.max_parts:
                raise ApiError(
                    422, "invalid_metadata", f"the submission has more than {self.max_parts} parts"
                )
            self.count += 1
        self._files += 1
        path = self.folder / f"file-{self._files}"
        return path, await asyncio.to_thread(_create_file, path)

    async def write_stream(
        self, name: str, media_type: str, chunks: Any, *, part: bool = True
    ) -> StagedPart:
        """Write ``chunks`` (already charged to the budget where they were read)."""
        path, f = await self._create(part=part)
        digest, size = hashlib.sha256(), 0
        try:
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                await asyncio.to_thread(f.write, chunk)
        finally:
            await asyncio.to_thread(f.close)
        return StagedPart(name, media_type, path, digest.hexdigest(), size)

    def adopt(self, name: str, media_type: str, path: Path, sha256: str, size: int) -> StagedPart:
        """A part already written in the folder (an edXML attachment decoded there),
        counted against ``max_parts`` as any other."""
        if self.count >= self.max_parts:
            raise ApiError(
                422, "invalid_metadata", f"the submission has more than {self.max_parts} parts"
            )
        self.count += 1
        return StagedPart(name, media_type, path, sha256, size)

    async def write_bytes(self, name: str, media_type: str, data: bytes) -> StagedPart:
        path, f = await self._create()

        def write() -> None:
            with f:
                f.write(data)

        await asyncio.to_thread(write)
        return StagedPart(name, media_type, path, hashlib.sha256(data).hexdigest(), len(data))


def _create_file(path: Path) -> Any:
    return os.fdopen(os.open(path, _CREATE_FLAGS, 0o600), "wb")


async def _part_chunks(part: BodyPartReader) -> Any:
    while True:
        try:
            chunk = await part.read_chunk(CHUNK_BYTES)
        except _MALFORMED:
            raise ApiError(400, "malformed_multipart", "a part cannot be read") from None
        if not chunk:
            return
        yield chunk


def _refuse_reserved(media_type: str) -> None:
    """The kept edXML header's media type is the gateway's own: only an edXML
    submission makes that part (a receiver exports it as the sender's header)."""
    if media_type == edxml.HEADER_MEDIA_TYPE:
        raise ApiError(
            422,
            "invalid_metadata",
            f"{media_type} is reserved to the header the gateway keeps of an edXML submission",
        )


def _refuse_encoding(headers: Any, where: str) -> None:
    if headers.get(hdrs.CONTENT_ENCODING):
        raise ApiError(
            415, "unsupported_encoding", f"Content-Encoding is not accepted ({where}): send as is"
        )


async def stage_multipart(request: web.Request, stager: Stager) -> Staged:
    try:
        reader = MultipartReader(request.headers, Metered(request.content, stager.budget))  # type: ignore[arg-type]
    except _MALFORMED:
        raise ApiError(
            400, "malformed_multipart", "not a multipart body (is its boundary given?)"
        ) from None
    staged: Staged | None = None
    while True:
        try:
            part = await reader.next()
        except _MALFORMED:
            raise ApiError(
                400, "malformed_multipart", "the parts of the body cannot be read"
            ) from None
        if part is None:
            break
        if isinstance(part, MultipartReader):
            raise ApiError(400, "malformed_multipart", "nested multipart bodies are not accepted")
        _refuse_encoding(part.headers, "on a part")
        cte = part.headers.get(hdrs.CONTENT_TRANSFER_ENCODING, "binary").lower()
        if cte not in ("binary", "8bit", "7bit"):
            raise ApiError(415, "unsupported_encoding", f"Content-Transfer-Encoding {cte}")
        if staged is None:
            staged = Staged(await _metadata_part(part))
            continue
        name = _unescape(part.filename) or part.name or f"document-{len(staged.parts) + 1}"
        media = _media_type(part.headers.get(hdrs.CONTENT_TYPE), name)
        _refuse_reserved(media)
        staged.parts.append(await stager.write_stream(name, media, _part_chunks(part)))
    if staged is None:
        raise ApiError(400, "malformed_multipart", "the body has no parts (metadata first)")
    return staged


def _unescape(name: str | None) -> str | None:
    """A part's file name; percent escapes are decoded (HTML forms escape '"' and line
    breaks so, and aiohttp's client escapes every non-ASCII character)."""
    if not name or "%" not in name:
        return name
    try:
        return unquote(name, errors="strict")
    except UnicodeError:
        return name


async def _metadata_part(part: BodyPartReader) -> dict[str, Any]:
    media = _media_type(part.headers.get(hdrs.CONTENT_TYPE), "")
    if media != "application/json" and part.name != "metadata":
        raise ApiError(
            400, "malformed_metadata", "the first part must be the JSON metadata (application/json)"
        )
    data = bytearray()
    async for chunk in _part_chunks(part):
        data.extend(chunk)
        if len(data) > MAX_METADATA_BYTES:
            raise ApiError(400, "malformed_metadata", f"metadata over {MAX_METADATA_BYTES} bytes")
    try:
        meta = json.loads(bytes(data))
    except (ValueError, UnicodeError):
        raise ApiError(400, "malformed_metadata", "the metadata part is not JSON") from None
    if not isinstance(meta, dict):
        raise ApiError(400, "malformed_metadata", "the metadata must be a JSON object")
    return meta


async def stage_raw(request: web.Request, stager: Stager) -> Staged:
    meta: dict[str, Any] = {}
    for header, key in HEADER_FIELDS.items():
        value = request.headers.get(header)
        if value is None:
            continue
        try:
            text = unquote(value, errors="strict")
        except UnicodeError:
            raise ApiError(400, "malformed_metadata", f"{header} is not UTF-8") from None
        meta[key] = [s.strip() for s in text.split(",") if s.strip()] if key == "to" else text
    name = _raw_filename(request) or "document"
    media = _media_type(request.headers.get(hdrs.CONTENT_TYPE), name)
    _refuse_reserved(media)
    part = await stager.write_stream(name, media, _body_chunks(request, stager.budget))
    return Staged(meta, [part])


def _raw_filename(request: web.Request) -> str | None:
    disposition = request.headers.get(hdrs.CONTENT_DISPOSITION)
    if disposition:
        _, params = parse_content_disposition(disposition)
        name = content_disposition_filename(params, "filename")
        if name:
            return name
    value = request.headers.get("Valise-Filename")
    return unquote(value) if value else None


async def _body_chunks(request: web.Request, budget: Budget) -> Any:
    body = Metered(request.content, budget)
    try:
        while chunk := await body.read(CHUNK_BYTES):
            yield chunk
    except HttpProcessingError:
        raise ApiError(400, "malformed_request", "the body cannot be read") from None


async def stage_edxml(request: web.Request, stager: Stager) -> Staged:
    """An edXML document: streamed to a scratch file, parsed streaming (attachments
    decoded to files in the folder), routed by organ (see EDXML.md)."""
    whole = await stager.write_stream(
        "edxml", edxml.MEDIA_TYPE, _body_chunks(request, stager.budget), part=False
    )
    try:
        doc = await asyncio.to_thread(
            edxml.parse_edxml_file,
            whole.path,
            stager.folder,
            max_attachments=stager.max_parts - 1,  # one part is the kept header
            max_bytes=stager.budget.limit,
        )
    except edxml.EdxmlError as exc:
        raise ApiError(400, "malformed_edxml", str(exc)) from None
    finally:
        await asyncio.to_thread(whole.path.unlink, missing_ok=True)
    ctx = state(request).ctx
    for a in doc.attachments:
        if a.zipped and a.path is not None:
            try:
                await asyncio.to_thread(edxml.check_zip, a.path)
            except edxml.ZipBombError as exc:
                raise ApiError(422, "unsafe_attachment", f"attachment {a.name}: {exc}") from None
    to = _edxml_destinations(request, doc, ctx.directory)
    _check_sender_organ(doc, ctx.directory, ctx.here)
    now = datetime.now(UTC)
    meta: dict[str, Any] = {
        "to": to,
        "class": edxml.doc_class(doc),
        "priority": edxml.priority(doc),
    }
    if doc.subject:
        meta["subject"] = doc.subject
    if (code := edxml.dossier(doc)) is not None:
        meta["dossier"] = code
    if (due := edxml.expires(doc, now, DEFAULT_TTL)) is not None:
        # A DueDate later than the default lifetime keeps the document that long, up to
        # [relay] max_expires_days (the edXML header, sealed, still says it whole).
        meta["expires"] = min(due, now + longest_lifetime(ctx)).isoformat()
    staged = Staged(meta, originator=edxml.originator(doc))
    for a in doc.attachments:
        assert a.path is not None  # parse_edxml_file leaves each in a file
        media = _media_type(a.media_type, a.name)
        _refuse_reserved(media)  # an attachment may not pass for the kept header
        staged.parts.append(stager.adopt(a.name, media, a.path, a.sha256, a.size))
    staged.parts.append(
        await stager.write_bytes(edxml.HEADER_PART_NAME, edxml.HEADER_MEDIA_TYPE, doc.header_xml)
    )
    return staged


def _check_sender_organ(doc: edxml.EdxmlDocument, directory: Directory, here: str) -> None:
    """The header's From/OrganId is an organ this site serves (or its site id): the
    header is sealed and exported as sent, and the receiving system reads the sender
    there, so an integrator may not speak for another site's organ or for none (review
    12c F1). 422 naming it otherwise."""
    organ = doc.sender.organ_id
    if organ == here or directory.site_for_organ(organ) == here:
        return
    raise ApiError(
        422,
        "sender_organ",
        f"From/OrganId {_printable(organ)} is not an organ this site ({here}) serves;"
        " HQ lists a site's organs with 'valise organ add'",
    )


def _edxml_destinations(
    request: web.Request, doc: edxml.EdxmlDocument, directory: Directory
) -> list[str]:
    """The sites to send to: ``Valise-To`` when given (site ids, checked as for any
    submission), else the sites serving the organs the document is for (To/OrganId;
    a status: ResponseFor/OrganId). An organ no site serves is 422 naming it."""
    to = request.headers.get("Valise-To")
    if to:
        return [s.strip() for s in to.split(",") if s.strip()]
    wanted = edxml.wanted_organs(doc)
    if len(wanted) > MAX_DESTINATIONS:
        raise ApiError(422, "invalid_metadata", f"To names more than {MAX_DESTINATIONS} organs")
    found = resolve(directory, wanted)
    if found.unknown:
        raise ApiError(
            422,
            "unknown_organ",
            "no site serves organ " + ", ".join(_printable(o) for o in found.unknown[:10]),
        )
    return list(found.sites)


def _printable(organ_id: str) -> str:
    """An organ id as it may be echoed: the id itself when it is one, else its repr
    cut short (a refusal never copies a sender's control characters into a reply)."""
    return organ_id if ORGAN_ID_RE.fullmatch(organ_id) else repr(organ_id[:64])


async def stage(request: web.Request, stager: Stager) -> Staged:
    """Stage the submission in ``request``. Raises :class:`ApiError`."""
    _refuse_encoding(request.headers, "on the request")
    declared = request.content_length
    if declared is not None and declared > stager.budget.limit:
        raise ApiError(413, "payload_too_large", f"the body exceeds {stager.budget.limit} bytes")
    kind = request.content_type.lower()
    if kind in MULTIPART_TYPES:
        return await stage_multipart(request, stager)
    if kind == edxml.MEDIA_TYPE:
        return await stage_edxml(request, stager)
    if kind.startswith("multipart/"):
        raise ApiError(415, "unsupported_media_type", f"{kind} is not accepted")
    return await stage_raw(request, stager)
