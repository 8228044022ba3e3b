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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class OutState(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
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


@dataclass(frozen=True)
class Acceptance:
    """What accept() did: ``new`` is False for a repeated message id."""

    new: bool
    hop_ack: bytes | None  # the signed hop acknowledgement recorded on first acceptance


@dataclass(frozen=True)
class Claimed:
    """A unit of outbound work leased to one sender: send ``message_id`` to ``peer``."""

    message_id: str
    peer: str
    attempts: int
    data: bytes
    expires: datetime


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


@dataclass(frozen=True)
class InboxItem:
    message_id: str
    origin: str
    state: str
    received: datetime
    size: int


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
    ) -> Acceptance:
        """Store ``record`` and queue one delivery per next hop, in one transaction.

        ``deliver_here`` also creates the inbound item (state ``received``).
        Idempotent by message id (see the module rules).
        """
        ...

    async def accept_many(
        self,
        items: Sequence[tuple[EnvelopeRecord, Sequence[str], bool, bytes | None]],
        *,
        now: datetime,
    ) -> list[Acceptance]:
        """accept() for several envelopes in ONE transaction (one commit)."""
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
        self, items: Sequence[tuple[str, str]], *, owner: str, now: datetime, reason: str = ""
    ) -> None:
        """Mark (message_id, peer) pairs forwarded (the peer acknowledged)."""
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

    async def fail(self, message_id: str, peer: str | None, *, reason: str, now: datetime) -> None:
        """Mark the delivery (or, with peer None, every delivery of the message) failed."""
        ...

    async def expire(self, *, now: datetime) -> list[str]:
        """Fail every undelivered delivery whose envelope has expired; return their ids."""
        ...

    # -- receipts ---------------------------------------------------------------
    async def delivered(self, message_id: str, *, receipt: bytes, now: datetime) -> bool:
        """Record a verified delivery receipt at the origin; False if already recorded."""
        ...

    async def receipt(self, message_id: str) -> bytes | None: ...

    # -- inbound ----------------------------------------------------------------
    async def inbound_set(
        self, message_id: str, state: InState, *, reason: str, now: datetime
    ) -> None: ...

    async def inbox(self, *, state: InState | None = None, limit: int = 100) -> list[InboxItem]: ...

    # -- operator ---------------------------------------------------------------
    async def hold(self, message_id: str, *, now: datetime, reason: str) -> int: ...
    async def release(self, message_id: str, *, now: datetime, reason: str) -> int: ...
    async def retry(self, message_id: str, *, now: datetime, reason: str) -> int: ...
    async def delete(self, message_id: str, *, now: datetime, reason: str) -> int: ...

    async def queue(
        self, *, peer: str | None = None, state: str | None = None
    ) -> list[QueueEntry]: ...

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
