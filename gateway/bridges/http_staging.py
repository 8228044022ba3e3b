"""Reading a submission's body onto disk: multipart, a raw body, or an edXML document.

Rules:
- Bodies are streamed in CHUNK_BYTES pieces into files under the API's work folder;
  the handler never holds a whole body in memory (an edXML document is the
  exception: it is parsed whole, within the same size limit).
- One byte budget, [http] max_body_bytes, covers the whole submission: a declared
  Content-Length past it is refused before reading, a body that grows past it is
  refused as soon as it does (413).
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import content_disposition_filename, parse_content_disposition

from gateway.bridges import edxml
from gateway.bridges.http_common import ApiError, state
from gateway.submit import longest_lifetime

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


def _media_type(value: str | None, name: str) -> str:
    if value:
        return value.split(";", 1)[0].strip().lower()
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class Stager:
    """Stages one request's parts in ``folder`` (a fresh temporary folder)."""

    def __init__(self, folder: Path, budget: Budget) -> None:
        self.folder, self.budget, self.count = folder, budget, 0

    def _open(self) -> tuple[Path, Any]:
        self.count += 1
        path = self.folder / f"part-{self.count}"
        return path, path.open("wb")

    async def write_stream(self, name: str, media_type: str, chunks: Any) -> StagedPart:
        path, f = self._open()
        digest, size = hashlib.sha256(), 0
        try:
            async for chunk in chunks:
                self.budget.take(len(chunk))
                digest.update(chunk)
                size += len(chunk)
                await asyncio.to_thread(f.write, chunk)
        finally:
            f.close()
        return StagedPart(name, media_type, path, digest.hexdigest(), size)

    def write_bytes(self, name: str, media_type: str, data: bytes) -> StagedPart:
        path, f = self._open()
        with f:
            f.write(data)
        return StagedPart(name, media_type, path, hashlib.sha256(data).hexdigest(), len(data))


async def _part_chunks(part: BodyPartReader) -> Any:
    while True:
        try:
            chunk = await part.read_chunk(CHUNK_BYTES)
        except _MALFORMED:
            raise ApiError(400, "malformed_multipart", "a part cannot be read") from None
        if not chunk:
            return
        yield chunk


def _refuse_encoding(headers: Any, where: str) -> None:
    if headers.get(hdrs.CONTENT_ENCODING):
        raise ApiError(
            415, "unsupported_encoding", f"Content-Encoding is not accepted ({where}): send as is"
        )


async def stage_multipart(request: web.Request, stager: Stager) -> Staged:
    try:
        reader = await request.multipart()
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
            staged = Staged(await _metadata_part(part, stager.budget))
            continue
        name = _unescape(part.filename) or part.name or f"document-{len(staged.parts) + 1}"
        media = _media_type(part.headers.get(hdrs.CONTENT_TYPE), name)
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


async def _metadata_part(part: BodyPartReader, budget: Budget) -> dict[str, Any]:
    media = _media_type(part.headers.get(hdrs.CONTENT_TYPE), "")
    if media != "application/json" and part.name != "metadata":
        raise ApiError(
            400, "malformed_metadata", "the first part must be the JSON metadata (application/json)"
        )
    data = bytearray()
    async for chunk in _part_chunks(part):
        budget.take(len(chunk))
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
    part = await stager.write_stream(name, media, _body_chunks(request))
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


async def _body_chunks(request: web.Request) -> Any:
    try:
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            yield chunk
    except HttpProcessingError:
        raise ApiError(400, "malformed_request", "the body cannot be read") from None


async def stage_edxml(request: web.Request, stager: Stager) -> Staged:
    whole = await stager.write_stream("edxml", edxml.MEDIA_TYPE, _body_chunks(request))
    data = await asyncio.to_thread(whole.path.read_bytes)
    try:
        doc = await asyncio.to_thread(edxml.parse_edxml, data, max_bytes=stager.budget.limit)
    except edxml.EdxmlError as exc:
        raise ApiError(400, "malformed_edxml", str(exc)) from None
    del data
    whole.path.unlink()
    to = request.headers.get("Valise-To")
    meta: dict[str, Any] = {
        "to": [s.strip() for s in to.split(",") if s.strip()]
        if to
        else [r.organ_id for r in doc.recipients],
        "class": edxml.doc_class(doc),
        "priority": edxml.priority(doc),
    }
    if doc.subject:
        meta["subject"] = doc.subject
    if (code := edxml.dossier(doc)) is not None:
        meta["dossier"] = code
    now = datetime.now(UTC)
    if (due := edxml.expires(doc, now)) is not None:
        # A DueDate is the document's deadline, not a request to be kept for ever: one
        # past [relay] max_expires_days is cut to it (the edXML header still says it).
        meta["expires"] = min(due, now + longest_lifetime(state(request).ctx)).isoformat()
    staged = Staged(meta, originator=edxml.originator(doc))
    for a in doc.attachments:
        staged.parts.append(stager.write_bytes(a.name, _media_type(a.media_type, a.name), a.data))
    staged.parts.append(
        stager.write_bytes(edxml.HEADER_PART_NAME, edxml.HEADER_MEDIA_TYPE, doc.header_xml)
    )
    return staged


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
