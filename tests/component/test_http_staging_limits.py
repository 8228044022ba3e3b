"""A submission of many empty multipart parts (review F3) against the HTTP API's own app.

Before: every part became a file in DIR/.http-tmp before the "more than 256 parts"
check, and the byte budget counted only part contents, so ~2 MB of empty parts made
150,000 files and stalled the event loop. Now the 257th part is refused while the
body streams and every byte read (boundaries and part headers too) is charged to
[http] max_body_bytes.

Files are counted exactly with an audit hook on "open" (it sees io.open and os.open),
so the test does not depend on how the stager creates them.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from envelope.limits import MAX_PARTS
from gateway.bridges.http.api import make_app
from gateway.bridges.http.common import ApiState
from gateway.bridges.integrators import new_token
from gateway.store.base import Integrator

TOKEN = new_token()
BOUNDARY = b"xx"
METADATA = (
    b'--xx\r\nContent-Disposition: form-data; name="metadata"\r\n'
    b'Content-Type: application/json\r\n\r\n{"to":["HQ"]}\r\n'
)
EMPTY_PART = b'--xx\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\n\r\n'

_watched: list[tuple[str, list[str]]] = []  # (folder prefix, opened paths) while a test runs


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _watched and isinstance(args[0], str | Path):
        path = str(args[0])
        for prefix, seen in _watched:
            if path.startswith(prefix):
                seen.append(path)


sys.addaudithook(_audit)  # cannot be removed; it does nothing outside _watched


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[list[str]]:
    seen: list[str] = []
    entry = (str(tmp_path / "http-tmp"), seen)
    _watched.append(entry)
    try:
        yield seen
    finally:
        _watched.remove(entry)


class _Store:
    async def integrator_for_token(self, digest: str) -> Integrator:
        return Integrator("app", None, None, datetime.now(UTC), None)


@asynccontextmanager
async def _serve(workdir: Path, max_body_bytes: int) -> AsyncIterator[int]:
    """The API's own app (make_app) on a free loopback port; yields the port."""
    workdir.mkdir(mode=0o700)
    ctx: Any = SimpleNamespace(store=_Store())
    api = ApiState(ctx, webhooks=None, max_body_bytes=max_body_bytes, workdir=workdir)  # type: ignore[arg-type]
    runner = web.AppRunner(make_app(api), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def _post_chunked(host: str, port: int, pieces: list[bytes]) -> tuple[int, bytes]:
    """POST /v1/documents with a chunked multipart body; the status line and body."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /v1/documents HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {TOKEN}\r\n".encode()
        + b"Content-Type: multipart/form-data; boundary=xx\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    try:
        for piece in pieces:
            writer.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    except ConnectionError:
        pass  # refused before the whole body went: the answer is already there
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[
            1
        ]
    )
    body = await reader.readexactly(length)
    writer.close()
    return int(head.split(b" ")[1]), body


def _pieces(parts: int) -> list[bytes]:
    body = METADATA + EMPTY_PART * parts + b"--xx--\r\n"
    return [body[i : i + 65536] for i in range(0, len(body), 65536)]


async def test_ten_thousand_empty_parts_refused_at_the_257th_file(
    tmp_path: Path, opened: list[str]
) -> None:
    workdir = tmp_path / "http-tmp"
    async with _serve(workdir, 64 * 1024 * 1024) as port:
        status, body = await _post_chunked("127.0.0.1", port, _pieces(10_000))
    assert len(opened) <= MAX_PARTS + 1, f"{len(opened)} files created for one request"
    assert status == 422 and b"invalid_metadata" in body and b"256 parts" in body, body
    assert list(workdir.iterdir()) == []  # the request's folder is gone


async def test_boundaries_and_part_headers_count_against_max_body_bytes(
    tmp_path: Path, opened: list[str]
) -> None:
    """Parts with no content but ~8 kB of header each (under aiohttp's own 8190-byte
    field limit), fewer than 256 of them: only the byte budget can refuse them."""
    part = b'--xx\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n'
    part += b"X-Pad: " + b"p" * 8000 + b"\r\n\r\n\r\n"
    body = METADATA + part * 200 + b"--xx--\r\n"  # ~1.6 MB of framing, 0 bytes of content
    pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    async with _serve(tmp_path / "http-tmp", 1024 * 1024) as port:
        status, answer = await _post_chunked("127.0.0.1", port, pieces)
    assert len(opened) < 200  # refused once past the budget, not after the last part
    assert status == 413 and b"payload_too_large" in answer, answer
