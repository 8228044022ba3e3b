"""The integrators' HTTP API: the aiohttp application and its bridge (``[http]``).

Routes (documented in gateway/bridges/http/openapi.py, served at /v1/openapi.json):

    POST /v1/documents                 submit (multipart, raw body or edXML) -> 202
    GET  /v1/documents/{id}            status, history, receipt
    GET  /v1/documents/{id}/receipt    the signed receipt envelope
    GET  /v1/inbox                     delivered documents, cursor-paged
    GET  /v1/inbox/{id}                one document (JSON, or edXML)
    GET  /v1/inbox/{id}/parts/{n}      one part, streamed
    GET  /v1/inbox/{id}/parts/{n}/unzipped  the file inside an SDK-zipped edXML part
    POST /v1/inbox/{id}/ack            acknowledge

It listens on ``[http] listen`` (loopback by default), at most ``[http]
max_connections`` at once and ``[http] max_unauthenticated_connections`` of them
without a valid token yet, each closed if its request head takes longer than
``[http] header_timeout_seconds`` (gateway/bridges/http/listener.py). Every request needs an
integrator's bearer token (``valise integrator add``). Request bodies are staged
in DIR/.http-tmp (0700), emptied at start.
"""

from __future__ import annotations

import json
import logging
import shutil

from aiohttp import web

from config.site import split_hostport
from gateway.bridges.http.common import API, ApiState, auth_middleware, errors_middleware
from gateway.bridges.http.documents import (
    document_destination_receipt,
    document_receipt,
    document_status,
    submit_document,
)
from gateway.bridges.http.inbox import (
    inbox_ack,
    inbox_item,
    inbox_list,
    inbox_part,
    inbox_part_unzipped,
)
from gateway.bridges.http.listener import (
    CappedSite,
    ConnectionCap,
    runner_args,
    unauthenticated_limit,
)
from gateway.bridges.http.openapi import document
from gateway.bridges.webhooks import Webhooks
from gateway.relay.key_wait import keyless_destinations
from gateway.runtime.events import EventBus
from gateway.site.context import SiteContext
from routing.directory import Directory, DirectoryError

log = logging.getLogger("valise.http")
WORKDIR_NAME = ".http-tmp"


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document(reachable_sites(request.app[API].ctx.directory)))


def reachable_sites(directory: Directory) -> list[str]:
    """The sites a document can be sent to now: in force (one with no active encryption
    key yet gets it once its key is published: gateway/relay/key_wait.py)."""
    out = []
    for entry in directory.sites:
        try:
            keyless_destinations(directory, [entry.site])
        except DirectoryError:
            continue
        out.append(entry.site)
    return out


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/documents", submit_document)
    router.add_get("/v1/documents/{id}", document_status, allow_head=False)
    router.add_get("/v1/documents/{id}/receipt", document_receipt, allow_head=False)
    router.add_get(
        "/v1/documents/{id}/receipts/{site}", document_destination_receipt, allow_head=False
    )
    router.add_get("/v1/inbox", inbox_list, allow_head=False)
    router.add_get("/v1/inbox/{id}", inbox_item, allow_head=False)
    router.add_get("/v1/inbox/{id}/parts/{n}", inbox_part, allow_head=False)
    router.add_get("/v1/inbox/{id}/parts/{n}/unzipped", inbox_part_unzipped, allow_head=False)
    router.add_post("/v1/inbox/{id}/ack", inbox_ack)
    router.add_get("/v1/openapi.json", openapi_json, allow_head=False)


def make_app(api: ApiState) -> web.Application:
    # client_max_size bounds only what aiohttp itself buffers; submissions are
    # streamed by the handlers under [http] max_body_bytes.
    app = web.Application(middlewares=[errors_middleware, auth_middleware])
    app[API] = api
    add_routes(app.router)
    return app


class HttpBridge:
    """The HTTP API beside ``valise serve``: its listener and its webhook sender."""

    name = "http"

    def __init__(self, ctx: SiteContext, events: EventBus) -> None:
        self.ctx = ctx
        cfg = ctx.config.http
        self.webhooks = Webhooks(ctx, timeout_seconds=cfg.webhook_timeout_seconds)
        events.subscribe(self.webhooks.on_event)
        workdir = ctx.config.directory / WORKDIR_NAME
        self.api = ApiState(ctx, self.webhooks, cfg.max_body_bytes, workdir)
        self._runner: web.AppRunner | None = None
        self._port = 0

    async def start(self) -> None:
        workdir = self.api.workdir
        shutil.rmtree(workdir, ignore_errors=True)  # what a killed process left staged
        workdir.mkdir(mode=0o700)
        host, port = split_hostport(self.ctx.config.http.listen, "[http] listen")
        cfg = self.ctx.config.http
        self._runner = web.AppRunner(
            make_app(self.api),
            access_log=None,
            handle_signals=False,
            **runner_args(cfg.header_timeout_seconds),
        )
        await self._runner.setup()
        cap = ConnectionCap(
            cfg.max_connections,
            unauthenticated_limit(cfg.max_connections, cfg.max_unauthenticated_connections),
            lifetime_seconds=cfg.header_timeout_seconds,
        )
        site = CappedSite(self._runner, host, port, shutdown_timeout=5, cap=cap)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None)
        self._port = sockets[0].getsockname()[1] if sockets else port
        await self.webhooks.start()
        log.info(json.dumps({"event": "http_listening", "host": host, "port": self._port}))

    async def stop(self) -> None:
        await self.webhooks.stop()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def port(self) -> int:
        return self._port
