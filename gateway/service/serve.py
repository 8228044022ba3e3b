"""``valise serve``: run one site until SIGTERM (graceful) or SIGKILL (nothing lost).

Two listeners: the channel (mutual TLS, ``[site] listen``) and the operations
listener on loopback (``[ops] listen``): /livez, /readyz (store reachable, keys
loaded, at a mission the directory fetched from HQ within ``[relay]
directory_max_age_seconds``) and /metrics (Prometheus text format).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from config.site import load_site_config, split_hostport
from gateway.bridges import Bridge, make_bridges
from gateway.relay.channel import make_app
from gateway.relay.kept_receipts import recheck_kept_receipts
from gateway.runtime.events import EventBus
from gateway.runtime.logjson import JsonFormatter
from gateway.runtime.metrics import Metrics
from gateway.service.hub_routes import add_hub_routes
from gateway.service.workers import Workers
from gateway.site.appkeys import CONTEXT, METRICS
from gateway.site.context import SiteContext, load_site
from gateway.site.keystore import require_encrypted
from gateway.site.modes import SITE_UMASK, require_private
from gateway.site.running import serving
from gateway.site.tls import server_context
from gateway.trust.directory_age import directory_age, stale_reason

log = logging.getLogger("valise.serve")
OPS_CONTEXT = web.AppKey("ops_context", SiteContext)
OPS_METRICS = web.AppKey("ops_metrics", Metrics)


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def livez(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ctx = request.app[OPS_CONTEXT]
    checks: dict[str, str] = {}
    try:
        await ctx.store.ping()
        checks["store"] = "ok"
    except Exception as exc:
        checks["store"] = f"unreachable: {exc}"
    checks["keys"] = "ok" if ctx.keys.signing and ctx.keys.decryption else "missing"
    checks["directory"] = f"serial {ctx.directory.serial}"
    # Fresh means fetched from HQ lately, whatever the serial (gateway/trust/directory_age.py):
    # a directory HQ has not changed for months is still current if HQ says so.
    stale = stale_reason(ctx.config, datetime.now(UTC))
    checks["directory_fetch"] = stale or "ok"
    ok = checks["store"] == "ok" and checks["keys"] == "ok" and stale is None
    return web.json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[OPS_CONTEXT]
    body = request.app[OPS_METRICS].render(
        await ctx.store.depths(),
        ctx.keys.public.valid_until,
        ctx.directory.serial,
        directory_age(ctx.config, datetime.now(UTC)),
        await ctx.store.destination_depths(),
    )
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


def ops_app(ctx: SiteContext, metrics_: Metrics) -> web.Application:
    app = web.Application()
    app[OPS_CONTEXT] = ctx
    app[OPS_METRICS] = metrics_
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


WORKERS = web.AppKey("workers", Workers)
EVENTS = web.AppKey("events", EventBus)
BRIDGES = web.AppKey("bridges", list[Bridge])
SERVER_TLS = web.AppKey("server_tls", ssl.SSLContext)


def site_app(ctx: SiteContext, *, bridges: bool = True) -> web.Application:
    """The channel application of a running site, owning its resources.

    Under ``cleanup_ctx``, set up in this order when the runner is set up (before
    anything listens) and torn down in the reverse order after the listeners stop:
    the store (closed last), the re-check of receipts kept before v11 (before any
    worker, so before expiry: gateway/relay/kept_receipts.py), the workers, and the
    bridges enabled in the config (``bridges=False``: none, as the relay benchmark
    runs it). HQ's own routes are registered by the service (hub_routes.py)."""
    wake, inbound = asyncio.Event(), asyncio.Event()
    stats = Metrics()
    events = EventBus()
    workers = Workers(ctx, wake, inbound, stats, events)
    app = make_app(ctx, wake, inbound, stats, workers.local.heads, workers.couriers.poke)
    add_hub_routes(app, ctx)
    app[WORKERS] = workers
    app[EVENTS] = events
    app[SERVER_TLS] = server_context(ctx.tls.cert_pem, ctx.tls.key_pem, ctx.tls.ca_pem)
    # The bridges' webhook subscribers are in place before the re-check, so the events
    # it emits are queued durably.
    app[BRIDGES] = make_bridges(ctx, events) if bridges else []
    app.cleanup_ctx.extend([_store, _recheck, _workers, _bridges])
    return app


async def _store(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[CONTEXT].store.close()


async def _recheck(app: web.Application) -> AsyncIterator[None]:
    await recheck_kept_receipts(app[CONTEXT], app[EVENTS], app[METRICS])
    yield


async def _workers(app: web.Application) -> AsyncIterator[None]:
    workers = app[WORKERS]
    workers.server_tls = app[SERVER_TLS]
    await workers.start()
    yield
    await workers.stop()


async def _bridges(app: web.Application) -> AsyncIterator[None]:
    started: list[Bridge] = []
    try:
        for bridge in app[BRIDGES]:
            await bridge.start()
            started.append(bridge)
        yield
    finally:
        for bridge in started:
            await bridge.stop()


async def serve(directory: Path, *, ready_file: Path | None = None) -> None:
    """Run the site in ``directory`` until SIGTERM. Raises SiteModeError (the folder or
    store is open to others), ConfigError, KeyStoreError, DirectoryError, OSError."""
    # Whatever this process creates (SQLite's -wal/-shm, staged parts, inbox files) is
    # the owner's alone, and a folder others can read is refused before anything opens.
    os.umask(SITE_UMASK)
    config = load_site_config(directory)
    require_private(config)
    require_encrypted(config.keys_dir, config.key_passphrase)
    # A stop asked for while the site starts (the re-check can be long) is kept, and
    # honoured once it is up: the start is never cut between a commit and its events.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # From before the keys are loaded until the site has stopped, the admin CLI leaves
    # the pruning of key files to this process (gateway/site/running.py).
    with serving(directory):
        ctx = await load_site(directory)
        try:
            app = site_app(ctx)
        except BaseException:
            await ctx.store.close()
            raise
        channel = web.AppRunner(app, access_log=None, handle_signals=False)
        ops = web.AppRunner(ops_app(ctx, app[METRICS]), access_log=None, handle_signals=False)
        try:
            await channel.setup()
            await ops.setup()
            await _listen(ctx, channel, ops, app[BRIDGES], app[SERVER_TLS], ready_file)
            await stop.wait()
            log.info(json.dumps({"event": "stopping", "site": ctx.here}))
        finally:
            await ops.cleanup()
            await channel.cleanup()  # stops the listener, then the bridges, workers, store


async def _listen(
    ctx: SiteContext,
    channel: web.AppRunner,
    ops: web.AppRunner,
    bridges: list[Bridge],
    tls: ssl.SSLContext,
    ready_file: Path | None,
) -> None:
    """Bind the channel (mutual TLS) and the ops listener; say so, and write the ready
    file (its ports) when asked."""
    host, port = split_hostport(ctx.config.site.listen, "[site] listen")
    ops_host, ops_port = split_hostport(ctx.config.ops.listen, "[ops] listen")
    await web.TCPSite(channel, host, port, ssl_context=tls, shutdown_timeout=5).start()
    ops_site = web.TCPSite(ops, ops_host, ops_port)
    await ops_site.start()
    ops_bound = ops_site._server.sockets[0].getsockname()[1] if ops_site._server else ops_port  # type: ignore[attr-defined]
    log.info(
        json.dumps(
            {
                "event": "serving",
                "site": ctx.here,
                "listen": ctx.config.site.listen,
                "ops_port": ops_bound,
                "directory": ctx.directory.serial,
            }
        )
    )
    ports = {"ops_port": ops_bound, **{f"{b.name}_port": b.port for b in bridges}}
    log.info(json.dumps({"event": "bridges", **ports}))
    if ready_file is not None:
        # Written whole, then renamed: a watcher polling for the file never reads it empty.
        staged = ready_file.with_name(ready_file.name + ".tmp")
        staged.write_text(json.dumps(ports))
        staged.replace(ready_file)


def run(directory: Path, ready_file: Path | None = None) -> None:
    setup_logging()
    asyncio.run(serve(directory, ready_file=ready_file))
