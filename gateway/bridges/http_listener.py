"""The HTTP API's listening socket: a bounded number of connections, each on a clock.

Rules:
- At most ``max_connections`` connections are open at once. The next one is answered
  ``503 too_many_connections`` (JSON, ``Retry-After``) and closed before aiohttp
  sees it; the count is kept in ``connection_made``/``connection_lost``, which the
  event loop calls in order, so a burst of connects cannot overshoot it.
- A request head must be complete ``header_timeout_seconds`` after the connection
  opened or after the previous answer on it (aiohttp's keep-alive clock, which it
  starts at connect and a trickled header line does not reset); else the connection
  is closed. Unauthenticated clients therefore hold a connection for at most that
  long; a body is read only after the token was checked.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from gateway.bridges.http_common import ERROR_CODES

BUSY_CODE = "too_many_connections"
BUSY_LINGER_SECONDS = 2.0
assert BUSY_CODE in ERROR_CODES
_BUSY_BODY = json.dumps(
    {"code": BUSY_CODE, "message": "too many connections to this API; retry shortly"}
).encode()
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json\r\n"
    + f"Content-Length: {len(_BUSY_BODY)}\r\n".encode()
    + b"Retry-After: 1\r\nConnection: close\r\n\r\n"
    + _BUSY_BODY
)


class _Gate(asyncio.Protocol):
    """One accepted connection: handed to aiohttp's protocol if there is room, else
    answered busy. Forwards every protocol event to aiohttp's handler."""

    def __init__(self, cap: ConnectionCap) -> None:
        self._cap = cap
        self._inner: asyncio.Protocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._cap.open >= self._cap.limit:
            # Answer, half-close, and drop what the client sends until it closes or
            # BUSY_LINGER_SECONDS pass: closing at once with its request unread would
            # reset the connection and lose the answer.
            assert isinstance(transport, asyncio.Transport)
            transport.write(BUSY_RESPONSE)
            transport.write_eof()
            asyncio.get_running_loop().call_later(BUSY_LINGER_SECONDS, transport.close)
            return
        self._cap.open += 1
        self._inner = self._cap.server()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._cap.open -= 1
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is None:
            return False  # a busy connection: the client is done, close it
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class ConnectionCap:
    """The protocol factory of the listener: aiohttp's ``server`` behind a count."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self.server, self.limit, self.open = server, limit, 0

    def __call__(self) -> asyncio.Protocol:
        return _Gate(self)


class CappedSite(web.TCPSite):
    """A TCPSite whose connections pass through a :class:`ConnectionCap`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, **kwargs: Any) -> None:
        self._limit: int = kwargs.pop("max_connections")
        super().__init__(runner, host, port, **kwargs)

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            ConnectionCap(server, self._limit),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]


def runner_args(header_timeout_seconds: float) -> dict[str, Any]:
    """aiohttp's handler arguments for the API: the request-head clock."""
    return {"keepalive_timeout": header_timeout_seconds}
