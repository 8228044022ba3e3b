"""The store's consumer protocols for messages: outbound, receipts, inbound, change
notices, the operator (gateway.store.base.Store inherits them all; rules there)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol

from gateway.store.records import (
    Acceptance,
    Claimed,
    Closed,
    Destination,
    EnvelopeRecord,
    InboundOutcome,
    InboxItem,
    InState,
    KeptReceipts,
    MessageRoute,
    QueueEntry,
    ReceiptOutcome,
    ReceiptRecord,
    SentMessage,
    Settled,
    Transition,
)


class OutboundStore(Protocol):
    """Accepting and sending on: what the dispatcher and the hop handlers use."""

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
        self,
        message_id: str,
        peer: str | None,
        *,
        reason: str,
        now: datetime,
        owner: str | None = None,
    ) -> Closed | None:
        """Mark the delivery (or, with peer None, every delivery of the message) failed,
        and close the open destinations routed through it (peer None: all of them).
        ``owner``: a courier's answer for its try, which counts only while the delivery
        is still ``sending`` under its lease (not after the copy was replaced meanwhile:
        review 10c F1). None if nothing changed. Raises StoreError for an unknown message."""
        ...

    async def expire(self, *, now: datetime) -> list[Closed]:
        """Fail every undelivered delivery whose envelope has expired, and close its open
        destinations (the origin: every open one, forwarded too; a hub: those whose hop
        row failed now); one Closed per message changed, by message id."""
        ...


class ReceiptStore(Protocol):
    """Receipts and destinations: what the receipt paths and the evidence export use."""

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

    async def kept_receipts_to_recheck(self) -> KeptReceipts:
        """The rows the v11 migration left open to re-check the receipt kept for them
        before v11 (reason RECHECK_REASON; gateway/store/migrate_v11.py), and those
        receipts (chosen as the migration chose them, by their plain heads). Nothing
        past one read of the open rows when there are none."""
        ...

    async def settle_kept_receipts(
        self,
        verified: Sequence[tuple[ReceiptRecord, datetime]],
        refused: Sequence[tuple[str, str]],
        unconfirmed: Sequence[tuple[str, str, str]],
        *,
        now: datetime,
    ) -> list[ReceiptOutcome]:
        """In ONE transaction: record each ``verified`` receipt as :meth:`record_receipts`
        does (one outcome per item, in order), its row's ``receipt_at`` then the time
        given (when the old gateway acknowledged it); append to each ``refused``
        (receipt id, reason) receipt envelope's history an ``acked`` row with that
        reason; give each waiting row of ``unconfirmed`` (message_id, site, reason) that
        reason, leaving it open, so that it no longer waits. Rows not waiting are left
        as they are."""
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

    async def superseded_heads(self, message_id: str) -> dict[bytes, bytes]:
        """The framed heads (prefix and head XML) of the earlier copies of this message
        that ``replace_sealed`` replaced here from schema v12, by their digest."""
        ...

    async def message_routes(self, message_ids: Sequence[str]) -> dict[str, MessageRoute]:
        """The origin and destinations of each of these messages stored here, whatever
        its origin (a relay's check of a receipt: gateway/relay/hop.py check_receipt)."""
        ...


class InboundStore(Protocol):
    """The destination's inbox: what the inbound pipeline and the bridges use."""

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


class WatchStore(Protocol):
    """Change notices: what wakes the workers when another process commits."""

    # -- change notices ------------------------------------------------------------
    async def watch(self, on_change: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Call ``on_change`` (on the event loop) soon after another process queued work
        in this store (``accept``: the CLI, another process's bridge); return the stop
        function. In-process callers are woken directly (SiteContext.notify)."""
        ...


class OperatorStore(Protocol):
    """The operator's view and actions: the CLI, the status pages, the health checks."""

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
