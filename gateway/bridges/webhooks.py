"""Signed webhooks for integrators, from a durable outbox in the store.

Rules:
- Events (gateway/runtime/events.py) become webhooks: ``received`` goes to every active
  integrator with a webhook URL (the inbox is the site's); ``delivered`` (one per
  destination, naming it in ``data.site``), ``failed`` and ``completed`` (once, when
  no destination is open, with ``delivered`` k ``of`` n and the ``failed`` sites) go
  to the integrator that submitted the message, if any. The event's detail is the
  webhook's ``data``, with ``id`` and the ``document`` (or ``inbox``) link.
- A webhook is written to the store (state pending) before anything is posted, so
  a restart loses none; its body and id are fixed then, and every retry sends the
  same ``webhook-id`` (receivers deduplicate on it).
- Signatures follow Standard Webhooks: ``webhook-signature: v1,<base64 HMAC-SHA256>``
  over ``"{webhook-id}.{webhook-timestamp}.{body}"`` keyed with the integrator's
  ``whsec_`` secret; the timestamp is the attempt's, in Unix seconds.
- A 2xx answer settles it; anything else (a redirect too) is retried with
  exponential backoff and jitter like the relay ([relay] retry_base_seconds to
  retry_max_seconds) up to MAX_ATTEMPTS, then it is marked failed. Posts are
  leased, so a webhook whose sender died is claimed again when the lease ends.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from aiohttp import ClientError, ClientSession, ClientTimeout

from envelope.values import format_time
from gateway.bridges.integrators import secret_key
from gateway.runtime.backoff import jittered
from gateway.runtime.events import Event
from gateway.site.context import SiteContext
from gateway.store.base import ClaimedWebhook, StoreError, WebhookEvent

log = logging.getLogger("valise.webhooks")

MAX_ATTEMPTS = 30
BATCH = 16
IDLE_POLL_SECONDS = 1.0
TOLERANCE_SECONDS = 300  # how old a signed timestamp a receiver should accept


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one attempt."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None
) -> bool:
    """Check a received webhook as an integrator would (used by the tests)."""
    try:
        wid, ts = headers["webhook-id"], int(headers["webhook-timestamp"])
        offered = headers["webhook-signature"].split()
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > TOLERANCE_SECONDS:
        return False
    expected = sign(secret, wid, ts, body)
    return any(hmac.compare_digest(expected, s) for s in offered)


def event_body(event: Event) -> bytes:
    data: dict[str, str] = {"id": event.message_id, **event.detail}
    if event.kind == "received":
        data["inbox"] = f"/v1/inbox/{event.message_id}"
    else:
        data["document"] = f"/v1/documents/{event.message_id}"
    payload = {"type": event.kind, "timestamp": format_time(event.at), "data": data}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


class Webhooks:
    """The event subscriber that fills the outbox, and the loop that empties it."""

    def __init__(self, ctx: SiteContext, *, timeout_seconds: float) -> None:
        self.ctx = ctx
        self.timeout = timeout_seconds
        self.owner = f"{ctx.here}-webhooks-{uuid.uuid4().hex[:8]}"
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: ClientSession | None = None

    async def on_event(self, event: Event) -> None:
        store = self.ctx.store
        active = [i for i in await store.integrators() if i.revoked is None and i.webhook_url]
        if event.kind != "received":
            submission = await store.submission(event.message_id)
            if submission is None:
                return
            active = [i for i in active if i.name == submission.integrator]
        if not active:
            return
        body = event_body(event)
        await store.webhook_enqueue(
            [
                WebhookEvent(f"wh_{uuid.uuid4().hex}", i.name, event.kind, event.message_id, body)
                for i in active
            ],
            now=datetime.now(UTC),
        )
        self.wake.set()

    async def start(self) -> None:
        self._session = ClientSession(timeout=ClientTimeout(total=self.timeout))
        self._task = asyncio.create_task(self._loop(), name="webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def _loop(self) -> None:
        lease = max(60.0, 3 * self.timeout)
        while True:
            claimed: list[ClaimedWebhook] = []
            try:
                claimed = await self.ctx.store.webhook_claim(
                    owner=self.owner, limit=BATCH, lease_seconds=lease, now=datetime.now(UTC)
                )
                await asyncio.gather(*(self._post(c) for c in claimed))
            except StoreError as exc:
                log.error(json.dumps({"event": "webhook_store_error", "reason": str(exc)}))
            except Exception as exc:  # a bug here must not stop every later webhook
                log.exception(json.dumps({"event": "webhook_error", "reason": repr(exc)}))
            if len(claimed) < BATCH:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=IDLE_POLL_SECONDS)

    async def _post(self, c: ClaimedWebhook) -> None:
        e = c.event
        if c.url is None or c.secret is None:
            await self._settle(c, "failed", "the integrator was revoked or has no webhook")
            return
        assert self._session is not None
        stamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": e.webhook_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(c.secret, e.webhook_id, stamp, e.body),
            "user-agent": "valise-webhooks/1",
        }
        try:
            async with self._session.post(
                c.url, data=e.body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                status = response.status
            reason = f"HTTP {status}"
            ok = 200 <= status < 300
        except (ClientError, TimeoutError, OSError) as exc:
            reason, ok = f"{type(exc).__name__}: {exc}".strip(": "), False
        if ok:
            await self._settle(c, "sent", reason)
        elif c.attempts >= MAX_ATTEMPTS:
            await self._settle(c, "failed", f"gave up after {c.attempts} attempts: {reason}")
        else:
            relay = self.ctx.config.relay
            delay = jittered(relay.retry_base_seconds, c.attempts, relay.retry_max_seconds)
            await self._settle(c, "pending", reason, delay)

    async def _settle(
        self, c: ClaimedWebhook, state: str, reason: str, delay: float | None = None
    ) -> None:
        now = datetime.now(UTC)
        await self.ctx.store.webhook_settle(
            c.event.webhook_id,
            owner=self.owner,
            state=state,
            reason=reason,
            now=now,
            next_attempt=None if delay is None else now + timedelta(seconds=delay),
        )
        level = logging.INFO if state == "sent" else logging.WARNING
        log.log(
            level,
            json.dumps(
                {
                    "event": f"webhook_{state}",
                    "webhook": c.event.webhook_id,
                    "integrator": c.event.integrator,
                    "kind": c.event.kind,
                    "id": c.event.message_id,
                    "attempt": c.attempts,
                    "reason": reason,
                }
            ),
        )
