"""The client side of mutual TLS between sites: a connector that checks, on every new
connection, that the server is the site we meant to reach and that its key is pinned."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from aiohttp import TCPConnector

from gateway.runtime.errors import PeerError
from gateway.site.tls import peer_pin, peer_site_id

Expectation = Callable[[str], tuple[str, tuple[str, ...]] | None]


class PinnedConnector(TCPConnector):
    """A connector that checks, on every new TLS connection, that the server is the
    site we meant to reach and that its key is pinned in the directory.

    ``expect(origin)`` maps ``https://host:port`` to (site id, pins); pins may be
    empty where the content is signed anyway (the directory fetch). aiohttp offers
    no public hook with the TLS object, hence the override of ``_create_connection``.

    :meth:`renew_tls` is called when the client certificate changed (the key watcher
    reloaded the SSL context): pooled connections would present the old one for as
    long as traffic keeps them alive.
    """

    def __init__(self, *, expect: Expectation, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._expect = expect
        self._made: weakref.WeakSet[Any] = weakref.WeakSet()  # our connections (protocols)
        self._renewals = 0  # how many times renew_tls was called

    def renew_tls(self) -> int:
        """Make every later request handshake with the context's current certificate:
        close the idle pooled connections now, and mark the others (a request in
        flight) to close when their response is done instead of going back to the
        pool. Returns how many idle connections were closed.

        aiohttp has no public call for "drop the idle connections" (``close()`` ends
        in-flight requests too), so this reads the pool, ``_conns``: key -> deque of
        (protocol, time). A closed protocol is no longer ``is_connected()``, and the
        pool discards such a connection when it next looks for one. Marking uses the
        protocol's own ``force_close()``, which the pool honours on release."""
        self._renewals += 1
        for proto in list(self._made):
            proto.force_close()
        closed = 0
        for idle in list(self._conns.values()):
            for proto, _ in list(idle):
                if proto.is_connected():
                    proto.close()
                    closed += 1
        return closed

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
        renewals = self._renewals
        proto = await super()._create_connection(req, traces, timeout)
        self._made.add(proto)
        if renewals != self._renewals:  # its handshake may have used the old certificate
            proto.force_close()
        origin = f"{req.url.scheme}://{req.url.host}:{req.url.port}"
        expected = self._expect(origin)
        try:
            ssl_object = proto.transport.get_extra_info("ssl_object") if proto.transport else None
            if expected is None:
                raise PeerError(f"{origin} is not a site endpoint in the directory")
            site, pins = expected
            actual = peer_site_id(ssl_object)
            if actual != site:
                raise PeerError(f"{origin} presented a certificate of {actual}, not {site}")
            if pins and peer_pin(ssl_object) not in pins:
                raise PeerError(f"the certificate of {site} is not pinned in the directory")
        except Exception:
            if proto.transport is not None:
                proto.transport.close()
            raise
        return proto
