"""The Store protocol every backend implements; the values it trades in are in records.py.

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

from typing import Protocol

from gateway.store.protocols_messages import (
    InboundStore,
    OperatorStore,
    OutboundStore,
    ReceiptStore,
    WatchStore,
)
from gateway.store.protocols_services import AuditStore, EnrollStore, IntegratorStore, TrustStore
from gateway.store.records import (
    TODO_STATES,
    Acceptance,
    Claimed,
    ClaimedWebhook,
    Closed,
    Destination,
    DestState,
    DirectoryFetch,
    EnvelopeRecord,
    InboundOutcome,
    InboxItem,
    InState,
    Integrator,
    KeptReceipt,
    KeptReceipts,
    MessageRoute,
    OutState,
    PendingStamp,
    QueueEntry,
    ReceiptOutcome,
    ReceiptRecord,
    SentMessage,
    Settled,
    StoreError,
    Submission,
    TimestampRecord,
    Transition,
    WebhookEntry,
    WebhookEvent,
)


class Store(
    OutboundStore,
    ReceiptStore,
    InboundStore,
    WatchStore,
    OperatorStore,
    IntegratorStore,
    TrustStore,
    EnrollStore,
    AuditStore,
    Protocol,
):
    """The durable queue and inbox of one site: every consumer protocol above, and
    closing. A consumer that needs only part of it may ask for that protocol."""

    async def close(self) -> None: ...


__all__ = [
    "TODO_STATES",
    "Acceptance",
    "AuditStore",
    "Claimed",
    "ClaimedWebhook",
    "Closed",
    "DestState",
    "Destination",
    "DirectoryFetch",
    "EnrollStore",
    "EnvelopeRecord",
    "InState",
    "InboundOutcome",
    "InboundStore",
    "InboxItem",
    "Integrator",
    "IntegratorStore",
    "KeptReceipt",
    "KeptReceipts",
    "MessageRoute",
    "OperatorStore",
    "OutState",
    "OutboundStore",
    "PendingStamp",
    "QueueEntry",
    "ReceiptOutcome",
    "ReceiptRecord",
    "ReceiptStore",
    "SentMessage",
    "Settled",
    "Store",
    "StoreError",
    "Submission",
    "TimestampRecord",
    "Transition",
    "TrustStore",
    "WatchStore",
    "WebhookEntry",
    "WebhookEvent",
]
