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

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol

from gateway.store.audit_chain import AuditCheckpoint, AuditDraft, AuditEntry, Witness
from gateway.store.enrollments import Enrollment, IssuedCertificate
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


__all__ = [
    "TODO_STATES",
    "Acceptance",
    "Claimed",
    "ClaimedWebhook",
    "Closed",
    "DestState",
    "Destination",
    "DirectoryFetch",
    "EnvelopeRecord",
    "InState",
    "InboundOutcome",
    "InboxItem",
    "Integrator",
    "KeptReceipt",
    "KeptReceipts",
    "MessageRoute",
    "OutState",
    "PendingStamp",
    "QueueEntry",
    "ReceiptOutcome",
    "ReceiptRecord",
    "SentMessage",
    "Settled",
    "Store",
    "StoreError",
    "Submission",
    "TimestampRecord",
    "Transition",
    "WebhookEntry",
    "WebhookEvent",
]
