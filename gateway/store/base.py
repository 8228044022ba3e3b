"""The Store protocol every backend implements, and the values it trades in.

Rules:
- Every method that changes state commits durably before it returns (SQLite:
  WAL + synchronous=FULL; PostgreSQL: synchronous_commit on). A caller may
  acknowledge to a peer as soon as the call returns.
- Accepting is idempotent by message id: a second accept of the same id stores
  nothing and returns the first acceptance (its hop acknowledgement included).
- Outbound work is claimed under a lease (owner, expiry): a process that dies
  mid-send loses its lease, and the work is claimable again once it expires.
  PostgreSQL claims with FOR UPDATE SKIP LOCKED, so several processes may share
  one database.
- Every state change appends a transition (state, reason, time) to the
  message's history; nothing is ever rewritten in place without one.
- Envelopes are stored as the ciphertext bytes received; the store never sees
  plaintext.

Outbound states (per message and next hop): queued, sending, forwarded,
delivered, deferred, held, failed. Inbound states (at the destination):
received, available, acked.

Destinations (schema v11, issue 11): at the origin, and at a hub that relays, one row
per final destination of a message (``destinations``), routed through one hop row
(``hop`` = deliveries.peer; None: delivered here). The row stores only its terminal
fact, ``outcome`` open / delivered (with its receipt) / failed (with its reason); the
in-flight state a destination shows (:class:`DestState`) is derived from its hop row
when read. A receipt is recorded once per destination; the origin's hop row moves to
delivered only when every destination through it has one; ``envelopes.completed_at``
is set once, by the transaction that closes the last open destination.

The HTTP API's tables (gateway/bridges/): integrators (a bearer token's SHA-256,
never the token), submissions (which integrator sent a message, under which
Idempotency-Key) and the webhook outbox (pending, sending, sent, failed; claimed
under a lease like outbound work).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from gateway.store.audit_chain import AuditCheckpoint, AuditDraft, AuditEntry, Witness
from gateway.store.enrollments import Enrollment, IssuedCertificate


class OutState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    FORWARDED = "forwarded"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    HELD = "held"
    FAILED = "failed"


# Deliveries still to do whatever the message (valise queue list's default): waiting to
# go, going, held by the operator or a key watch, or failed (the operator's to retry,
# re-seal or delete). A forwarded delivery is still to do only at its origin, until
# the receipt comes (Store.queue todo=True).
TODO_STATES = (
    OutState.QUEUED.value,
    OutState.SENDING.value,
    OutState.DEFERRED.value,
    OutState.HELD.value,
    OutState.FAILED.value,
)


class DestState(StrEnum):
    """What one destination of a message shows (derived: gateway/store/_common.py
    DEST_STATE_SQL). ``sending`` shows as queued; a delivered hop row whose destination
    has no receipt yet shows as forwarded."""

    QUEUED = "queued"
    FORWARDED = "forwarded"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    HELD = "held"
    FAILED = "failed"


class InState(StrEnum):
    RECEIVED = "received"
    AVAILABLE = "available"
    ACKED = "acked"


class StoreError(Exception):
    """The store could not do what was asked (unknown id, wrong state, backend down)."""


@dataclass(frozen=True)
class EnvelopeRecord:
    """One envelope as stored: routing facts for queries, and the bytes."""

    message_id: str
    origin: str
    destinations: tuple[str, ...]
    digest: bytes  # the envelope digest (SPEC 4.3), 32 bytes
    created: datetime
    expires: datetime
    priority: str
    received_from: str | None  # None when this site is the origin
    data: bytes  # the whole framed envelope, ciphertext only
    doc_class: str = "document"  # the routing header's class ("receipt" for receipts)
    # The last signature in the head (the last hop record's, else the origin's): the one
    # a next hop's record signs over. None if unknown (the courier reads the head then).
    chain: bytes | None = None
    # At the origin: the content key wrapped to the origin's own encryption key
    # (envelope/reseal.py), kept to re-seal the envelope if a destination key is revoked.
    escrow: bytes | None = None
    # (destination, next hop from here or None: delivered here) as this site routes the
    # message; one ``destinations`` row each for a new message. Empty: no rows (a pure
    # destination, a receipt envelope).
    routes: tuple[tuple[str, str | None], ...] = ()
    # A receipt envelope's in_reply_to (the message it receipts), set by the hub's hop
    # check: accepting it as a relay records the receipt for (answers, origin).
    answers: str | None = None


@dataclass(frozen=True)
class Destination:
    """One final destination of a message, as this site knows it (Store.destinations)."""

    message_id: str
    site: str
    hop: str | None  # next hop from here toward it; None: delivered here
    state: str  # a DestState, derived from the outcome and the hop row
    reason: str
    attempts: int  # the hop delivery's attempts (0 when hop is None)
    next_attempt: datetime | None
    updated: datetime
    receipt_at: datetime | None = None
    receipt_digest: bytes | None = None  # envelope digest of the receipt envelope (None: pre-v11)
    receipt_for: bytes | None = None  # the envelope digest the receipt names (origin only)
    receipt_size: int = 0  # bytes of the receipt envelope kept here (0: none kept)


@dataclass(frozen=True)
class ReceiptRecord:
    """A verified receipt to record for one destination (Store.record_receipts)."""

    message_id: str  # the message receipted
    site: str  # the destination that signed it
    receipt_digest: bytes  # envelope digest (SPEC 4.3) of the receipt envelope
    receipt_for: bytes | None  # the envelope digest it names; None at the hub (sealed)
    data: bytes | None  # the receipt envelope (kept at the origin only)
    reason: str = "receipt"


@dataclass(frozen=True)
class ReceiptOutcome:
    """What recording one receipt did. ``status``: ``recorded`` (new), ``duplicate``
    (that destination has a receipt already: nothing changed) or ``unknown`` (no such
    destination row here: nothing changed)."""

    status: str
    delivered: int  # destinations of the message with a receipt now
    total: int  # destinations of the message (rows here)
    completed: bool  # this call closed the message's last open destination


@dataclass(frozen=True)
class Closed:
    """What fail() / expire() closed of one message: the destinations failed now
    (``sites``, possibly empty: a hop row without destination rows), and whether that
    closed the message's last open destination."""

    message_id: str
    sites: tuple[str, ...]
    reason: str
    completed: bool


@dataclass(frozen=True)
class SentMessage:
    """What a receipt for a message sent from here must match (Store.sent_digests)."""

    destinations: tuple[str, ...]
    digests: frozenset[bytes]  # the stored copy's digest and the superseded ones (v10)
    receipted: dict[str, bytes]  # site -> receipt digest recorded (b"": pre-v11, unknown)
    stored: bytes  # the digest of the copy stored here now (one of ``digests``)


@dataclass(frozen=True)
class Acceptance:
    """What accept() did: ``new`` is False for a repeated message id, and for one the
    operator deleted here (``deleted``: a tombstone holds it until it expires, so a
    replayed copy is neither stored nor delivered again)."""

    new: bool
    hop_ack: bytes | None  # the signed hop acknowledgement recorded on first acceptance
    deleted: bool = False


@dataclass(frozen=True)
class MessageRoute:
    """Who sealed a stored message and to whom: what a receipt for it must match."""

    origin: str
    destinations: tuple[str, ...]
    doc_class: str = "document"
    # site -> receipt digest already recorded here (the hub: one receipt per destination)
    receipted: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Claimed:
    """A unit of outbound work leased to one sender: send ``message_id`` to ``peer``."""

    message_id: str
    peer: str
    attempts: int
    data: bytes
    expires: datetime
    # What the courier checks the peer's hop acknowledgement against (see EnvelopeRecord).
    origin: str = ""
    digest: bytes = b""
    doc_class: str = "document"
    chain: bytes | None = None


@dataclass(frozen=True)
class InboundOutcome:
    """What local delivery did with one inbound item, for :meth:`Store.inbound_settle`.

    The item moves from ``received`` to ``state`` (``available`` once opened here,
    ``acked`` for a receipt or an undeliverable envelope). With it, in the same
    transaction: ``receipt`` (a receipt envelope sealed here, and its next hops) is
    queued; ``delivered`` records a verified receipt for a message sent from here, as
    :meth:`Store.record_receipts` does (an unknown original or destination changes
    nothing; a duplicate sets the item's reason to DUPLICATE_RECEIPT); ``own_receipt``
    (the receipt sealed here for the item, site = here) closes this site's own
    destination row where there is one (the hub), else is ignored; ``failed`` with
    ``failed_site`` closes only that destination row of the item's message (no hop row
    changes: forwards to other destinations go on); ``failed`` without ``failed_site``
    (legacy) fails every undelivered delivery of the message as :meth:`Store.fail` does.
    """

    message_id: str
    state: InState
    reason: str
    receipt: tuple[EnvelopeRecord, tuple[str, ...]] | None = None
    delivered: ReceiptRecord | None = None
    failed: str | None = None
    own_receipt: ReceiptRecord | None = None
    failed_site: str | None = None


@dataclass(frozen=True)
class Settled:
    """What :meth:`Store.inbound_settle` did with one outcome."""

    applied: bool  # the item was still ``received``; it is now in its new state
    delivered: bool  # the outcome's receipt was newly recorded (False: already, or not applied)
    receipt: ReceiptOutcome | None = None  # what recording ``delivered`` did (None: nothing)
    closed: Closed | None = None  # what ``failed`` closed (None: nothing)


@dataclass(frozen=True)
class Transition:
    at: datetime
    peer: str | None  # the next hop, or None for inbound / whole-message events
    state: str
    reason: str


@dataclass(frozen=True)
class QueueEntry:
    message_id: str
    peer: str
    state: str
    attempts: int
    next_attempt: datetime | None
    last_reason: str
    origin: str
    destinations: tuple[str, ...]
    created: datetime
    expires: datetime
    priority: str
    size: int
    accepted: datetime | None = None  # when this site took the message
    updated: datetime | None = None  # the delivery's last change of state (or retry)
    dest_open: int = 0  # destinations routed through this hop still open
    dest_total: int = 0  # destinations routed through this hop (0: no destination rows)


@dataclass(frozen=True)
class InboxItem:
    message_id: str
    origin: str
    state: str
    received: datetime
    size: int
    doc_class: str = "document"  # "receipt" for a receipt sent back to this site


@dataclass(frozen=True)
class Integrator:
    """An HTTP API client of this site; ``revoked`` is set once its token is revoked."""

    name: str
    webhook_url: str | None
    webhook_secret: str | None  # the Standard Webhooks secret ("whsec_..."), shown once
    created: datetime
    revoked: datetime | None


@dataclass(frozen=True)
class Submission:
    """A message submitted by an integrator (with the Idempotency-Key it came under)."""

    message_id: str
    integrator: str
    idempotency_key: str | None
    fingerprint: str  # SHA-256 hex of the normalised request: same key, same request
    created: datetime


@dataclass(frozen=True)
class WebhookEvent:
    """One webhook to POST: an event for one integrator, its JSON body fixed at enqueue."""

    webhook_id: str
    integrator: str
    kind: str  # received | delivered | failed | completed
    message_id: str
    body: bytes


@dataclass(frozen=True)
class ClaimedWebhook:
    """A webhook leased to one sender, with where and how to send it (None: revoked)."""

    event: WebhookEvent
    attempts: int
    url: str | None
    secret: str | None


@dataclass(frozen=True)
class WebhookEntry:
    webhook_id: str
    integrator: str
    kind: str
    message_id: str
    state: str  # pending | sending | sent | failed
    attempts: int
    last_reason: str


@dataclass(frozen=True)
class TimestampRecord:
    """An RFC 3161 TimeStampToken kept with a message (gateway/timestamping.py).

    kind: ``sent`` (the origin asked HQ's TSA for its outgoing envelope), ``relayed``
    (HQ stamped it as it passed), ``delivered`` (HQ stamped the delivery receipt it
    relayed back; message_id is the original message's, digest the receipt's).
    ``digested`` is the byte range whose SHA-256 is ``digest`` (envelope/digested.py:
    what ``openssl ts -verify -data`` reads), kept so that the token can be checked
    after the envelope is gone; empty when not kept.
    """

    message_id: str
    kind: str
    digest: bytes  # the SHA-256 the token's messageImprint covers
    token: bytes  # DER ContentInfo (SignedData) of the TimeStampToken
    at: datetime  # when it was stored here
    digested: bytes = b""


@dataclass(frozen=True)
class PendingStamp:
    """An envelope stored here whose time-stamp is still to be settled.

    Every envelope is stored pending (in the accepting transaction, so a crash never
    loses one); gateway/timestamping.py decides from ``received_from`` and
    ``doc_class`` which token, if any, it gets here.
    """

    message_id: str
    origin: str
    received_from: str | None  # None when this site is the origin
    doc_class: str
    digest: bytes
    head: bytes  # the envelope's prefix and head XML (not its segments)


@dataclass(frozen=True)
class DirectoryFetch:
    """HQ: the last directory version a site fetched, and when."""

    site: str
    serial: int
    at: datetime


class Store(Protocol):
    """The durable queue and inbox of one site."""

    async def close(self) -> None: ...

    # -- accepting --------------------------------------------------------------
    async def accept(
        self,
        record: EnvelopeRecord,
        *,
        next_hops: Sequence[str],
        deliver_here: bool,
        hop_ack: bytes | None,
        now: datetime,
        held: str | None = None,
    ) -> Acceptance:
        """Store ``record`` and queue one delivery per next hop, in one transaction.

        ``deliver_here`` also creates the inbound item (state ``received``). With
        ``held``, a new message's deliveries are put on hold for that reason in the
        same transaction (queued, then held: none is ever claimable meanwhile).
        Idempotent by message id (see the module rules).
        """
        ...

    async def accept_many(
        self,
        items: Sequence[tuple[EnvelopeRecord, Sequence[str], bool, bytes | None]],
        *,
        now: datetime,
    ) -> list[Acceptance]:
        """accept() for several envelopes in ONE transaction (one commit).

        Both insert one ``destinations`` row per ``record.routes`` entry for a new
        message; a new relayed receipt envelope (``received_from`` set, class
        ``receipt``, ``answers`` set, not delivered here) also records
        ``ReceiptRecord(answers, origin, digest, None, None, "receipt relayed")`` in the
        same transaction (the hub's per-destination delivered)."""
        ...

    async def get_envelope(self, message_id: str) -> EnvelopeRecord | None: ...

    # -- outbound work ----------------------------------------------------------
    async def claim(
        self, *, peer: str, owner: str, limit: int, lease_seconds: float, now: datetime
    ) -> list[Claimed]:
        """Lease up to ``limit`` due deliveries to ``peer`` (queued, or deferred and due,
        or sending with an expired lease), oldest-priority-first; mark them sending."""
        ...

    async def peers_with_work(self, *, now: datetime) -> list[str]:
        """Peers that have at least one due delivery."""
        ...

    async def next_due(self, *, now: datetime) -> datetime | None:
        """The earliest next_attempt of any deferred delivery (for sleeping)."""
        ...

    async def forwarded(
        self,
        items: Sequence[tuple[str, str]],
        *,
        owner: str,
        now: datetime,
        reason: str = "",
        receipts: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Mark (message_id, peer) pairs forwarded (the peer acknowledged); in the same
        transaction, record ``receipts`` (message_id of a receipt envelope sealed here,
        its next hop's signed acknowledgement) in ``envelopes.receipt`` and mark its hop
        rows delivered (a receipt envelope's own proof of delivery is its hop ack)."""
        ...

    async def defer(
        self,
        message_id: str,
        peer: str,
        *,
        owner: str,
        reason: str,
        next_attempt: datetime,
        now: datetime,
    ) -> None: ...

    async def fail(
        self, message_id: str, peer: str | None, *, reason: str, now: datetime
    ) -> Closed | None:
        """Mark the delivery (or, with peer None, every delivery of the message) failed,
        and close the open destinations routed through it (peer None: all of them).
        None if nothing changed. Raises StoreError for an unknown message."""
        ...

    async def expire(self, *, now: datetime) -> list[Closed]:
        """Fail every undelivered delivery whose envelope has expired, and close its open
        destinations (the origin: every open one, forwarded too; a hub: those whose hop
        row failed now); one Closed per message changed, by message id."""
        ...

    # -- receipts ---------------------------------------------------------------
    async def delivered(
        self,
        message_id: str,
        *,
        receipt: bytes,
        now: datetime,
        site: str | None = None,
        receipt_digest: bytes | None = None,
        receipt_for: bytes | None = None,
    ) -> bool:
        """Record a verified delivery receipt at the origin for destination ``site``
        (None: the message's single destination, else StoreError), as
        :meth:`record_receipts` does; False if that destination has one already.
        Raises StoreError for an unknown message or destination."""
        ...

    async def receipt(self, message_id: str) -> bytes | None:
        """A receipt envelope's hop acknowledgement (sealed here), or the receipt of a
        message with exactly one destination (compatibility; see destination_receipt)."""
        ...

    async def destination_receipt(self, message_id: str, site: str) -> bytes | None:
        """The receipt envelope recorded for destination ``site`` (None: none kept)."""
        ...

    async def destinations(self, message_id: str) -> list[Destination]:
        """The message's destination rows here, with their derived state, by site."""
        ...

    async def record_receipts(
        self, items: Sequence[ReceiptRecord], *, now: datetime
    ) -> list[ReceiptOutcome]:
        """Record verified receipts in ONE transaction, one outcome per item in order.
        A destination takes its first receipt only (later ones: ``duplicate``, also
        within the batch); a failed destination takes a late one (history reason
        ``receipt after failure``) without completing the message again. When no
        destination through a hop row is left without a receipt, that row is marked
        delivered. Unknown message or destination: ``unknown``, nothing changed."""
        ...

    async def destination_depths(self) -> dict[tuple[str, str], int]:
        """Destinations per (site, state): open ones per site and derived state;
        delivered and failed ones counted under site ''."""
        ...

    async def sent_digests(self, message_ids: Sequence[str]) -> dict[str, SentMessage]:
        """What a receipt must match, for each of these messages stored here."""
        ...

    async def superseded_digests(self, message_ids: Sequence[str]) -> dict[str, tuple[bytes, ...]]:
        """The digests of the earlier copies of each of these messages, replaced here by
        ``replace_sealed``, oldest first (absent: none)."""
        ...

    async def message_routes(self, message_ids: Sequence[str]) -> dict[str, MessageRoute]:
        """The origin and destinations of each of these messages stored here, whatever
        its origin (a relay's check of a receipt: gateway/hop.py check_receipt)."""
        ...

    # -- inbound ----------------------------------------------------------------
    async def inbound_set(
        self, message_id: str, state: InState, *, reason: str, now: datetime
    ) -> None: ...

    async def inbox(
        self,
        *,
        state: InState | None = None,
        limit: int = 100,
        after: tuple[datetime, str] | None = None,
    ) -> list[InboxItem]:
        """Inbound items oldest first; ``after`` (received, message id) pages on."""
        ...

    async def inbound_received(self, *, limit: int, max_bytes: int) -> list[EnvelopeRecord]:
        """The envelopes of the oldest items still ``received`` (to open here): at most
        ``limit``, and no more than ``max_bytes`` of envelopes in all (at least one)."""
        ...

    async def inbound_settle(
        self, outcomes: Sequence[InboundOutcome], *, now: datetime
    ) -> list[Settled]:
        """Apply local delivery's outcomes in ONE transaction (one commit), each only if
        its item is still ``received`` (see :class:`InboundOutcome`)."""
        ...

    # -- change notices ------------------------------------------------------------
    async def watch(self, on_change: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Call ``on_change`` (on the event loop) soon after another process queued work
        in this store (``accept``: the CLI, another process's bridge); return the stop
        function. In-process callers are woken directly (SiteContext.notify)."""
        ...

    # -- operator ---------------------------------------------------------------
    async def hold(
        self,
        message_id: str,
        *,
        now: datetime,
        reason: str,
        peers: Sequence[str] | None = None,
    ) -> int:
        """Hold the message's holdable deliveries (only those to ``peers`` if given)."""
        ...

    async def release(self, message_id: str, *, now: datetime, reason: str) -> int: ...
    async def retry(self, message_id: str, *, now: datetime, reason: str) -> int:
        """Requeue the message's deferred and failed deliveries, and reopen the failed
        destinations routed through the failed ones."""
        ...

    async def delete(self, message_id: str, *, now: datetime, reason: str) -> int:
        """Remove the message (envelope, deliveries, inbound item; the history stays) and
        leave a tombstone until its expiry, so that accept() of the id answers
        ``deleted``. Returns the deliveries removed."""
        ...

    async def queue(
        self, *, peer: str | None = None, state: str | None = None, todo: bool = False
    ) -> list[QueueEntry]:
        """Deliveries (to ``peer``, in ``state``), in claim order. ``todo``: only what is
        still to do here (TODO_STATES, and a message sent from here forwarded with a
        destination through that hop still open); not a delivered one, nor a relayed one
        forwarded on. ``dest_open`` / ``dest_total`` count the destinations per hop."""
        ...

    async def history(self, message_id: str) -> list[Transition]: ...

    async def depths(self) -> dict[tuple[str, str], int]:
        """Count of deliveries per (peer, state)."""
        ...

    async def ping(self) -> None:
        """Raise StoreError if the backend is unreachable."""
        ...

    async def durability(self) -> dict[str, str]:
        """The settings that make commits durable (for doctor and readyz)."""
        ...

    # -- integrators (the HTTP API) ------------------------------------------------
    async def integrator_add(
        self,
        name: str,
        *,
        token_sha256: str,
        webhook_url: str | None,
        webhook_secret: str | None,
        now: datetime,
    ) -> None:
        """Register an integrator. Raises StoreError if the name was ever used."""
        ...

    async def integrator_revoke(self, name: str, *, now: datetime) -> bool:
        """Revoke the integrator's token; False if there is no active one of that name."""
        ...

    async def integrators(self) -> list[Integrator]: ...

    async def integrator_for_token(self, token_sha256: str) -> Integrator | None:
        """The active integrator holding the token of this SHA-256 (hex), if any."""
        ...

    async def submission_reserve(
        self, submission: Submission, *, forget_before: datetime
    ) -> Submission:
        """Record ``submission``, or return the one already recorded under the same
        (integrator, idempotency key); a key recorded before ``forget_before`` has
        expired and is released (its message keeps its integrator)."""
        ...

    async def submission(self, message_id: str) -> Submission | None: ...

    # -- the webhook outbox --------------------------------------------------------
    async def webhook_enqueue(self, events: Sequence[WebhookEvent], *, now: datetime) -> None:
        """Queue webhooks (state pending, due now), in one transaction."""
        ...

    async def webhook_claim(
        self, *, owner: str, limit: int, lease_seconds: float, now: datetime
    ) -> list[ClaimedWebhook]:
        """Lease up to ``limit`` due webhooks (pending and due, or sending with an expired
        lease), oldest first; mark them sending and count the attempt."""
        ...

    async def webhook_settle(
        self,
        webhook_id: str,
        *,
        owner: str,
        state: str,
        reason: str,
        now: datetime,
        next_attempt: datetime | None = None,
    ) -> None:
        """End an attempt: ``sent``, ``failed``, or ``pending`` again at ``next_attempt``.
        Ignored unless ``owner`` still holds the lease."""
        ...

    async def webhooks(self, *, message_id: str | None = None) -> list[WebhookEntry]: ...

    # -- time-stamp tokens (gateway/timestamping.py) ------------------------------
    async def timestamp_add(self, records: Sequence[TimestampRecord]) -> None:
        """Store tokens; a (message_id, kind, digest) already stored is left as it is."""
        ...

    async def timestamps(self, message_id: str) -> list[TimestampRecord]:
        """Every token stored for ``message_id``, oldest first."""
        ...

    async def timestamp_pending(self, *, limit: int) -> list[PendingStamp]:
        """Up to ``limit`` envelopes still awaiting their time-stamp, oldest accepted
        first (an index over the pending ones: cheap when there are none)."""
        ...

    async def timestamp_settle(
        self, records: Sequence[TimestampRecord], *, done: Sequence[str]
    ) -> None:
        """In one transaction: store ``records`` as :meth:`timestamp_add` does and mark
        the envelopes ``done`` (message ids) no longer pending; unknown ids are skipped."""
        ...

    # -- re-sealing (gateway/reseal.py) ------------------------------------------------
    async def escrow(self, message_id: str) -> bytes | None:
        """The escrowed content key of an envelope this site sealed (None: none kept)."""
        ...

    async def open_escrows(self, *, receipts_since: datetime) -> list[tuple[str, bytes]]:
        """(message id, escrow) of each envelope sealed here not yet delivered (no
        receipt), and of each receipt of ours created since ``receipts_since`` (its hop
        ack is its receipt, but the hub may still hold it: gateway/receipt_reseal.py)."""
        ...

    async def replace_escrow(self, message_id: str, *, old: bytes, new: bytes) -> bool:
        """Store ``new`` as the message's escrow if ``old`` is still the one stored."""
        ...

    async def replace_sealed(
        self,
        message_id: str,
        *,
        data: bytes,
        digest: bytes,
        chain: bytes,
        hop_ack: bytes | None,
        expected_digest: bytes,
        requeue: Sequence[str],
        held_for: str | None,
        now: datetime,
        reason: str,
        resend_receipt: bool = False,
    ) -> int:
        """Put a re-sealed copy of the envelope in place of the stored one (same id, a
        destination still open) and move its deliveries in ``requeue`` states back to
        queued (a requeued failed one reopens its failed destinations).
        With ``resend_receipt``, the envelope may be a receipt sealed here that its next
        hop acknowledged already (its stored proof, the hop ack, is dropped with the copy
        it proved; the new copy's is recorded when it is acknowledged in turn). With no
        delivery in ``requeue`` states (one being tried, say), nothing changes: that try
        sends the stored copy, which must stay the one stored.
        Only if the stored copy is still the one of ``expected_digest`` (the one the
        caller checked the replacement against: gateway/reseal.py). With ``held_for``,
        only if a delivery is held with a reason starting so (a relay taking a re-sealed
        copy in place of the one it held). The replaced copy's digest is kept
        (``superseded_digests``). Returns the deliveries requeued; 0 and nothing
        changed otherwise."""
        ...

    async def renew_hop_ack(
        self, message_id: str, *, digest: bytes, old: bytes, new: bytes
    ) -> bool:
        """Store ``new`` as the first hop acknowledgement of the envelope in place of
        ``old`` (one signed with a key of ours no longer usable: gateway/ack_renewal.py),
        only if the stored envelope is still the one of ``digest`` and its ack still
        ``old``. True if it was replaced."""
        ...

    # -- directory fetches (HQ) --------------------------------------------------------
    async def directory_fetched(self, site: str, serial: int, *, now: datetime) -> None:
        """Record that ``site`` fetched directory ``serial`` (the highest one is kept)."""
        ...

    async def directory_fetches(self) -> list[DirectoryFetch]: ...

    # -- enrolments and the TLS certificates HQ issued (gateway/enroll.py) -------------
    async def enrollment_add(self, enrollment: Enrollment, bootstrap: IssuedCertificate) -> None:
        """Record a pending enrolment (replacing one pending for the same site) and its
        bootstrap certificate, in one transaction."""
        ...

    async def enrollment_take(
        self, site: str, *, token_sha256: str, bootstrap_serial: str, now: datetime
    ) -> Enrollment | None:
        """Consume the pending enrolment of ``site`` if its token hash and bootstrap
        serial match and it has not expired: one atomic conditional delete, so of
        concurrent takes at most one gets it. None (nothing changed) otherwise."""
        ...

    async def enrollments(self) -> list[Enrollment]:
        """The pending enrolments, by site."""
        ...

    async def certificate_add(self, cert: IssuedCertificate) -> None:
        """Record a TLS certificate HQ issued (a serial already recorded is kept)."""
        ...

    async def certificate(self, serial: str) -> IssuedCertificate | None:
        """The TLS certificate HQ issued with ``serial`` (None: not issued by HQ here)."""
        ...

    # -- audit log (gateway/audit.py; the chain: gateway/store/audit_chain.py) ----------
    # Every history row gets its entry in the same transaction (a database trigger).
    async def audit_identify(self, site: str) -> None:
        """Name the actor of automatic entries from now on: this store's site id."""
        ...

    async def audit_append(self, draft: AuditDraft) -> AuditEntry:
        """Append one entry after the last one, in its own transaction."""
        ...

    async def audit_head(self) -> AuditEntry | None:
        """The last entry (None: the log is empty)."""
        ...

    async def audit_entries(self, *, after: int = 0, limit: int = 1000) -> list[AuditEntry]:
        """Entries with seq > ``after`` in seq order, at most ``limit``."""
        ...

    async def audit_checkpoint_add(self, checkpoint: AuditCheckpoint, entry: AuditDraft) -> bool:
        """Store ``checkpoint`` and append ``entry`` (its record) in one transaction;
        False (nothing stored) if there is a checkpoint at that seq already."""
        ...

    async def audit_checkpoints(
        self, *, after: int = 0, limit: int = 1000
    ) -> list[AuditCheckpoint]:
        """Checkpoints with seq > ``after`` in seq order, at most ``limit``."""
        ...

    async def audit_last_checkpoint(self) -> AuditCheckpoint | None: ...

    async def audit_witness(self, site: str) -> Witness | None:
        """The witness row of ``site`` (HQ: what it witnessed of that site; a mission:
        HQ's latest statement about its own chain), or None."""
        ...

    async def audit_witness_save(
        self, witness: Witness, *, expect_seq: int | None, entry: AuditDraft | None = None
    ) -> bool:
        """Write ``witness`` as the row of its site if that row's seq is ``expect_seq``
        (None: there is no row yet), and append ``entry`` (if any) in the same
        transaction; False (nothing written) when another writer got there first."""
        ...
