"""The values the Store protocol (gateway/store/base.py) trades in: states, records of
envelopes, deliveries, destinations and receipts, the inbox, the HTTP API's tables,
time-stamps and directory fetches. Plain frozen dataclasses; no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


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
    """What one destination of a message shows (derived when read: the ``_state``
    fragment of gateway/store/sql/queries/destinations.sql). ``sending`` shows as
    queued; a delivered hop row whose destination has no receipt yet shows as
    forwarded."""

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
class KeptReceipt:
    """A receipt envelope verified and kept before v11 whose plain head answers a
    destination row waiting for its re-check (Store.kept_receipts_to_recheck)."""

    answers: str  # the message its plain head answers
    site: str  # its signer: the destination
    receipt_id: str  # its own message id (Store.get_envelope reads it)
    acked_at: datetime  # when the old gateway acknowledged it as verified


@dataclass(frozen=True)
class KeptReceipts:
    """The destination rows the v11 migration left waiting for the re-check of a kept
    receipt, and those receipts, acknowledged first, first."""

    rows: tuple[tuple[str, str], ...]  # (message_id, site), by message and site
    kept: tuple[KeptReceipt, ...]


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
    # Whether it was sent from here (received_from IS NULL), and its class: a receipt
    # may answer only a document sent from here (review 11b, F4), not one received here
    # nor a receipt envelope sealed here.
    sent_here: bool
    doc_class: str


@dataclass(frozen=True)
class Acceptance:
    """What accept() did: ``new`` is False for a repeated message id, and for one the
    operator deleted here (``deleted``: a tombstone holds it until it expires, so a
    replayed copy is neither stored nor delivered again). ``refused``: why a new relayed
    receipt envelope was neither stored nor queued, its destination's receipt having
    been recorded here already by another one (the first stands, also when two race)."""

    new: bool
    hop_ack: bytes | None  # the signed hop acknowledgement recorded on first acceptance
    deleted: bool = False
    refused: str | None = None


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
    """An RFC 3161 TimeStampToken kept with a message (gateway/proof/timestamping.py).

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
    loses one); gateway/proof/timestamping.py decides from ``received_from`` and
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
