"""The typed keys under which a running site's aiohttp applications hold what their
handlers need. Only what handlers of several concerns share lives here; each concern's
own keys stay with its handlers."""

from __future__ import annotations

from aiohttp import web

from gateway.runtime.metrics import Metrics
from gateway.site.context import SiteContext

CONTEXT = web.AppKey("context", SiteContext)
METRICS = web.AppKey("metrics", Metrics)
