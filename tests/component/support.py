"""Helpers of the component tests: a small network's site folders built by the real
enrolment once per session, each test's sites loaded over in-memory stores, the
channel served in this process over mutual TLS on loopback, couriers, local delivery
and a recording hand-off. Nothing here starts a process.

The enrolment (gateway/trust/enroll.py) is the real one: ``init_hub``, ``add_site``,
and ``join`` against HQ's channel application (with its hub routes) listening on
HQ's port in this process. ``add_site`` and the enrolment handler keep their records
in HQ's configured store (the embedded SQLite file): that happens once per session,
while the template is built, and the file is removed afterwards. Every test then
loads copies of the folders with :func:`load_memory_site`: the real ``load_site``
with ``MemoryStore`` in place of the configured store.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, TCPConnector, web
from aiohttp.test_utils import TestServer

from config.site import load_site_config, split_hostport
from crypto.keys import SigningKey
from envelope.model import PartInfo, SealedHeader
from envelope.seal import Recipient, Sealing, new_routing, seal_bytes
from gateway.demo.network import free_port
from gateway.relay.channel import make_app
from gateway.relay.courier import Couriers
from gateway.relay.hop import MEDIA_TYPE, HeadCache, check_envelope
from gateway.relay.local_delivery import LocalDelivery
from gateway.relay.outbox import Document, send_documents
from gateway.runtime.events import Event, EventBus
from gateway.runtime.metrics import Metrics
from gateway.service.hub_routes import add_hub_routes
from gateway.site.connector import PinnedConnector
from gateway.site.context import (
    SiteContext,
    install_directory_file,
    load_directory,
    load_site,
    read_trust,
)
from gateway.site.tls import client_context, server_context
from gateway.store.base import Store, Transition
from gateway.store.memory import MemoryStore
from gateway.trust.enroll import add_site, init_hub, join

HUB = "HQ"
PARIS = "M-PARIS"
HANOI = "M-HANOI"
MISSIONS = (PARIS, HANOI)
SITES = (HUB, *MISSIONS)


# -- the site folders ------------------------------------------------------------------


def build_network(root: Path) -> None:
    """HQ, M-PARIS and M-HANOI enrolled for real under ``root`` (each in ROOT/SITE), every
    folder holding HQ's last directory; no store file is left behind."""
    root.mkdir(parents=True, exist_ok=True)
    ports = {site: free_port() for site in SITES}
    hub_dir = root / HUB
    init_hub(hub_dir, site=HUB, listen=f"127.0.0.1:{ports[HUB]}")
    for m in MISSIONS:
        add_site(hub_dir, m, f"https://127.0.0.1:{ports[m]}", root / f"{m}.bundle")
    asyncio.run(_join_all(root, ports))
    latest = (hub_dir / "directory.xml").read_bytes()
    for m in MISSIONS:
        (root / f"{m}.bundle").unlink()
        config = load_site_config(root / m)
        trust = read_trust(config.keys_dir)
        install_directory_file(root / m, trust, load_directory(config, trust), latest)
    for site in SITES:
        for leftover in (root / site).glob("store.sqlite*"):
            leftover.unlink()


async def _join_all(root: Path, ports: dict[str, int]) -> None:
    """Serve HQ's channel (hub routes included) on its port while each mission joins."""
    ctx = await load_site(root / HUB)
    try:
        app = make_app(ctx, asyncio.Event(), asyncio.Event(), Metrics())
        add_hub_routes(app, ctx)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        tls = server_context(ctx.tls.cert_pem, ctx.tls.key_pem, ctx.tls.ca_pem)
        await web.TCPSite(runner, "127.0.0.1", ports[HUB], ssl_context=tls).start()
        try:
            for m in MISSIONS:
                await join(root / f"{m}.bundle", root / m, listen=f"127.0.0.1:{ports[m]}")
        finally:
            await runner.cleanup()
    finally:
        await ctx.store.close()


async def load_memory_site(directory: Path) -> SiteContext:
    """The real ``load_site`` of ``directory``, over a fresh in-memory store."""
    return await load_site(directory, store=await MemoryStore.open())


@dataclass
class Net:
    """The three sites of one test, each over its own in-memory store."""

    root: Path
    sites: dict[str, SiteContext]

    @property
    def hq(self) -> SiteContext:
        return self.sites[HUB]

    @property
    def paris(self) -> SiteContext:
        return self.sites[PARIS]

    @property
    def hanoi(self) -> SiteContext:
        return self.sites[HANOI]

    def port(self, site: str) -> int:
        """The port of ``site``'s endpoint in the directory (where its couriers' peers
        post)."""
        endpoint = self.hq.directory.site(site).endpoint
        return split_hostport(endpoint.removeprefix("https://"), "endpoint")[1]


async def open_net(template: Path, root: Path) -> Net:
    shutil.copytree(template, root)
    sites: dict[str, SiteContext] = {}
    try:
        for site in SITES:
            sites[site] = await load_memory_site(root / site)
    except BaseException:
        for ctx in sites.values():
            await ctx.store.close()
        raise
    return Net(root, sites)


# -- sending and arriving --------------------------------------------------------------


async def send(
    ctx: SiteContext,
    to: Iterable[str],
    data: bytes = b"note verbale",
    *,
    subject: str = "Note verbale",
    name: str = "nv.txt",
) -> str:
    """Seal one document at ``ctx`` and queue it (gateway/relay/outbox.py); its id."""
    return await send_documents(
        ctx,
        list(to),
        [Document(name, "text/plain", data)],
        now=datetime.now(UTC),
        subject=subject,
    )


def seal(
    ctx: SiteContext,
    to: Iterable[str],
    data: bytes = b"note verbale",
    *,
    sender: SigningKey | None = None,
) -> tuple[str, bytes]:
    """(message id, envelope) of one document sealed at ``ctx`` (signed with ``sender``
    if given, else ``ctx``'s key), to its destinations' active keys; nothing is queued."""
    destinations = list(to)
    routing = new_routing(origin=ctx.here, destinations=destinations, now=datetime.now(UTC))
    sealing = Sealing(
        routing=routing,
        sender=sender or ctx.keys.signing,
        recipients=[
            Recipient(d, ctx.directory.site(d).active_encryption_key()) for d in destinations
        ],
        sealed=SealedHeader(parts=(PartInfo("nv.txt", "text/plain", len(data)),)),
    )
    return routing.message_id, seal_bytes(sealing, [data])


def tamper_signature(data: bytes) -> bytes:
    """``data`` with the first character of its origin signature changed (same length)."""
    at = data.index(b'<signature key="')
    start = data.index(b'">', at) + 2
    swapped = b"A" if data[start : start + 1] != b"A" else b"B"
    return data[:start] + swapped + data[start + 1 :]


async def sealed(ctx: SiteContext, message_id: str) -> bytes:
    record = await ctx.store.get_envelope(message_id)
    assert record is not None, message_id
    return record.data


async def arrive(net: Net, data: bytes, origin: str, destination: str) -> str:
    """Take ``data`` (sealed at mission ``origin``) through HQ's and then
    ``destination``'s hop checks, as their hop handlers do, and store it at
    ``destination`` as received; its message id."""
    now = datetime.now(UTC)
    at_hub = check_envelope(
        data,
        peer=origin,
        here=HUB,
        key=net.hq.keys.signing,
        directory=net.hq.directory,
        now=now,
    )
    dest = net.sites[destination]
    here = check_envelope(
        at_hub.record.data,
        peer=HUB,
        here=destination,
        key=dest.keys.signing,
        directory=dest.directory,
        now=now,
    )
    assert here.deliver_here and not here.next_hops
    [accepted] = await dest.store.accept_many(
        [(here.record, here.next_hops, here.deliver_here, here.hop_ack)], now=now
    )
    assert accepted.new
    return here.record.message_id


async def states(store: Store, message_id: str) -> list[tuple[str | None, str]]:
    """(peer, state) of each transition of the message's history, oldest first."""
    return [(t.peer, t.state) for t in await store.history(message_id)]


async def last(store: Store, message_id: str, peer: str | None) -> Transition:
    """The latest transition of the message towards ``peer``."""
    rows = [t for t in await store.history(message_id) if t.peer == peer]
    assert rows, f"no history of {message_id} towards {peer}"
    return rows[-1]


async def row(store: Store, message_id: str, peer: str) -> tuple[str, str]:
    """(state, last reason) of the outbound row of the message towards ``peer``."""
    [entry] = [q for q in await store.queue(peer=peer) if q.message_id == message_id]
    return entry.state, entry.last_reason


# -- the channel, in this process --------------------------------------------------------


@dataclass
class Channel:
    """A site's channel application served over mutual TLS on 127.0.0.1."""

    ctx: SiteContext
    server: TestServer
    wake: asyncio.Event
    inbound: asyncio.Event
    heads: HeadCache
    poked: list[set[str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.server.make_url("/v1/hop"))


@asynccontextmanager
async def serve_channel(ctx: SiteContext, *, port: int = 0) -> AsyncIterator[Channel]:
    """``ctx``'s channel (gateway/relay/channel.py make_app, HQ's routes too) on
    ``port`` (0: any free one), its certificate from its folder, requiring a site
    certificate of the CA from every client as ``valise serve`` does."""
    wake, inbound, heads = asyncio.Event(), asyncio.Event(), HeadCache()
    poked: list[set[str]] = []
    app = make_app(ctx, wake, inbound, Metrics(), heads, lambda peers: poked.append(set(peers)))
    add_hub_routes(app, ctx)
    server = TestServer(app, host="127.0.0.1", port=port)
    tls = server_context(ctx.tls.cert_pem, ctx.tls.key_pem, ctx.tls.ca_pem)
    await server.start_server(ssl=tls)
    try:
        yield Channel(ctx, server, wake, inbound, heads, poked)
    finally:
        await server.close()


def site_session(ctx: SiteContext, *, cert: tuple[bytes, bytes] | None = None) -> ClientSession:
    """A client presenting ``ctx``'s TLS certificate (or ``cert``: PEM certificate and
    key), trusting the site CA only."""
    cert_pem, key_pem = cert or (ctx.tls.cert_pem, ctx.tls.key_pem)
    tls = client_context(cert_pem, key_pem, ctx.tls.ca_pem)
    return ClientSession(connector=TCPConnector(ssl=tls))


async def post(
    channel: Channel,
    sender: SiteContext,
    body: bytes,
    *,
    cert: tuple[bytes, bytes] | None = None,
    content_type: str = MEDIA_TYPE,
) -> tuple[int, Any]:
    """POST ``body`` to ``channel``'s /v1/hop as ``sender`` (its certificate, or
    ``cert``); the status and the decoded JSON answer."""
    async with (
        site_session(sender, cert=cert) as session,
        session.post(channel.url, data=body, headers={"Content-Type": content_type}) as resp,
    ):
        return resp.status, json.loads(await resp.read())


def pinned_session(ctx: SiteContext) -> ClientSession:
    """The session a running site's couriers use: ``ctx``'s certificate, and a
    connector that checks each server against the endpoints and pins of ``ctx``'s
    directory (gateway/site/connector.py; as gateway/service/workers.py builds it)."""

    def expect(origin: str) -> tuple[str, tuple[str, ...]] | None:
        for entry in ctx.directory.sites:
            if entry.endpoint.rstrip("/") == origin:
                return entry.site, entry.tls_pins
        return None

    tls = client_context(ctx.tls.cert_pem, ctx.tls.key_pem, ctx.tls.ca_pem)
    return ClientSession(connector=PinnedConnector(expect=expect, ssl=tls))


# -- the workers, without their loops ----------------------------------------------------


@dataclass
class Recorder:
    """An event bus subscriber keeping what it was given."""

    events: list[Event] = field(default_factory=list)

    async def __call__(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self, message_id: str) -> list[str]:
        return [e.kind for e in self.events if e.message_id == message_id]


def bus() -> tuple[EventBus, Recorder]:
    events, recorder = EventBus(), Recorder()
    events.subscribe(recorder)
    return events, recorder


def couriers(ctx: SiteContext, events: EventBus | None = None) -> Couriers:
    """``ctx``'s couriers with no dispatcher running and no session yet."""
    return Couriers(
        ctx,
        owner=f"{ctx.here}-test",
        wake=asyncio.Event(),
        metrics=Metrics(),
        events=events or EventBus(),
        crash=lambda point: None,
    )


@dataclass
class HandOffCall:
    message_id: str
    subject: str | None
    folder: Path
    files: list[str]


@dataclass
class RecordingHandOff:
    """A HandOff (gateway/relay/handoff.py) that records each call, and raises
    ``fail`` (if set) instead of taking the document."""

    calls: list[HandOffCall] = field(default_factory=list)
    fail: Exception | None = None

    async def __call__(
        self, ctx: SiteContext, message_id: str, sealed: SealedHeader, folder: Path
    ) -> None:
        files = sorted(p.name for p in folder.iterdir())
        self.calls.append(HandOffCall(message_id, sealed.subject, folder, files))
        if self.fail is not None:
            raise self.fail


def local_delivery(
    ctx: SiteContext, hand_off: RecordingHandOff, events: EventBus | None = None
) -> tuple[LocalDelivery, list[set[str]]]:
    """``ctx``'s local delivery with ``hand_off``; the peers it pokes are recorded."""
    poked: list[set[str]] = []
    worker = LocalDelivery(
        ctx,
        poke=lambda peers: poked.append(set(peers)),
        inbound=asyncio.Event(),
        metrics=Metrics(),
        events=events or EventBus(),
        crash=lambda point: None,
        hand_off=hand_off,
    )
    return worker, poked
