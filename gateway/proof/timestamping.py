"""RFC 3161 time-stamps at work: HQ's TSA service, and every site's stamper.

HQ holds a time-stamp authority (``keys/tsa.crt`` under the site CA, ``keys/tsa.key``
0600; :mod:`crypto.tsa`), serves ``POST /v1/timestamp`` to the sites, and stamps what
passes through it. Every site asks for a token over each envelope it originates. Tokens
are stored with the message (:class:`~gateway.store.base.TimestampRecord`), with the
digested bytes they stamp, and ``valise timestamp export`` hands them to
``openssl ts -verify`` (gateway/cli/timestamp.py).

Rules:
- Which token each stored envelope gets here, by the kinds of TimestampRecord:
  ``sent`` for every envelope this site originates: HQ stamps its own with its TSA, a
  mission asks HQ's ``/v1/timestamp`` for its documents (not for its receipts: HQ
  stamps each receipt as ``delivered`` when it carries it, over the same digest). At HQ,
  ``relayed`` for every other envelope accepted from a peer (whether it relays it on
  or delivers it here: HQ witnesses what passes through it), and ``delivered`` for
  every receipt accepted from a peer, stored under the original message's id (the
  receipt's ``in-reply-to``, which is in the signed routing header HQ reads when it
  relays) with the receipt's own digest. A mission stamps nothing it receives.
- Durable: every envelope is stored pending its stamp, in the accepting transaction
  itself (:meth:`Store.timestamp_pending`); storing its token and ending the pending
  state is one transaction (:meth:`Store.timestamp_settle`). A crash in between only
  means a second token after the restart, of which the store keeps the first.
- Never in the way of delivery: the stamper is a task of its own, and its failures
  only delay tokens.
- Batches: new work (``ctx.queued``, the site's Doorbell, or a poll every ``POLL_SECONDS``) waits
  ``[tsa] batch_wait_ms`` for more, then up to ``[tsa] batch_max`` pending envelopes
  are stamped at once: one ``issue_many`` at HQ, one request from a mission.
- A mission checks HQ's tokens before storing them: every one for its binding (its
  own imprint and its own fresh nonce are in it), and one token wholly
  (``verify_token``: signature, certificate chain to the site CA, imprint, nonce) at
  start and then at most every ``WHOLE_CHECK_SECONDS``: a whole check costs
  milliseconds of ASN.1, the tokens come over the mutually authenticated channel from
  HQ, and every token is checked wholly again wherever it is used as evidence
  (``valise evidence verify``, ``openssl ts -verify``). A token that fails either
  check leaves its envelope pending.
- Retries: HQ unreachable, an HTTP error, a malformed answer, a token that does not
  verify under the site CA or a refusal HQ may get over (timeNotAvailable,
  systemFailure, addInfoNotAvailable) leaves the envelopes pending and backs off
  (jittered, ``[relay] retry_base_seconds`` to ``retry_max_seconds``). A request HQ
  refuses for good (badAlg, badRequest, badDataFormat, unacceptedPolicy,
  unacceptedExtension) is dropped with a warning: asking again cannot help. The two are
  :class:`StampDeferred` (a Retry) and :class:`StampRefused` (a Refused;
  gateway/runtime/errors.py), and a TSA's rejection is sorted by
  :func:`rejection_kind`.
- ``POST /v1/timestamp`` (HQ; the channel's middleware has already refused anything
  but a pinned site): a batch as gateway/proof/timestamp_batch.py frames it. 415 for another
  media type, 413 for too many or too large items, 400 for a malformed frame; else 200
  and one TimeStampResp per request in order, a bad request getting a rejection of
  its own (the others are stamped).
- Audit checkpoints: HQ stamps its own with its TSA; a mission's travel to HQ's
  witness (``POST /v1/witness``, gateway/proof/witness.py), whose answer carries the
  token, so that every checkpoint HQ stamps is one it has witnessed. Checkpoint tokens
  carry ``[tsa] checkpoint_policy``, which ``/v1/timestamp`` never issues (it stamps
  under ``[tsa] policy``, and config refuses the two alike): ``/v1/timestamp`` stamps
  any digest for any pinned site, so its tokens must not time a checkpoint
  (``audit verify`` takes only the checkpoint policy's, gateway/proof/audit.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import ClientError, ClientSession, ClientTimeout

from crypto.random import SYSTEM_RANDOM
from crypto.tsa_errors import TimestampError
from crypto.tsa_verify import verify_token
from envelope.digested import digested, digested_slice
from envelope.errors import EnvelopeError
from envelope.receipt import RECEIPT_CLASS
from gateway.proof.timestamp_batch import (
    REQUEST_MEDIA_TYPE,
    BatchError,
    frame,
    unframe_responses,
)
from gateway.proof.tsa_service import (
    _serials,
    load_authority,
)
from gateway.proof.witness import send_checkpoint
from gateway.proof.witness_format import WitnessError
from gateway.runtime import logjson
from gateway.runtime.backoff import jittered
from gateway.runtime.errors import Refused, Retry
from gateway.site.context import SiteContext
from gateway.store.audit_chain import AuditCheckpoint
from gateway.store.base import PendingStamp, StoreError, TimestampRecord

if TYPE_CHECKING:
    from crypto.tsa import TimeStampAuthority

log = logging.getLogger("valise.timestamping")

POLL_SECONDS = 1.0  # how often the stamper looks for work nobody woke it for
NONCE_BYTES = 8
WHOLE_CHECK_SECONDS = 60.0  # a mission checks one of HQ's tokens wholly this often
# Refusals that another try would get again (RFC 3161 PKIFailureInfo names).
PERMANENT_FAILURES = frozenset(
    {"badAlg", "badRequest", "badDataFormat", "unacceptedPolicy", "unacceptedExtension"}
)


class StampDeferred(Retry):
    """Stamping could not be done now; the envelopes stay pending (one line says why)."""


class StampRefused(Refused):
    """The TSA refused a request for good (:data:`PERMANENT_FAILURES`): asking again
    cannot help, so its envelope is dropped from the pending ones with a warning."""


def rejection_kind(exc: TimestampError, tsa: str) -> StampDeferred | StampRefused:
    """What ``tsa``'s rejection of one request means: refused for good if another try
    would get it again, else deferred."""
    if exc.failure in PERMANENT_FAILURES:
        return StampRefused(str(exc))
    return StampDeferred(f"{tsa}: {exc}")


# -- the authority's files (HQ) ----------------------------------------------------------


@dataclass(frozen=True)
class _Work:
    """One token to get: for the pending envelope ``pending``, stored as ``message_id``."""

    pending: str
    message_id: str
    kind: str
    digest: bytes
    digested: bytes


def plan(p: PendingStamp, *, here_is_hub: bool) -> _Work | None:
    """Which token the pending envelope ``p`` gets here (module rules), or None.
    Raises EnvelopeError when its stored head is not readable."""
    if p.received_from is None:
        if p.doc_class == RECEIPT_CLASS and not here_is_hub:
            return None  # HQ stamps it as "delivered" when it carries it
        kind = "sent"
    elif not here_is_hub:
        return None
    elif p.doc_class == RECEIPT_CLASS:
        seen = digested(p.head)
        if seen.digest != p.digest:
            raise EnvelopeError("the stored head does not have the stored digest")
        return _Work(
            p.message_id, seen.routing.in_reply_to or p.message_id, "delivered", p.digest, seen.data
        )
    else:
        kind = "relayed"
    return _Work(p.message_id, p.message_id, kind, p.digest, digested_slice(p.head, p.digest))


def _bound(token: bytes, digest: bytes, nonce: int) -> bool:
    """Whether ``token`` holds our imprint and our nonce (as their DER contents)."""
    nonce_der = nonce.to_bytes(nonce.bit_length() // 8 + 1, "big")  # DER INTEGER contents
    return digest in token and b"\x02" + bytes([len(nonce_der)]) + nonce_der in token


class Stamper:
    """The loop that settles every pending envelope of this site (module rules)."""

    def __init__(self, ctx: SiteContext, session: ClientSession | None) -> None:
        self.ctx = ctx
        self.session = session
        self.wake = asyncio.Event()
        self.attempts = 0
        self.whole_check_due = 0.0  # monotonic time of the next whole token check
        self.tsa: TimeStampAuthority | None = None
        self.checkpoint_tsa: TimeStampAuthority | None = None  # HQ's own checkpoints
        if ctx.config.is_hub:
            now = datetime.now(UTC)
            self.tsa = load_authority(ctx.config, now=now)
            policy = ctx.config.tsa.checkpoint_policy
            self.checkpoint_tsa = load_authority(ctx.config, now=now, policy=policy)
        # Work queued in this process wakes the stamper too: the workers set ``wake``
        # after starting the couriers (gateway/service/workers.py).

    async def loop(self) -> None:
        cfg = self.ctx.config
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), POLL_SECONDS)
            self.wake.clear()
            if cfg.tsa.batch_wait_ms:
                await asyncio.sleep(cfg.tsa.batch_wait_ms / 1000)
            try:
                while await self.once():
                    pass
                self.attempts = 0
            except Retry as exc:  # StampDeferred
                self.attempts += 1
                delay = jittered(
                    cfg.relay.retry_base_seconds, self.attempts, cfg.relay.retry_max_seconds
                )
                logjson.event(
                    log, logging.WARNING, "timestamp_deferred", reason=str(exc), retry_in=delay
                )
                await asyncio.sleep(delay)
            except StoreError as exc:
                logjson.event(log, logging.WARNING, "timestamp_store", reason=str(exc))

    async def once(self) -> bool:
        """Settle one batch of pending envelopes; True if a full batch went (look again).
        Raises StampDeferred (after settling what could be) or StoreError."""
        batch_max = self.ctx.config.tsa.batch_max
        pending = await self.ctx.store.timestamp_pending(limit=batch_max)
        if not pending:
            return False
        work: list[_Work] = []
        done: list[str] = []
        for p in pending:
            try:
                w = plan(p, here_is_hub=self.ctx.config.is_hub)
            except EnvelopeError as exc:
                logjson.event(
                    log, logging.ERROR, "timestamp_skipped", id=p.message_id, reason=str(exc)
                )
                w = None
            if w is None:
                done.append(p.message_id)
            else:
                work.append(w)
        records: list[TimestampRecord] = []
        deferred: str | None = None
        if work:
            if self.tsa is not None:
                records, settled, deferred = self._stamp_here(self.tsa, work)
            else:
                records, settled, deferred = await self._ask_hub(work)
            done.extend(settled)
        await self.ctx.store.timestamp_settle(records, done=done)
        if records:
            logjson.each(
                log,
                logging.INFO,
                "timestamped",
                [{"id": r.message_id, "kind": r.kind} for r in records],
            )
        if deferred is not None:
            raise StampDeferred(deferred)
        return len(pending) == batch_max

    def _stamp_here(
        self, tsa: TimeStampAuthority, work: Sequence[_Work]
    ) -> tuple[list[TimestampRecord], list[str], str | None]:
        now = datetime.now(UTC)
        try:
            tokens = tsa.issue_many([w.digest for w in work], serials=_serials(len(work)), now=now)
        except TimestampError as exc:
            return [], [], f"the TSA: {exc}"
        records = [
            TimestampRecord(w.message_id, w.kind, w.digest, token, now, w.digested)
            for w, token in zip(work, tokens, strict=True)
        ]
        return records, [w.pending for w in work], None

    async def _ask_hub(
        self, work: Sequence[_Work]
    ) -> tuple[list[TimestampRecord], list[str], str | None]:
        cfg = self.ctx.config
        hub = cfg.site.hub
        if self.session is None:
            return [], [], "no client session"
        # pyasn1, which crypto.tsa encodes with, is loaded with the first batch (tsa_errors.py).
        from crypto.tsa import parse_response
        from crypto.tsa import request as tsa_request

        nonces = [int.from_bytes(SYSTEM_RANDOM.random_bytes(NONCE_BYTES), "big") for _ in work]
        body = frame([tsa_request(w.digest, nonce=n) for w, n in zip(work, nonces, strict=True)])
        try:
            async with self.session.post(
                f"{cfg.site.hub_endpoint}/v1/timestamp",
                data=body,
                headers={"Content-Type": REQUEST_MEDIA_TYPE},
                timeout=ClientTimeout(total=cfg.relay.request_timeout_seconds),
            ) as resp:
                if resp.status != 200:
                    text = (await resp.text())[:200]
                    return [], [], f"{hub} answered {resp.status}: {text}"
                answer = await resp.read()
        except (OSError, TimeoutError, ClientError) as exc:
            return [], [], f"{hub} unreachable: {type(exc).__name__}: {exc}"
        except Exception as exc:  # the pinned connector's PeerError, among others
            return [], [], f"{hub}: {type(exc).__name__}: {exc}"
        try:
            responses = unframe_responses(answer, expected=len(work))
        except BatchError as exc:
            return [], [], f"{hub} answered a malformed batch: {exc}"
        now = datetime.now(UTC)
        records: list[TimestampRecord] = []
        settled: list[str] = []
        deferred: str | None = None
        for w, nonce, der in zip(work, nonces, responses, strict=True):
            try:
                token = parse_response(der)
            except TimestampError as exc:
                kind = rejection_kind(exc, hub)
                if isinstance(kind, Refused):
                    logjson.event(
                        log, logging.WARNING, "timestamp_refused", id=w.message_id, reason=str(kind)
                    )
                    settled.append(w.pending)
                else:
                    deferred = str(kind)
                continue
            try:
                if time.monotonic() >= self.whole_check_due:
                    verify_token(token, w.digest, self.ctx.tls.ca_pem, nonce=nonce)
                    self.whole_check_due = time.monotonic() + WHOLE_CHECK_SECONDS
                elif not _bound(token, w.digest, nonce):
                    raise TimestampError("it is not over our digest with our nonce")
            except TimestampError as exc:
                deferred = f"{hub} sent a token that does not verify: {exc}"
                continue
            records.append(TimestampRecord(w.message_id, w.kind, w.digest, token, now, w.digested))
            settled.append(w.pending)
        return records, settled, deferred

    async def stamp_checkpoint(self, cp: AuditCheckpoint, message: bytes) -> bytes | None:
        """A TimeStampToken over SHA-256 of ``message`` (an audit checkpoint's signed
        bytes): from this HQ's TSA, or at a mission from HQ's witness, which keeps the
        checkpoint (module rules); None when none can be had now."""
        digest = hashlib.sha256(message).digest()
        if self.checkpoint_tsa is not None:
            try:
                tsa = self.checkpoint_tsa
                return tsa.issue_many([digest], serials=_serials(1), now=datetime.now(UTC))[0]
            except TimestampError:
                return None
        if self.session is None:
            return None
        try:
            return await send_checkpoint(self.ctx, self.session, cp, message)
        except (WitnessError, TimestampError) as exc:
            logjson.event(log, logging.WARNING, "audit_witness_failed", reason=str(exc))
            return None
