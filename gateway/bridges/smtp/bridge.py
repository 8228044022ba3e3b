"""The SMTP bridge: local mail clients submit documents; failures bounce back as DSNs.

``[smtp]`` settings: ``listen`` (loopback by default), ``domain`` (addresses are
``mailbox@site-id.<domain>``), ``max_message_bytes`` (advertised as SIZE and
enforced, ``552 5.3.4``), ``max_recipients`` (``452 4.5.3`` beyond), ``timeout_seconds``
(an idle connection is closed), ``max_sessions`` (open at once; one more is told
``421 4.7.0`` only when all are authenticated), ``max_preauth_sessions`` (of them,
not yet authenticated, half of max_sessions by default: one more ends a silent or
else the oldest pre-auth session, ``421 4.7.0``; gateway/bridges/smtp/sessions.py),
``preauth_timeout_seconds`` (a session that has not authenticated by then is closed,
``421 4.7.0``, however many NOOPs it sends), ``require_tls``
(nothing but EHLO/NOOP/QUIT before STARTTLS) and ``require_auth`` (no mail without
AUTH; AUTH works only after STARTTLS; ``yes`` by default: ``no`` lets any local
process submit as anyone, and ``valise doctor`` warns).

STARTTLS presents the site's own TLS certificate (DIR/keys/tls.crt, issued by the
HQ site CA: clients that verify it trust DIR/keys/ca.crt), TLS 1.2 or later.

The pieces: gateway/bridges/smtp/server.py (the strict protocol),
smtp_handler.py (MAIL/RCPT/DATA to envelopes), smtp_address.py (addresses),
smtp_message.py (what is read from a message), smtp_auth.py (AUTH),
smtp_sent.py (the sender records), dsn.py (the DSN) and mail_delivery.py (where
mail goes at a site: received documents and DSNs).

DSNs: the bridge subscribes to the site's events. For a message it queued, each
``delivered``, ``failed`` or ``completed`` makes it read the message's state per
destination (gateway/relay/circular_status.py): once every destination's receipt is in,
the record is forgotten; once none is open and some failed, the record is marked
failed with those destinations, each with its own reason, and a DSN naming only
their recipients (one RFC 3464 block each) goes through this site's outbound
delivery (the mailbox's ``[delivery]`` mode: smarthost or Maildir); while a
destination is open nothing is done (``completed`` follows). A DSN that cannot be
delivered yet (a Retry: gateway/runtime/errors.py) is retried; one refused for good (a
Refused) is given up, logged ``dsn_refused``. A DSN never leaves the site
(smtp_address.bounce_recipient): it goes to the ``MAIL FROM`` only if that is a
local address (``mailbox@<this site>.<domain>``), else to the mailbox of the
integrator that authenticated the submission (its name at this site), else nowhere
(``dsn_not_deliverable`` in the log): a bounce carries the message's headers and
must not be a way to send them, or backscatter, to an outside address. Mail
stored without destination rows (before schema v11) keeps the old rule:
``delivered`` forgets the record, ``failed`` bounces every recipient. A sweep at
start and every SWEEP_SECONDS finishes what a crash interrupted, and bounces
messages that expired beyond this site (a relay's failure is not reported back to
the origin, so the origin's own clock decides): the destinations still open
EXPIRED_GRACE after their expiry, as ``expired``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from config.site import enabled, split_hostport
from gateway.bridges.mail.address import bounce_recipient
from gateway.bridges.mail.delivery import deliver_dsn, gateway_name
from gateway.bridges.mail.dsn import Bounce, build_dsn
from gateway.bridges.smtp.auth import authenticate
from gateway.bridges.smtp.handler import SmtpHandler
from gateway.bridges.smtp.sent import SentRecord, SentRecords
from gateway.bridges.smtp.server import CALL_LIMITS, ValiseSMTP
from gateway.bridges.smtp.sessions import SessionSlots, preauth_limit
from gateway.relay.circular import DELIVERED, MessageStatus
from gateway.relay.circular_status import message_status
from gateway.runtime.errors import Refused, Retry
from gateway.runtime.events import Event, EventBus
from gateway.site.context import SiteContext
from gateway.site.tls import _load_chain

log = logging.getLogger("valise.smtp")
SWEEP_SECONDS = 300.0
EXPIRED_GRACE = timedelta(hours=1)  # a receipt may still be on its way after expiry
STALE_RECORD = timedelta(minutes=10)  # a record whose message never reached the store
STOP_TIMEOUT_SECONDS = 5.0


def starttls_context(ctx: SiteContext) -> ssl.SSLContext:
    """A server context with the site's certificate, TLS 1.2+, no client certificate."""
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(tls, ctx.tls.cert_pem, ctx.tls.key_pem, None)
    return tls


class SmtpBridge:
    name = "smtp"

    def __init__(self, ctx: SiteContext, events: EventBus) -> None:
        self.ctx = ctx
        self.records = SentRecords(ctx.config.directory)
        self._server: asyncio.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: set[str] = set()  # failed messages whose DSN is still to go
        self._wake = asyncio.Event()
        events.subscribe(self._on_event)

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return 0
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        cfg = self.ctx.config.smtp
        host, port = split_hostport(cfg.listen, "[smtp] listen")
        logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd logs every command
        loop = asyncio.get_running_loop()
        tls = starttls_context(self.ctx)
        handler = SmtpHandler(self.ctx, self.records)
        slots = SessionSlots(
            cfg.max_sessions, preauth_limit(cfg.max_sessions, cfg.max_preauth_sessions)
        )

        async def login(user: bytes, password: bytes) -> str | None:
            return await authenticate(self.ctx, user, password)

        def protocol() -> ValiseSMTP:
            return ValiseSMTP(
                handler,
                login=login,
                slots=slots,
                preauth_timeout=cfg.preauth_timeout_seconds,
                data_size_limit=cfg.max_message_bytes,
                hostname=gateway_name(self.ctx),
                ident="Valise ESMTP",
                tls_context=tls,
                require_starttls=enabled(cfg.require_tls),
                auth_required=enabled(cfg.require_auth),
                auth_require_tls=True,
                timeout=cfg.timeout_seconds,
                command_call_limit=CALL_LIMITS,
                loop=loop,
            )

        self._server = await loop.create_server(protocol, host, port)
        await self._sweep()
        self._task = asyncio.create_task(self._dsn_loop(), name="smtp-dsn")
        log.info(json.dumps({"event": "smtp_listening", "host": host, "port": self.port}))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), STOP_TIMEOUT_SECONDS)

    # -- events -----------------------------------------------------------------------
    async def _on_event(self, event: Event) -> None:
        if event.kind not in ("delivered", "failed", "completed"):
            return
        # The record was written before the envelope was committed, so before anything
        # could happen to it: no record means not a message of this bridge.
        record = await asyncio.to_thread(self.records.read, event.message_id)
        if record is None:
            return
        ms = await message_status(self.ctx.store, event.message_id)
        if ms is not None and ms.total > 0:
            await self._settle(record, ms, event.at)
        elif event.kind == "delivered":  # no destination rows (stored before v11)
            await asyncio.to_thread(self.records.remove, event.message_id)
        elif event.kind == "failed":
            await self._mark_failed(record, event.detail.get("reason", "failed"), event.at)

    async def _settle(
        self, record: SentRecord, ms: MessageStatus, at: datetime, *, expired: bool = False
    ) -> None:
        """Act on the message's state per destination: forget it once delivered to
        every destination, bounce the failed ones once none is open (``expired``: the
        open ones count as expired, the sweep's rule past expiry); else wait."""
        if ms.status == DELIVERED:
            await asyncio.to_thread(self.records.remove, record.message_id)
            return
        if not ms.complete and not expired:
            return
        reasons = {d.site: d.reason or "failed" for d in ms.destinations}
        failed = [(site, reasons[site]) for site in ms.failed]
        failed += [(site, "expired") for site in ms.outstanding]
        if not failed:
            return
        mine = dict(failed).get(record.site, failed[0][1])
        await self._mark_failed(record, mine, at, tuple(sorted(failed)))

    async def _mark_failed(
        self,
        record: SentRecord,
        reason: str,
        at: datetime,
        failed_sites: tuple[tuple[str, str], ...] = (),
    ) -> None:
        if record.failed_reason is None:
            record = replace(record, failed_reason=reason, failed_at=at, failed_sites=failed_sites)
            await asyncio.to_thread(self.records.write, record)
        self._pending.add(record.message_id)
        self._wake.set()

    # -- DSNs -------------------------------------------------------------------------
    async def _dsn_loop(self) -> None:
        relay = self.ctx.config.relay
        retry = min(max(relay.retry_max_seconds, 1.0), 60.0)
        last_sweep = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=retry)
            self._wake.clear()
            try:
                for message_id in sorted(self._pending):
                    await self._send_dsn(message_id)
                if time.monotonic() - last_sweep >= SWEEP_SECONDS:
                    last_sweep = time.monotonic()
                    await self._sweep()
            except Exception as exc:  # never let one bad record stop the bounces
                log.error(json.dumps({"event": "dsn_error", "reason": f"{exc!r}"}))

    async def _send_dsn(self, message_id: str) -> None:
        record = await asyncio.to_thread(self.records.read, message_id)
        if record is None or record.failed_reason is None:
            self._pending.discard(message_id)
            return
        if record.sender is None:  # never bounce a message from the null sender
            await self._done(message_id, "dsn_skipped", "null sender")
            return
        failures = _failures(record)
        if not failures:  # its destination delivered; others of a circular failed
            await self._done(message_id, "dsn_skipped", "no recipient of this record failed")
            return
        to = bounce_recipient(
            record.sender, record.integrator, self.ctx.here, self.ctx.config.smtp.domain
        )
        if to.value is None:
            await self._done(message_id, "dsn_not_deliverable", to.refused or "no recipient")
            return
        if to.refused is not None:
            log.info(
                json.dumps(
                    {
                        "event": "dsn_to_integrator",
                        "id": message_id,
                        "to": to.value,
                        "reason": to.refused,
                    }
                )
            )
        dsn = build_dsn(
            Bounce(
                message_id=message_id,
                sender=to.value,
                recipients=tuple(r for r, _ in failures),
                reason=record.failed_reason,
                failures=failures,
                reporting_mta=gateway_name(self.ctx),
                arrival=record.arrival,
                failed_at=record.failed_at or datetime.now(UTC),
                original_headers=record.headers,
            )
        )
        try:
            delivered = await deliver_dsn(self.ctx, message_id, to.value, dsn)
        except Retry as exc:  # DeliveryDeferred: still pending, tried again
            log.warning(json.dumps({"event": "dsn_deferred", "id": message_id, "reason": str(exc)}))
            return
        except Refused as exc:  # MailRefused: dropped
            await self._done(message_id, "dsn_refused", str(exc))
            return
        if delivered:
            await self._done(message_id, "dsn_sent", record.failed_reason)
        else:
            await self._done(message_id, "dsn_not_deliverable", "sender's mailbox mode is inbox")

    async def _done(self, message_id: str, event: str, reason: str) -> None:
        await asyncio.to_thread(self.records.remove, message_id)
        self._pending.discard(message_id)
        log.info(json.dumps({"event": event, "id": message_id, "reason": reason}))

    async def _sweep(self) -> None:
        """Finish what a crash left: failures not yet bounced, receipts not yet
        forgotten, records of messages never queued, messages expired elsewhere."""
        store = self.ctx.store
        now = datetime.now(UTC)
        for record in await asyncio.to_thread(lambda: list(self.records.all())):
            mid = record.message_id
            if record.failed_reason is not None:
                self._pending.add(mid)
                continue
            ms = await message_status(store, mid)
            if ms is None:
                if now - record.arrival > STALE_RECORD:
                    await asyncio.to_thread(self.records.remove, mid)
                continue
            if ms.total > 0:
                expired = now > record.expires + EXPIRED_GRACE
                await self._settle(record, ms, now, expired=expired)
                continue
            # No destination rows (stored before v11): by the history, as before.
            history = await store.history(mid)
            outbound = [t for t in history if t.peer is not None]
            if any(t.state == "delivered" for t in history):
                await asyncio.to_thread(self.records.remove, mid)
            elif outbound and outbound[-1].state == "failed":
                await self._mark_failed(record, outbound[-1].reason, outbound[-1].at)
            elif now > record.expires + EXPIRED_GRACE:
                await self._mark_failed(record, "expired", now)
        if self._pending:
            self._wake.set()


def _failures(record: SentRecord) -> tuple[tuple[str, str], ...]:
    """(recipient, reason) of each recipient of ``record`` to bounce: those whose site
    failed, with that site's reason; every recipient with the record's reason when the
    record predates per-destination failures."""
    if not record.failed_sites:
        return tuple((r, record.failed_reason or "failed") for r in record.recipients)
    reasons = dict(record.failed_sites)
    if record.site not in reasons:
        return ()
    return tuple((r, reasons[record.site]) for r in record.recipients)
