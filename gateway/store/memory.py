"""The in-memory store: the whole Store protocol in this process's memory, for tests and
``valise`` development use. It does no I/O and keeps nothing when the process ends.

Rules (the observable semantics are those of the SQLite and PostgreSQL stores; the
contract suite, tests/contract/, runs the same assertions on all three):
- The tables are those of the SQL schema (memory_tables.py). A mutating call runs as a
  whole under one asyncio.Lock, on a snapshot it puts back if the call raises: a call
  is one transaction, all or nothing. The bodies are synchronous (no await inside), so
  a read sees either all of a call's changes or none.
- Every call copies values in and out: rows hold only immutable values (the caller's
  bytes are copied), and what a call returns is built afresh, so no caller ever holds a
  reference into the tables.
- Times are kept as aware UTC datetimes (microseconds, as both SQL backends keep them);
  a naive one is refused with StoreError.
- Every history row gets its audit entry in the same call, chained and hashed as the
  SQL backends chain it (gateway/store/audit_chain.py).
- ``watch`` never calls back: no other process can queue work in this store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from gateway.store._common import (
    EXPIRED_REASON,
    RECHECK_REASON,
    TOMBSTONE_GRACE,
    UNDELIVERED,
    check_record,
    reclaim_reason,
)
from gateway.store.memory_audit import MemoryAudit
from gateway.store.memory_common import accept_one, fail_undelivered
from gateway.store.memory_destinations import (
    MemoryDestinations,
    close_open,
    record_ack,
    record_receipt_rows,
)
from gateway.store.memory_inbound import MemoryInbound
from gateway.store.memory_integrators import MemoryIntegrators
from gateway.store.memory_operator import MemoryOperator
from gateway.store.memory_tables import Delivery, Envelope, Tables, add_history, set_state, utc
from gateway.store.memory_trust import MemoryTrust
from gateway.store.records import (
    Acceptance,
    Claimed,
    Closed,
    EnvelopeRecord,
    OutState,
    ReceiptRecord,
    StoreError,
)

if TYPE_CHECKING:
    from gateway.store.base import Store

T = TypeVar("T")


def _due(d: Delivery, at: datetime) -> bool:
    """Claimable at ``at``: queued, deferred and due, or sending under an expired lease."""
    if d.state == OutState.QUEUED.value:
        return True
    if d.state == OutState.DEFERRED.value:
        return d.next_attempt is not None and d.next_attempt <= at
    if d.state == OutState.SENDING.value:
        return d.lease_until is not None and d.lease_until < at
    return False


def _expiring(t: Tables, mid: str, peer: str, d: Delivery, env: Envelope) -> bool:
    """A hop row expire() fails: undelivered; at the origin, also forwarded with a
    destination through it still open (without destination rows: never receipted)."""
    if d.state in UNDELIVERED:
        return True
    if d.state != OutState.FORWARDED.value or env.received_from is not None:
        return False
    rows = t.rows_of(mid)
    if any(r.hop == peer and r.outcome == "open" and r.reason != RECHECK_REASON for _, r in rows):
        return True
    return not rows and env.receipt is None


class MemoryStore(
    MemoryInbound,
    MemoryOperator,
    MemoryIntegrators,
    MemoryTrust,
    MemoryAudit,
    MemoryDestinations,
):
    """:class:`~gateway.store.base.Store` in this process's memory."""

    def __init__(self) -> None:
        self._t = Tables()
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls) -> MemoryStore:
        """A new, empty store (as the other backends open theirs)."""
        return cls()

    async def close(self) -> None:
        self._closed = True

    # -- plumbing ---------------------------------------------------------------
    def _live(self) -> Tables:
        if self._closed:
            raise StoreError("the store is closed")
        return self._t

    async def _read(self, fn: Callable[[Tables], T]) -> T:
        return fn(self._live())

    async def _write(self, fn: Callable[[Tables], T]) -> T:
        """Run ``fn`` as one transaction: under the lock, undone if it raises."""
        async with self._lock:
            tables = self._live()
            saved = tables.clone()
            try:
                return fn(tables)
            except BaseException:
                self._t = saved
                raise

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
        check_record(record)
        at = utc(now)
        hops = list(next_hops)

        def tx(t: Tables) -> Acceptance:
            result = accept_one(t, record, hops, deliver_here, hop_ack, at)
            if result.new and held is not None:
                set_state(
                    t,
                    record.message_id,
                    to=OutState.HELD.value,
                    from_states=[OutState.QUEUED.value],
                    reason=held,
                    at=at,
                )
            return result

        return await self._write(tx)

    async def accept_many(
        self,
        items: Sequence[tuple[EnvelopeRecord, Sequence[str], bool, bytes | None]],
        *,
        now: datetime,
    ) -> list[Acceptance]:
        batch = [(r, list(h), d, a) for r, h, d, a in items]
        for record, _, _, _ in batch:
            check_record(record)
        at = utc(now)
        if not batch:
            return []
        return await self._write(lambda t: [accept_one(t, r, h, d, a, at) for r, h, d, a in batch])

    async def get_envelope(self, message_id: str) -> EnvelopeRecord | None:
        def q(t: Tables) -> EnvelopeRecord | None:
            env = t.envelopes.get(message_id)
            return None if env is None else env.record()

        return await self._read(q)

    # -- outbound work ----------------------------------------------------------
    async def claim(
        self, *, peer: str, owner: str, limit: int, lease_seconds: float, now: datetime
    ) -> list[Claimed]:
        at = utc(now)
        until = at + timedelta(seconds=lease_seconds)
        if limit <= 0:
            return []

        def tx(t: Tables) -> list[Claimed]:
            due = sorted(
                (d.rank, d.created, mid)
                for (mid, p), d in t.deliveries.items()
                if p == peer and _due(d, at)
            )
            out = []
            for _, _, mid in due[:limit]:
                d, env = t.deliveries[(mid, peer)], t.envelopes[mid]
                why = reclaim_reason(d.state, d.lease_owner)
                d.state, d.lease_owner, d.lease_until = OutState.SENDING.value, owner, until
                d.attempts, d.updated_at = d.attempts + 1, at
                add_history(t, mid, peer, OutState.SENDING.value, why, at)
                out.append(
                    Claimed(
                        mid,
                        peer,
                        d.attempts,
                        env.data,
                        env.expires,
                        env.origin,
                        env.digest,
                        env.doc_class,
                        env.chain,
                    )
                )
            return out

        return await self._write(tx)

    async def peers_with_work(self, *, now: datetime) -> list[str]:
        at = utc(now)

        def q(t: Tables) -> list[str]:
            return sorted({p for (_, p), d in t.deliveries.items() if _due(d, at)})

        return await self._read(q)

    async def next_due(self, *, now: datetime) -> datetime | None:
        utc(now)

        def q(t: Tables) -> datetime | None:
            due = [
                d.next_attempt
                for d in t.deliveries.values()
                if d.state == OutState.DEFERRED.value and d.next_attempt is not None
            ]
            return min(due, default=None)

        return await self._read(q)

    async def forwarded(
        self,
        items: Sequence[tuple[str, str]],
        *,
        owner: str,
        now: datetime,
        reason: str = "",
        receipts: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        at = utc(now)
        pairs = list(items)
        proofs = list(receipts)

        def tx(t: Tables) -> None:
            for message_id, peer in pairs:
                d = t.deliveries.get((message_id, peer))
                if d is None or d.state != OutState.SENDING.value or d.lease_owner != owner:
                    continue
                d.state, d.lease_owner, d.lease_until = OutState.FORWARDED.value, None, None
                d.next_attempt, d.last_reason, d.updated_at = None, reason, at
                add_history(t, message_id, peer, OutState.FORWARDED.value, reason, at)
            for message_id, proof in proofs:
                record_ack(t, message_id, proof, at)

        if pairs or proofs:
            await self._write(tx)

    async def defer(
        self,
        message_id: str,
        peer: str,
        *,
        owner: str,
        reason: str,
        next_attempt: datetime,
        now: datetime,
    ) -> None:
        at = utc(now)
        when = utc(next_attempt)

        def tx(t: Tables) -> None:
            d = t.deliveries.get((message_id, peer))
            if d is None or d.state != OutState.SENDING.value or d.lease_owner != owner:
                return
            d.state, d.next_attempt, d.lease_owner = OutState.DEFERRED.value, when, None
            d.lease_until, d.last_reason, d.updated_at = None, reason, at
            add_history(t, message_id, peer, OutState.DEFERRED.value, reason, at)

        await self._write(tx)

    async def fail(
        self,
        message_id: str,
        peer: str | None,
        *,
        reason: str,
        now: datetime,
        owner: str | None = None,
    ) -> Closed | None:
        at = utc(now)
        return await self._write(
            lambda t: fail_undelivered(t, message_id, peer, reason, at, owner=owner)
        )

    async def expire(self, *, now: datetime) -> list[Closed]:
        at = utc(now)

        def tx(t: Tables) -> list[Closed]:
            failed: dict[str, list[str]] = {}
            for (mid, peer), d in sorted(t.deliveries.items(), key=lambda kv: kv[0]):
                env = t.envelopes[mid]
                if env.expires <= at and _expiring(t, mid, peer, d, env):
                    d.state, d.lease_owner, d.lease_until = OutState.FAILED.value, None, None
                    d.last_reason, d.updated_at = EXPIRED_REASON, at
                    add_history(t, mid, peer, OutState.FAILED.value, EXPIRED_REASON, at)
                    failed.setdefault(mid, []).append(peer)
            # The origin closes every open destination of an expired message (forwarded
            # ones too); a hub only those whose hop row failed now. A row waiting for its
            # kept receipt's re-check (RECHECK_REASON) waits for it (close_open).
            origin = {
                mid
                for mid, env in t.envelopes.items()
                if env.expires <= at
                and env.received_from is None
                and env.completed_at is None
                and any(
                    r.outcome == "open" and r.reason != RECHECK_REASON for _, r in t.rows_of(mid)
                )
            }
            closed = []
            for mid in sorted(origin | set(failed)):
                hops = None if mid in origin else failed[mid]
                closed.append(close_open(t, mid, hops=hops, reason=EXPIRED_REASON, at=at))
            # Tombstones of deleted messages are kept until their expiry (and a grace).
            for mid, stone in list(t.tombstones.items()):
                if stone.expires <= at - TOMBSTONE_GRACE:
                    del t.tombstones[mid]
            return closed

        return await self._write(tx)

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
        at = utc(now)

        def tx(t: Tables) -> bool:
            if message_id not in t.envelopes:
                raise StoreError(f"unknown message {message_id}")
            sites = [s for s, _ in t.rows_of(message_id)]
            which = site
            if which is None and len(sites) > 1:
                raise StoreError(
                    f"{message_id} has {len(sites)} destinations: name the one that receipted it"
                )
            if which is None and sites:
                which = sites[0]
            item = ReceiptRecord(
                message_id, which or "", receipt_digest or b"", receipt_for, receipt
            )
            (done,) = record_receipt_rows(t, [item], at, legacy=which is None)
            if done.status == "unknown":
                raise StoreError(f"{which} is not a destination of {message_id} here")
            return done.status == "recorded"

        return await self._write(tx)

    async def receipt(self, message_id: str) -> bytes | None:
        def q(t: Tables) -> bytes | None:
            env = t.envelopes.get(message_id)
            if env is None:
                return None
            if env.receipt is not None:
                return env.receipt
            rows = t.rows_of(message_id)
            return rows[0][1].receipt if len(rows) == 1 else None

        return await self._read(q)

    # -- change notices -----------------------------------------------------------
    async def watch(self, on_change: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """No other process shares this store: nothing ever comes from elsewhere, and
        in-process callers are woken directly (SiteContext.notify)."""
        self._live()

        async def stop() -> None:
            return None

        return stop


if TYPE_CHECKING:
    # mypy checks MemoryStore against the protocol, method by method.
    _CONFORMS: type[Store] = MemoryStore

    def _conforms(store: MemoryStore) -> Store:
        return store
