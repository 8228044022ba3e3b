"""The workers of a running site: couriers per peer, local delivery, receipts, expiry.

- Outbound: gateway/relay/courier.py (the dispatcher and a courier per peer).
- Local delivery and receipts: gateway/relay/local_delivery.py (a batch at a time, one
  store transaction per batch).
- Here: starting and stopping them, expiry, and the directory refresh (missions).

Work queued in this process (bridges, receipts) wakes the dispatcher at once through
``SiteContext.notify``; work queued by another process (``valise send``) through the
store's change notices (``Store.watch``), with a poll every half second besides.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from aiohttp import ClientSession

from gateway.bridges.mail.delivery import deliver_locally
from gateway.proof.audit import AuditCheckpointer
from gateway.proof.timestamping import Stamper
from gateway.relay.channel_client import fetch_directory
from gateway.relay.circular_status import emit_closed
from gateway.relay.courier import Couriers
from gateway.relay.key_watch import KeyWatcher, audit_directory
from gateway.relay.local_delivery import LocalDelivery
from gateway.runtime import logjson
from gateway.runtime.errors import Retry
from gateway.runtime.events import EventBus
from gateway.runtime.faults import crash_point
from gateway.runtime.metrics import Metrics
from gateway.site.connector import PinnedConnector
from gateway.site.context import SiteContext
from gateway.site.tls import client_context
from gateway.trust.directory_age import mark_fetched
from routing.directory import DirectoryError

log = logging.getLogger("valise.delivery")


class Workers:
    """All background loops of one running site."""

    def __init__(
        self,
        ctx: SiteContext,
        wake: asyncio.Event,
        inbound: asyncio.Event,
        metrics: Metrics,
        events: EventBus | None = None,
    ) -> None:
        self.ctx = ctx
        self.metrics = metrics
        self.events = events or EventBus()
        self.wake = wake
        self.inbound = inbound
        self.owner = f"{ctx.here}-{uuid.uuid4().hex[:8]}"
        self.couriers = Couriers(
            ctx,
            owner=self.owner,
            wake=wake,
            metrics=metrics,
            events=self.events,
            crash=self._crash,
        )
        self.local = LocalDelivery(
            ctx,
            poke=self.couriers.poke,
            inbound=inbound,
            metrics=metrics,
            events=self.events,
            crash=self._crash,
            hand_off=deliver_locally,
        )
        self.session: ClientSession | None = None
        # The channel server's TLS context (set by gateway/service/serve.py before start): key
        # rotation makes it present the new certificate (gateway/relay/key_watch.py).
        self.server_tls: ssl.SSLContext | None = None
        self.keys: KeyWatcher | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self._unwatch: Callable[[], Awaitable[None]] | None = None
        self.stamper: Stamper | None = None

    def _queued(self, peers: Sequence[str]) -> None:
        """Work for ``peers`` was queued in this process: start on it now."""
        self.couriers.poke(peers)
        self.inbound.set()
        if self.stamper is not None:
            self.stamper.wake.set()  # after the couriers: a stamp waits for its batch

    def _noticed(self) -> None:
        """The store says another process queued work: look for it now."""
        self.wake.set()
        self.inbound.set()

    async def start(self) -> None:
        ssl_ctx = client_context(self.ctx.tls.cert_pem, self.ctx.tls.key_pem, self.ctx.tls.ca_pem)
        self.session = ClientSession(
            connector=PinnedConnector(expect=self._expect, ssl=ssl_ctx, limit=32)
        )
        self.couriers.session = self.session
        self.ctx.queued.listen(self._queued)
        self._unwatch = await self.ctx.store.watch(self._noticed)
        self.tasks = [
            asyncio.create_task(self.couriers.dispatch(), name="dispatch"),
            asyncio.create_task(self.local.loop(), name="deliver"),
            asyncio.create_task(self._expire_loop(), name="expire"),
        ]
        stamper = self.stamper = Stamper(self.ctx, self.session)
        self.tasks.append(asyncio.create_task(stamper.loop(), name="timestamp"))
        if not self.ctx.config.is_hub:
            self.tasks.append(asyncio.create_task(self._directory_loop(), name="directory"))
        contexts = [ssl_ctx, *([self.server_tls] if self.server_tls is not None else [])]
        self.keys = KeyWatcher(self.ctx, self.session, contexts)
        self.tasks.append(asyncio.create_task(self.keys.loop(), name="keys"))
        checkpointer = AuditCheckpointer(self.ctx, stamp=stamper.stamp_checkpoint)
        self.tasks.append(asyncio.create_task(checkpointer.loop(), name="audit"))

    def _crash(self, point: str) -> None:
        crash_point(self.ctx.config.relay.crash_at, point, self.ctx.config.directory)

    def _expect(self, origin: str) -> tuple[str, tuple[str, ...]] | None:
        """Which site (and pins) an endpoint belongs to, from the directory in force."""
        cfg = self.ctx.config.site
        for entry in self.ctx.directory.sites:
            if entry.endpoint.rstrip("/") == origin:
                return entry.site, entry.tls_pins
        if origin == cfg.hub_endpoint.rstrip("/"):
            return cfg.hub, ()  # the directory fetch: its content is signed
        return None

    async def stop(self) -> None:
        self.ctx.queued.forget(self._queued)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.couriers.stop()
        if self._unwatch is not None:
            await self._unwatch()
            self._unwatch = None
        if self.session is not None:
            await self.session.close()

    # -- housekeeping --------------------------------------------------------------

    async def _expire_loop(self) -> None:
        while True:
            now = datetime.now(UTC)
            for closed in await self.ctx.store.expire(now=now):
                logjson.event(
                    log,
                    logging.WARNING,
                    "failed",
                    id=closed.message_id,
                    reason=closed.reason,
                    sites=",".join(closed.sites),
                )
                await emit_closed(self.events, self.ctx.store, closed, now)
            await asyncio.sleep(1.0)

    async def _directory_loop(self) -> None:
        cfg = self.ctx.config
        assert self.session is not None
        while True:
            try:
                data = await fetch_directory(
                    self.session,
                    cfg.site.hub_endpoint,
                    cfg.site.hub,
                    cfg.relay.request_timeout_seconds,
                )
                # Verified (a forgery or rollback raised): the directory is fresh.
                changed = self.ctx.install_directory(data)
                mark_fetched(cfg.directory, datetime.now(UTC))
                if changed:
                    logjson.event(log, logging.INFO, "directory", serial=self.ctx.directory.serial)
                    await audit_directory(self.ctx, self.ctx.directory.serial)
                    if self.keys is not None:
                        self.keys.kick.set()
            except (Retry, DirectoryError, OSError) as exc:
                logjson.event(
                    log,
                    logging.WARNING,
                    "directory_kept",
                    serial=self.ctx.directory.serial,
                    reason=str(exc),
                )
            await asyncio.sleep(cfg.relay.directory_poll_seconds)
