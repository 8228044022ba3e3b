"""The store's consumer protocols for the services around messages: integrators,
trust material, enrolments, the audit log (gateway.store.base.Store inherits them all)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from gateway.store.audit_chain import AuditCheckpoint, AuditDraft, AuditEntry, Witness
from gateway.store.enrollments import Enrollment, IssuedCertificate
from gateway.store.records import (
    ClaimedWebhook,
    DirectoryFetch,
    Integrator,
    PendingStamp,
    Submission,
    TimestampRecord,
    WebhookEntry,
    WebhookEvent,
)


class IntegratorStore(Protocol):
    """The HTTP API's tables: integrators, submissions, the webhook outbox."""

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


class TrustStore(Protocol):
    """Time-stamp tokens, re-sealing and escrows, hop acks, directory fetches."""

    # -- time-stamp tokens (gateway/proof/timestamping.py) ------------------------
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

    # -- re-sealing (gateway/relay/reseal.py) ------------------------------------------
    async def escrow(self, message_id: str) -> bytes | None:
        """The escrowed content key of an envelope this site sealed (None: none kept)."""
        ...

    async def received_heads(self, *, after: str, limit: int) -> list[tuple[str, bytes]]:
        """(message id, framing prefix and head) of up to ``limit`` inbound items still
        ``received`` (to open here), by message id after ``after`` ("" for the first page)."""
        ...

    async def open_escrows(self, *, receipts_since: datetime) -> list[tuple[str, bytes]]:
        """(message id, escrow) of each envelope sealed here not yet delivered (no
        receipt), and of each receipt of ours created since ``receipts_since`` (its hop
        ack is its receipt, but the hub may still hold it: gateway/relay/receipt_reseal.py)."""
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
        caller checked the replacement against: gateway/relay/reseal.py). With ``held_for``,
        only if a delivery is held with a reason starting so (a relay taking a re-sealed
        copy in place of the one it held). The replaced copy's digest is kept
        (``superseded_digests``). Returns the deliveries requeued; 0 and nothing
        changed otherwise."""
        ...

    async def renew_hop_ack(
        self, message_id: str, *, digest: bytes, old: bytes, new: bytes
    ) -> bool:
        """Store ``new`` as the first hop acknowledgement of the envelope in place of
        ``old`` (one signed with a key of ours no longer usable: gateway/relay/ack_renewal.py),
        only if the stored envelope is still the one of ``digest`` and its ack still
        ``old``. True if it was replaced."""
        ...

    # -- directory fetches (HQ) --------------------------------------------------------
    async def directory_fetched(self, site: str, serial: int, *, now: datetime) -> None:
        """Record that ``site`` fetched directory ``serial`` (the highest one is kept)."""
        ...

    async def directory_fetches(self) -> list[DirectoryFetch]: ...


class EnrollStore(Protocol):
    """HQ's pending enrolments and the TLS certificates it issued."""

    # -- enrolments and the TLS certificates HQ issued (gateway/trust/enroll.py) -------
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


class AuditStore(Protocol):
    """The audit log, its checkpoints and HQ's witness records."""

    # -- audit log (gateway/proof/audit.py; the chain: gateway/store/audit_chain.py) ----
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
