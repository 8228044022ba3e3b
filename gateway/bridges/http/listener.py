"""The HTTP API's listening socket: a bounded number of connections, each on a clock,
and room kept for token holders however many tokenless clients connect.

Rules:
- At most ``max_connections`` connections are open at once, and at most
  ``max_unauthenticated_connections`` of them have not yet presented a valid token
  (pending). The counts are kept in ``connection_made``/``connection_lost``, which the
  event loop calls in order, so a burst of connects cannot overshoot them.
- A new connection is never turned away because of tokenless ones: when either count
  is full, the pending connection most likely to be an attacker's is closed to make
  room (one already refused, else one that has sent nothing, else the oldest). Only
  when every open connection has a valid token is the next one answered ``503
  too_many_connections`` (JSON, ``Retry-After``) and closed before aiohttp sees it.
  So a client holding tokenless connections, however many, cannot keep a token
  holder out: to close a token holder's fresh connection it must open
  ``max_unauthenticated_connections`` newer ones in the moment between the token
  holder's connect and the check of its token.
- A connection is promoted at its first valid token (the auth middleware calls
  :func:`admitted`), and is never closed to make room after that. A request refused
  authentication is answered with ``Connection: close`` (:func:`refused`): a refusal
  never restarts the keep-alive clock, so a slot cannot be held by being refused.
- A pending connection lives at most ``header_timeout_seconds`` in all, however it
  spends them. A request head must also be complete ``header_timeout_seconds`` after
  the connection opened or after the previous answer on it (aiohttp's keep-alive
  clock, which a trickled header line does not reset); a body is read only after the
  token was checked.
"""

from __future__ import annotations

import asyncio
import enum
import json
from typing import Any

from aiohttp import web

BUSY_CODE = "too_many_connections"
BUSY_LINGER_SECONDS = 2.0
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


class Standing(enum.Enum):
    PENDING = "pending"  # no valid token presented yet
    REFUSED = "refused"  # answered 401/403: closes once the answer is written
    AUTHENTICATED = "authenticated"  # presented a valid token: never evicted


class _Gate(asyncio.Protocol):
    """One accepted connection: handed to aiohttp's protocol if there is room, else
    answered busy. Forwards every protocol event to aiohttp's handler."""

    def __init__(self, cap: ConnectionCap) -> None:
        self.cap = cap
        self._inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.standing = Standing.PENDING
        self.heard = False  # any byte received
        self.counted = False  # holds a place in the cap's counts
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if not self.cap.admit(self):
            # Answer, half-close, and drop what the client sends until it closes or
            # BUSY_LINGER_SECONDS pass: closing at once with its request unread would
            # reset the connection and lose the answer.
            transport.write(BUSY_RESPONSE)
            transport.write_eof()
            asyncio.get_running_loop().call_later(BUSY_LINGER_SECONDS, transport.close)
            return
        self.transport = transport
        self._inner = self.cap.make_inner()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self.cap.release(self)
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self.heard = True
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

    def drop(self) -> None:
        """Close now, whatever is buffered (evicted, or past its lifetime)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class ConnectionCap:
    """The protocol factory of the listener: aiohttp's ``server`` behind two counts."""

    def __init__(self, limit: int, unauthenticated_limit: int, lifetime_seconds: float) -> None:
        self.server: web.Server | None = None
        self.limit = limit
        self.unauthenticated_limit = min(unauthenticated_limit, limit)
        self.lifetime_seconds = lifetime_seconds
        self.open = 0  # counted connections, any standing
        self._unauthenticated: dict[_Gate, None] = {}  # PENDING or REFUSED, oldest first
        self.evicted = 0  # connections closed to make room, since start

    def __call__(self) -> asyncio.Protocol:
        return _Gate(self)

    def make_inner(self) -> asyncio.Protocol:
        assert self.server is not None, "the site sets the server before listening"
        return self.server()

    @property
    def unauthenticated(self) -> int:
        return len(self._unauthenticated)

    def admit(self, gate: _Gate) -> bool:
        """Count ``gate`` in, closing tokenless connections to make room; False when
        every open connection is authenticated and the cap is full."""
        while self.open >= self.limit or self.unauthenticated >= self.unauthenticated_limit:
            victim = self._victim()
            if victim is None:
                return False
            self._uncount(victim)
            self.evicted += 1
            victim.drop()
        self.open += 1
        gate.counted = True
        self._unauthenticated[gate] = None
        gate.deadline = asyncio.get_running_loop().call_later(
            self.lifetime_seconds, self._expire, gate
        )
        return True

    def _victim(self) -> _Gate | None:
        # Refused first (it is closing anyway), then one that has said nothing, then
        # the oldest: a token holder sends its request at once and is checked at once.
        silent = oldest = None
        for gate in self._unauthenticated:
            if gate.standing is Standing.REFUSED:
                return gate
            if oldest is None:
                oldest = gate
            if silent is None and not gate.heard:
                silent = gate
        return silent or oldest

    def _expire(self, gate: _Gate) -> None:
        gate.deadline = None
        if gate.standing is not Standing.AUTHENTICATED:
            gate.drop()

    def _uncount(self, gate: _Gate) -> None:
        if not gate.counted:
            return
        gate.counted = False
        self.open -= 1
        self._unauthenticated.pop(gate, None)
        if gate.deadline is not None:
            gate.deadline.cancel()
            gate.deadline = None

    def release(self, gate: _Gate) -> None:
        self._uncount(gate)

    def promote(self, gate: _Gate) -> None:
        if gate.counted and gate.standing is Standing.PENDING:
            gate.standing = Standing.AUTHENTICATED
            self._unauthenticated.pop(gate, None)
            if gate.deadline is not None:
                gate.deadline.cancel()
                gate.deadline = None

    def demote(self, gate: _Gate) -> None:
        if gate.counted and gate.standing is Standing.PENDING:
            gate.standing = Standing.REFUSED


def _gate_of(request: web.Request) -> _Gate | None:
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, _Gate) else None


def admitted(request: web.Request) -> None:
    """The request's token is valid: its connection is no longer pending, and keeps
    its place however many tokenless connections arrive."""
    gate = _gate_of(request)
    if gate is not None:
        gate.cap.promote(gate)


def refused(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """The request was refused authentication (401/403): the answer closes its
    connection, which is the first one closed to make room until it is gone."""
    response.force_close()
    gate = _gate_of(request)
    if gate is not None:
        gate.cap.demote(gate)
    return response


class CappedSite(web.TCPSite):
    """A TCPSite whose connections pass through a :class:`ConnectionCap`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, **kwargs: Any) -> None:
        self._cap: ConnectionCap = kwargs.pop("cap")
        super().__init__(runner, host, port, **kwargs)

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._cap.server = server
        self._server = await asyncio.get_running_loop().create_server(
            self._cap,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]


def unauthenticated_limit(max_connections: int, configured: int) -> int:
    """``[http] max_unauthenticated_connections``, 0 meaning half of max_connections
    (at least one)."""
    if configured > 0:
        return min(configured, max_connections)
    return max(1, max_connections // 2)


def runner_args(header_timeout_seconds: float) -> dict[str, Any]:
    """aiohttp's handler arguments for the API: the request-head clock."""
    return {"keepalive_timeout": header_timeout_seconds}
