"""The HTTP inbox: documents delivered to this site, listed by cursor, fetched, acknowledged.

Rules:
- An item is visible once local delivery made it ``available`` (its parts are
  under DIR/inbox/ID/); receipts and items still being opened are not listed.
- The cursor is opaque to clients: the (received, id) of the last item looked at
  (gateway/bridges/http/params.py), so paging is stable while new documents arrive
  (they sort after).
- Parts are streamed from disk with their sealed media type and file name.
- The inbox is the site's: every integrator of the site sees it.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from envelope.model import RoutingHeader
from envelope.open import parse_framed_head
from envelope.values import MESSAGE_ID_RE, format_time
from gateway.bridges import edxml
from gateway.bridges.edxml import inbox as edxml_inbox
from gateway.bridges.http.common import ApiError, integrator, json_response, state
from gateway.bridges.http.params import ParamError, cursor_of, parse_count, parse_cursor
from gateway.site.context import SiteContext
from gateway.store.base import InboxItem, InState

DEFAULT_PAGE = 50
MAX_PAGE = 500
PART_CHUNK_BYTES = 256 * 1024
STATES = {"available": InState.AVAILABLE, "acked": InState.ACKED, "all": None}


def _after(cursor: str | None) -> tuple[datetime, str] | None:
    if cursor is None:
        return None
    try:
        return parse_cursor(cursor)
    except ParamError as exc:
        raise ApiError(400, "malformed_request", str(exc)) from None


def _meta(ctx: SiteContext, message_id: str) -> dict[str, Any] | None:
    path = ctx.config.directory / "inbox" / message_id / ".valise.json"
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta


def _count(value: str | None, default: int, low: int, high: int, what: str) -> int:
    if value is None:
        return default
    try:
        return parse_count(value, low, high, what)
    except ParamError as exc:
        raise ApiError(400, "malformed_request", str(exc)) from None


async def inbox_list(request: web.Request) -> web.Response:
    ctx = state(request).ctx
    q = request.query
    limit = _count(q.get("limit"), DEFAULT_PAGE, 1, MAX_PAGE, "limit")
    wanted = q.get("state", "available")
    if wanted not in STATES:
        raise ApiError(400, "malformed_request", "state must be available, acked or all")
    after, more = _after(q.get("cursor")), True
    items: list[dict[str, Any]] = []
    while more and len(items) < limit:
        batch = await ctx.store.inbox(state=STATES[wanted], limit=limit, after=after)
        more = len(batch) == limit
        for row in batch:
            after = (row.received, row.message_id)
            meta = None if row.state == InState.RECEIVED else _meta(ctx, row.message_id)
            if meta is not None:
                folder = ctx.config.directory / "inbox" / row.message_id
                info = await asyncio.to_thread(edxml_inbox.read_info, folder, meta)
                items.append({**_summary(row, meta), "kind": info.kind if info else None})
            if len(items) == limit:
                more = more or row is not batch[-1]
                break
    next_cursor = cursor_of(*after) if more and after is not None else None
    return json_response({"items": items, "next_cursor": next_cursor})


def _summary(row: InboxItem, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row.message_id,
        "from": row.origin,
        "state": row.state,
        "received": format_time(row.received),
        "subject": meta.get("subject"),
        "parts": len(meta["parts"]),
        "size": sum(int(p["size"]) for p in meta["parts"]),
        "href": f"/v1/inbox/{row.message_id}",
    }


async def _item(request: web.Request) -> tuple[str, str, dict[str, Any]]:
    """The item's id, inbound state and .valise.json, or 404."""
    ctx, mid = state(request).ctx, request.match_info["id"]
    if MESSAGE_ID_RE.fullmatch(mid):
        inbound = [t.state for t in await ctx.store.history(mid) if t.state in set(InState)]
        meta = _meta(ctx, mid)
        if inbound and inbound[-1] != InState.RECEIVED and meta is not None:
            return mid, inbound[-1], meta
    raise ApiError(404, "not_found", f"no document {mid} in this inbox")


def _wants_edxml(request: web.Request) -> bool:
    fmt = request.query.get("format")
    if fmt is not None:
        if fmt not in ("json", "edxml"):
            raise ApiError(406, "not_acceptable", "format must be json or edxml")
        return fmt == "edxml"
    accept = request.headers.get("Accept", "")
    return edxml.MEDIA_TYPE in accept and "application/json" not in accept


async def inbox_item(request: web.Request) -> web.StreamResponse:
    ctx = state(request).ctx
    mid, inbound, meta = await _item(request)
    record = await ctx.store.get_envelope(mid)
    if record is None:
        raise ApiError(404, "not_found", f"no document {mid} in this inbox")
    r = parse_framed_head(record.data)[0].head.routing
    received = [t.at for t in await ctx.store.history(mid) if t.state == InState.RECEIVED]
    folder = ctx.config.directory / "inbox" / mid
    if _wants_edxml(request):
        return await _edxml_response(request, ctx, folder, meta, mid, r)
    info = await asyncio.to_thread(edxml_inbox.read_info, folder, meta)
    zipped = info.zipped if info is not None else ()
    return json_response(
        {
            "id": mid,
            "from": r.origin,
            "to": list(r.destinations),
            "state": inbound,
            "received": format_time(received[0]) if received else None,
            "created": format_time(r.created),
            "expires": format_time(r.expires),
            "priority": r.priority.value,
            "class": r.doc_class,
            "dossier": r.dossier,
            "in_reply_to": r.in_reply_to,
            "subject": meta.get("subject"),
            "parts": [
                {
                    "n": n,
                    "name": p["name"],
                    "media_type": p["media_type"],
                    "size": p["size"],
                    "href": f"/v1/inbox/{mid}/parts/{n}",
                    **({"unzipped": f"/v1/inbox/{mid}/parts/{n}/unzipped"} if n in zipped else {}),
                }
                for n, p in enumerate(meta["parts"])
            ],
            "edxml": f"/v1/inbox/{mid}?format=edxml",
            "kind": info.kind if info is not None else None,
            "edxml_header": info.as_json() if info is not None else None,
        }
    )


async def _edxml_response(
    request: web.Request,
    ctx: SiteContext,
    folder: Path,
    meta: dict[str, Any],
    mid: str,
    routing: RoutingHeader,
) -> web.StreamResponse:
    """The item as edXML, written to a scratch file in a worker thread (attachments
    streamed from their files) and streamed from it."""
    scratch = await asyncio.to_thread(_scratch_file, state(request).workdir)
    try:

        def write() -> None:
            with scratch.open("wb") as out:
                edxml_inbox.write_export(
                    out, folder, meta, message_id=mid, here=ctx.here, routing=routing,
                    directory=ctx.directory,
                )  # fmt: skip

        await asyncio.to_thread(write)
        return await _stream_file(request, scratch, edxml.MEDIA_TYPE, None)
    finally:
        await asyncio.to_thread(scratch.unlink, missing_ok=True)


def _scratch_file(workdir: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=workdir, prefix="edxml-", suffix=".xml")
    os.close(fd)
    return Path(name)


async def _stream_file(
    request: web.Request, path: Path, media_type: str, filename: str | None
) -> web.StreamResponse:
    # Streamed by hand: FileResponse would serve a sibling "NAME.gz" part to a client
    # that accepts gzip, and a delivered document may well hold both.
    headers = {"Content-Type": media_type}
    if filename is not None:
        headers["Content-Disposition"] = content_disposition(filename)
    response = web.StreamResponse(headers=headers)
    response.content_length = path.stat().st_size
    await response.prepare(request)
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, PART_CHUNK_BYTES):
            await response.write(chunk)
    await response.write_eof()
    return response


def content_disposition(name: str) -> str:
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


async def inbox_part(request: web.Request) -> web.StreamResponse:
    ctx = state(request).ctx
    mid, _, meta = await _item(request)
    n = request.match_info["n"]
    try:
        part = meta["parts"][parse_count(n, 0, len(meta["parts"]) - 1, "a part number")]
    except ParamError:
        raise ApiError(404, "not_found", f"document {mid} has no such part") from None
    folder = ctx.config.directory / "inbox" / mid
    path = folder / part["name"]
    if path.parent != folder or not path.is_file():
        raise ApiError(404, "not_found", f"part {n} of {mid} is missing")
    return await _stream_file(request, path, part["media_type"], part["name"])


async def inbox_part_unzipped(request: web.Request) -> web.StreamResponse:
    """The file inside a part that is the SDK's ZIP of it, unpacked (bounded) into a
    scratch folder and streamed; 404 for a part that is no such ZIP."""
    ctx = state(request).ctx
    mid, _, meta = await _item(request)
    try:
        n = parse_count(request.match_info["n"], 0, len(meta["parts"]) - 1, "a part number")
    except ParamError:
        raise ApiError(404, "not_found", f"document {mid} has no such part") from None
    folder = ctx.config.directory / "inbox" / mid
    scratch = Path(
        await asyncio.to_thread(tempfile.mkdtemp, dir=state(request).workdir, prefix="unzip-")
    )
    try:
        try:
            entry = await asyncio.to_thread(edxml_inbox.unzip_part, folder, meta, n, scratch)
        except LookupError as exc:
            raise ApiError(404, "not_found", f"document {mid}: {exc}") from None
        except edxml.EdxmlError as exc:
            raise ApiError(422, "unsafe_attachment", f"part {n} of {mid}: {exc}") from None
        media = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
        return await _stream_file(request, entry.path, media, entry.name)
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)


async def inbox_ack(request: web.Request) -> web.Response:
    ctx = state(request).ctx
    mid, _, _ = await _item(request)
    await ctx.store.inbound_set(
        mid,
        InState.ACKED,
        reason=f"acked by {integrator(request).name}",
        now=datetime.now(UTC),
    )
    return json_response({"id": mid, "state": InState.ACKED.value})
