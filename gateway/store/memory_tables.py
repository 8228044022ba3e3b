"""The in-memory store's tables and row primitives (gateway/store/memory.py).

The tables mirror the SQL schema (sql/sqlite/*.sql): one dict per table, keyed by its
primary key, holding small mutable row objects (or frozen records where a row never
changes in place). Every value in a row is immutable (str, bytes, datetime, tuples), so
:meth:`Tables.clone` (a copy of each row) is a full snapshot: a call that raises halfway
is rolled back by putting the snapshot back (memory.py ``_write``).

The helpers take the tables inside a call the store serialises; they are the memory
counterparts of rows.py (history, state moves) and of the ``history_audit``
trigger (every history row gets its audit entry, chained as the SQL backends chain it).
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from gateway.store._common import aware
from gateway.store.audit_chain import (
    UNKNOWN_SITE,
    ZERO_HASH,
    AuditCheckpoint,
    AuditDraft,
    AuditEntry,
    Witness,
    chain,
    history_detail,
)
from gateway.store.enrollments import Enrollment, IssuedCertificate
from gateway.store.records import (
    DirectoryFetch,
    EnvelopeRecord,
    Submission,
    TimestampRecord,
    Transition,
)

T = TypeVar("T")


def utc(moment: datetime, what: str = "time") -> datetime:
    """``moment`` in UTC (StoreError for a naive one), as the SQL backends store it."""
    return aware(moment, what)


def opt_bytes(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


@dataclass(slots=True)
class Envelope:
    message_id: str
    origin: str
    destinations: tuple[str, ...]
    digest: bytes
    created: datetime
    expires: datetime
    priority: str
    received_from: str | None
    data: bytes
    hop_ack: bytes | None
    accepted_at: datetime
    doc_class: str
    chain: bytes | None
    escrow: bytes | None
    receipt: bytes | None = None
    superseded: tuple[bytes, ...] = ()
    completed_at: datetime | None = None
    stamp_pending: bool = True

    @property
    def size(self) -> int:
        return len(self.data)

    def record(self) -> EnvelopeRecord:
        """The envelope as get_envelope returns it (no escrow, routes or answers)."""
        return EnvelopeRecord(
            message_id=self.message_id,
            origin=self.origin,
            destinations=self.destinations,
            digest=self.digest,
            created=self.created,
            expires=self.expires,
            priority=self.priority,
            received_from=self.received_from,
            data=self.data,
            doc_class=self.doc_class,
            chain=self.chain,
        )


@dataclass(slots=True)
class Delivery:
    state: str
    updated_at: datetime
    rank: int
    created: datetime
    attempts: int = 0
    next_attempt: datetime | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    last_reason: str = ""


@dataclass(slots=True)
class Inbound:
    state: str
    received_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class Dest:
    hop: str | None
    updated_at: datetime
    outcome: str = "open"
    reason: str = ""
    receipt_digest: bytes | None = None
    receipt_for: bytes | None = None
    receipt_at: datetime | None = None
    receipt: bytes | None = None


@dataclass(frozen=True, slots=True)
class History:
    id: int
    message_id: str
    peer: str | None
    state: str
    reason: str
    at: datetime

    def transition(self) -> Transition:
        return Transition(self.at, self.peer, self.state, self.reason)


@dataclass(frozen=True, slots=True)
class Tombstone:
    expires: datetime
    deleted_at: datetime
    reason: str


@dataclass(slots=True)
class IntegratorRow:
    token_sha256: str
    webhook_url: str | None
    webhook_secret: str | None
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(slots=True)
class WebhookRow:
    integrator: str
    kind: str
    message_id: str
    body: bytes
    next_attempt: datetime
    created_at: datetime
    updated_at: datetime
    state: str = "pending"
    attempts: int = 0
    lease_owner: str | None = None
    lease_until: datetime | None = None
    last_reason: str = ""


# Tables whose rows change in place: a snapshot copies each row.
_MUTABLE_ROWS = ("envelopes", "deliveries", "inbound", "destinations", "integrators", "webhooks")


@dataclass
class Tables:
    """Every table of one in-memory store (the names of the SQL tables)."""

    envelopes: dict[str, Envelope] = field(default_factory=dict)
    deliveries: dict[tuple[str, str], Delivery] = field(default_factory=dict)  # (mid, peer)
    inbound: dict[str, Inbound] = field(default_factory=dict)
    destinations: dict[tuple[str, str], Dest] = field(default_factory=dict)  # (mid, site)
    history: list[History] = field(default_factory=list)
    history_seq: int = 0
    tombstones: dict[str, Tombstone] = field(default_factory=dict)
    superseded_heads: dict[tuple[str, bytes], bytes] = field(default_factory=dict)
    integrators: dict[str, IntegratorRow] = field(default_factory=dict)
    submissions: dict[str, Submission] = field(default_factory=dict)
    webhooks: dict[str, WebhookRow] = field(default_factory=dict)
    timestamps: dict[tuple[str, str, bytes], TimestampRecord] = field(default_factory=dict)
    directory_fetches: dict[str, DirectoryFetch] = field(default_factory=dict)
    enrollments: dict[str, Enrollment] = field(default_factory=dict)
    certificates: dict[str, IssuedCertificate] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    audit_site: str = ""
    checkpoints: dict[int, AuditCheckpoint] = field(default_factory=dict)
    witnesses: dict[str, Witness] = field(default_factory=dict)

    def clone(self) -> Tables:
        """A snapshot: every table copied, every mutable row copied."""
        out = copy.copy(self)
        for name, value in vars(self).items():
            if name in _MUTABLE_ROWS:
                setattr(out, name, {k: copy.copy(v) for k, v in value.items()})
            elif isinstance(value, dict):
                setattr(out, name, dict(value))
            elif isinstance(value, list):
                setattr(out, name, list(value))
        return out

    # -- per-message views (the indexes of the SQL schema) ----------------------------
    def rows_of(self, message_id: str) -> list[tuple[str, Dest]]:
        """The message's destination rows, by site."""
        return sorted(
            (site, row) for (mid, site), row in self.destinations.items() if mid == message_id
        )

    def has_rows(self, message_id: str) -> bool:
        return any(mid == message_id for mid, _ in self.destinations)

    def deliveries_of(self, message_id: str) -> list[tuple[str, Delivery]]:
        """The message's hop rows, by peer."""
        return sorted(
            (peer, row) for (mid, peer), row in self.deliveries.items() if mid == message_id
        )

    def remove_message(self, message_id: str) -> tuple[int, bool, bool]:
        """Delete the envelope and what references it (the SQL ON DELETE CASCADE):
        (deliveries removed, inbound item removed, envelope removed)."""
        hops = [key for key in self.deliveries if key[0] == message_id]
        for key in hops:
            del self.deliveries[key]
        inbound = self.inbound.pop(message_id, None) is not None
        envelope = self.envelopes.pop(message_id, None) is not None
        for key in [k for k in self.destinations if k[0] == message_id]:
            del self.destinations[key]
        for head in [k for k in self.superseded_heads if k[0] == message_id]:
            del self.superseded_heads[head]
        return len(hops), inbound, envelope


def append_entry(t: Tables, draft: AuditDraft) -> AuditEntry:
    """Append ``draft`` after the last audit entry (the chain of audit_chain.py)."""
    last = t.audit[-1] if t.audit else None
    seq, prev = (1, ZERO_HASH) if last is None else (last.seq + 1, last.hash)
    entry = chain(draft, seq, prev)
    t.audit.append(entry)
    return entry


def add_history(
    t: Tables, message_id: str, peer: str | None, state: str, reason: str, at: datetime
) -> None:
    """A history row and its audit entry (the SQL backends' history_audit trigger)."""
    t.history_seq += 1
    row = History(t.history_seq, message_id, peer, state, reason, at)
    t.history.append(row)
    actor = t.audit_site or UNKNOWN_SITE
    detail = history_detail(row.id, peer, reason)
    append_entry(t, AuditDraft(at, actor, state, message_id, "ok", detail))


def set_state(
    t: Tables,
    message_id: str,
    *,
    to: str,
    from_states: Sequence[str],
    reason: str,
    at: datetime,
    next_attempt: datetime | None = None,
    peers: Sequence[str] | None = None,
) -> int:
    """Move the message's deliveries in ``from_states`` (to ``peers`` only, if given) to
    ``to`` (lease dropped); history, by peer."""
    states = {str(s) for s in from_states}
    only = None if peers is None else {str(p) for p in peers}
    moved = 0
    for peer, d in t.deliveries_of(message_id):
        if d.state not in states or (only is not None and peer not in only):
            continue
        d.state, d.next_attempt, d.lease_owner, d.lease_until = to, next_attempt, None, None
        d.last_reason, d.updated_at = reason, at
        add_history(t, message_id, peer, to, reason, at)
        moved += 1
    return moved


class MemoryTables:
    """What every mixin of :class:`gateway.store.memory.MemoryStore` relies on."""

    @abstractmethod
    async def _read(self, fn: Callable[[Tables], T]) -> T: ...  # provided by MemoryStore

    @abstractmethod
    async def _write(self, fn: Callable[[Tables], T]) -> T: ...  # provided by MemoryStore
