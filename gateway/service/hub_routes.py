"""The routes only HQ serves on its channel listener, registered by the service.

/v1/enroll (a new site's one-time enrolment), /v1/keys (a site's key updates),
the announcements' fetched marker, /v1/timestamp and /v1/witness. Each handler is
built here over what it needs (the site context), so no handler reaches into the
channel's application for its dependencies and the relay knows nothing of them.
"""

from __future__ import annotations

from aiohttp import web

from gateway.proof.tsa_service import timestamp_handler, witness_routes
from gateway.site.context import SiteContext
from gateway.trust.announce import FETCHED_PATH, fetched_handler
from gateway.trust.enroll import enroll_handler
from gateway.trust.key_updates import keys_route
from gateway.trust.tls_identity import ENROLL_PATH, KEYS_PATH


def add_hub_routes(app: web.Application, ctx: SiteContext) -> None:
    """Register HQ's own routes on its channel ``app`` (a no-op at a mission)."""
    if not ctx.config.is_hub:
        return
    app.router.add_post(ENROLL_PATH, enroll_handler)
    app.router.add_post(KEYS_PATH, keys_route())
    app.router.add_get(FETCHED_PATH, fetched_handler)
    app.router.add_post("/v1/timestamp", timestamp_handler(ctx))
    witness_post, witness_get = witness_routes(ctx)
    app.router.add_post("/v1/witness", witness_post)
    app.router.add_get("/v1/witness", witness_get)
