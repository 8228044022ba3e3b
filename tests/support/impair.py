"""A bad link for the tests: a TCP proxy on loopback with a rate, a one-way delay and
periodic cuts that reset every connection (no netem/tc here; issue 14).

    with ImpairedLink(("127.0.0.1", hq_port), Link(rate_bps=4_000_000, delay=0.150,
                                                   period=30, down=5)) as link:
        ... point the mission at ("127.0.0.1", link.port) ...
        link.stats.carried_up, link.stats.cuts

It runs its own event loop on a thread, binds 127.0.0.1 on a free port and stops by
itself after ``lifetime`` seconds (a test that forgets it leaves nothing running).

- **Rate**: each direction of each connection is paced as a token bucket of
  ``rate_bps`` bits per second (:class:`Pacer`); several connections share the link's
  rate, as they do on a real thin link (one pacer per direction for the whole link).
- **Delay**: every chunk leaves ``delay`` seconds after its pacing allows, in order.
- **Cuts**: the link is up for ``period - down`` seconds, then down for ``down``
  seconds (:func:`is_up`), over and over from the start. When it goes down every open
  connection is reset (RST, both sides) and what was in flight is lost; a connection
  made while it is down is reset at once.
- **Counts** (:class:`Stats`): bytes carried each way (written to the far side: what
  the link carried, lost transfers included), connections, cuts, resets.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

CHUNK_BYTES = 16 * 1024
CHECK_SECONDS = 0.02


@dataclass(frozen=True)
class Link:
    """The impairment: 0 means none for each."""

    rate_bps: int = 0  # bits per second each way
    delay: float = 0.0  # one-way seconds
    period: float = 0.0  # a cut every ``period`` seconds
    down: float = 0.0  # that long

    def __post_init__(self) -> None:
        if self.rate_bps < 0 or self.delay < 0 or self.period < 0 or self.down < 0:
            raise ValueError(f"a link's figures are not negative: {self}")
        if self.down and not self.down < self.period:
            raise ValueError(f"down ({self.down} s) must be shorter than the period")


def is_up(link: Link, elapsed: float) -> bool:
    """Whether the link is up ``elapsed`` seconds after it started: up for
    ``period - down`` seconds, then down for ``down``, over and over."""
    if not link.period or not link.down:
        return True
    return elapsed % link.period < link.period - link.down


class Pacer:
    """When the bytes handed to one direction may leave: a token bucket of ``rate_bps``
    with a burst of one chunk, then the delay. Pure (the caller gives the time)."""

    def __init__(self, rate_bps: int, delay: float) -> None:
        self.rate = rate_bps / 8  # bytes per second
        self.delay = delay
        self.free_at = 0.0

    def due(self, now: float, n: int) -> float:
        """The time ``n`` bytes handed over at ``now`` arrive at the far side."""
        if not self.rate:
            return now + self.delay
        start = max(now, self.free_at)
        self.free_at = start + n / self.rate
        return self.free_at + self.delay


@dataclass
class Stats:
    carried_up: int = 0  # client -> target
    carried_down: int = 0  # target -> client
    connections: int = 0
    cuts: int = 0
    resets: int = 0  # connections reset by a cut (or made while down)


@dataclass(eq=False)  # by identity: kept in a set
class _Conn:
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), not a FIN: the peer sees the connection reset."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class ImpairedLink:
    """The proxy (see the module docstring); a context manager."""

    def __init__(
        self,
        target: tuple[str, int],
        link: Link,
        *,
        lifetime: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.link = link
        self.lifetime = lifetime
        self.stats = Stats()
        self.port = 0
        self._clock = clock
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="impaired-link", daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._conns: set[_Conn] = set()
        self._pacers = (Pacer(link.rate_bps, link.delay), Pacer(link.rate_bps, link.delay))
        self._start = 0.0
        self._error: BaseException | None = None

    # -- life ------------------------------------------------------------------------
    def start(self) -> ImpairedLink:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def __enter__(self) -> ImpairedLink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def up(self) -> bool:
        return is_up(self.link, self._clock() - self._start)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start() if it failed early
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._start = self._clock()
        self._ready.set()
        deadline = self._start + self.lifetime
        was_up = True
        try:
            while not self._stop.is_set() and self._clock() < deadline:
                now_up = self.up()
                if was_up and not now_up:
                    self.stats.cuts += 1
                    for conn in list(self._conns):
                        self._drop(conn)
                was_up = now_up
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), CHECK_SECONDS)
        finally:
            server.close()
            for conn in list(self._conns):
                self._drop(conn, counted=False)
            await server.wait_closed()

    # -- connections ---------------------------------------------------------------------
    def _drop(self, conn: _Conn, *, counted: bool = True) -> None:
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        if counted:
            self.stats.resets += 1
        for w in conn.writers:
            _reset(w)
        for t in conn.tasks:
            t.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        if not self.up():
            self.stats.resets += 1
            _reset(writer)
            return
        try:
            far_reader, far_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        conn = _Conn([writer, far_writer])
        self._conns.add(conn)
        conn.tasks = [
            asyncio.ensure_future(self._pump(reader, far_writer, conn, up=True)),
            asyncio.ensure_future(self._pump(far_reader, writer, conn, up=False)),
        ]
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        if conn in self._conns:  # ended by its ends, not by a cut
            self._conns.discard(conn)
            for w in conn.writers:
                w.close()

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, conn: _Conn, *, up: bool
    ) -> None:
        pacer = self._pacers[0 if up else 1]
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.ensure_future(self._send(queue, dst, up=up))
        conn.tasks.append(sender)
        try:
            while data := await src.read(CHUNK_BYTES):
                await queue.put((pacer.due(self._clock(), len(data)), data))
        except (ConnectionError, OSError):
            pass
        await queue.put((0.0, b""))  # the end: half-close once what is in flight is out
        with contextlib.suppress(asyncio.CancelledError):
            await sender

    async def _send(
        self, queue: asyncio.Queue[tuple[float, bytes]], dst: asyncio.StreamWriter, *, up: bool
    ) -> None:
        try:
            while True:
                due, data = await queue.get()
                if not data:
                    if dst.can_write_eof():
                        dst.write_eof()
                    return
                wait = due - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                dst.write(data)
                await dst.drain()
                if up:
                    self.stats.carried_up += len(data)
                else:
                    self.stats.carried_down += len(data)
        except (ConnectionError, OSError):
            return
