"""The typed keys under which a running site's aiohttp applications (and requests) hold
what their handlers need. Only what handlers of several concerns share lives here; each concern's
own keys stay with its handlers."""

from __future__ import annotations

from aiohttp import web

from gateway.runtime.metrics import Metrics
from gateway.site.context import SiteContext

CONTEXT = web.AppKey("context", SiteContext)
METRICS = web.AppKey("metrics", Metrics)

# What the channel's middleware (gateway/relay/channel.py identify_peer) learnt of the
# peer from its TLS certificate, for the handlers behind it.
PEER = web.RequestKey("valise_peer", str)  # the site id the certificate names
PIN = web.RequestKey("valise_pin", str)  # its key's pin (unpinned paths only)
SERIAL = web.RequestKey("valise_serial", str)  # its serial (unpinned paths only)
