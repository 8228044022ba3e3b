"""The audit log part of the in-memory store (as audit.py for the SQL backends).

Every history row gets its entry as it is written (memory_tables.add_history, the SQL
backends' ``history_audit`` trigger), hashed by gateway/store/audit_chain.py as the
SQL backends hash it; appends are serialised by the store's lock.
"""

from __future__ import annotations

from dataclasses import replace

from gateway.store._common import check_limit
from gateway.store.audit_chain import (
    CHECKPOINT_ACTION,
    AuditCheckpoint,
    AuditDraft,
    AuditEntry,
    Witness,
)
from gateway.store.memory_tables import MemoryTables, Tables, append_entry, opt_bytes, utc
from gateway.store.records import StoreError


def _draft(d: AuditDraft) -> AuditDraft:
    return replace(d, at=utc(d.at, "audit time"))


def _witness(w: Witness) -> Witness:
    return replace(
        w,
        hash=bytes(w.hash),
        at=utc(w.at),
        signature=bytes(w.signature),
        witnessed_at=utc(w.witnessed_at),
        witness_signature=bytes(w.witness_signature),
        conflict_hash=bytes(w.conflict_hash),
        conflict_at=None if w.conflict_at is None else utc(w.conflict_at),
    )


class MemoryAudit(MemoryTables):
    """The audit log methods of the Store protocol."""

    async def audit_identify(self, site: str) -> None:
        def tx(t: Tables) -> None:
            t.audit_site = site

        if await self._read(lambda t: t.audit_site) != site:
            await self._write(tx)

    async def audit_append(self, draft: AuditDraft) -> AuditEntry:
        d = _draft(draft)
        return await self._write(lambda t: replace(append_entry(t, d)))

    async def audit_head(self) -> AuditEntry | None:
        def q(t: Tables) -> AuditEntry | None:
            return replace(t.audit[-1]) if t.audit else None

        return await self._read(q)

    async def audit_entries(self, *, after: int = 0, limit: int = 1000) -> list[AuditEntry]:
        check_limit(limit)

        def q(t: Tables) -> list[AuditEntry]:
            # seq n is at index n - 1 (seq starts at 1 and has no gaps).
            rows = t.audit[max(after, 0) :]
            return [replace(e) for e in rows[:limit]]

        return await self._read(q)

    async def audit_checkpoint_add(self, checkpoint: AuditCheckpoint, entry: AuditDraft) -> bool:
        cp = replace(
            checkpoint,
            hash=bytes(checkpoint.hash),
            at=utc(checkpoint.at, "checkpoint time"),
            signature=bytes(checkpoint.signature),
            token=opt_bytes(checkpoint.token),
        )
        d = _draft(entry)
        if d.action != CHECKPOINT_ACTION:
            raise StoreError(f"a checkpoint is recorded as {CHECKPOINT_ACTION}")

        def tx(t: Tables) -> bool:
            if cp.seq in t.checkpoints:
                return False
            t.checkpoints[cp.seq] = cp
            append_entry(t, d)
            return True

        return await self._write(tx)

    async def audit_checkpoints(
        self, *, after: int = 0, limit: int = 1000
    ) -> list[AuditCheckpoint]:
        check_limit(limit)

        def q(t: Tables) -> list[AuditCheckpoint]:
            rows = [t.checkpoints[s] for s in sorted(t.checkpoints) if s > after]
            return [replace(c) for c in rows[:limit]]

        return await self._read(q)

    async def audit_last_checkpoint(self) -> AuditCheckpoint | None:
        def q(t: Tables) -> AuditCheckpoint | None:
            return replace(t.checkpoints[max(t.checkpoints)]) if t.checkpoints else None

        return await self._read(q)

    async def audit_witness(self, site: str) -> Witness | None:
        def q(t: Tables) -> Witness | None:
            w = t.witnesses.get(site)
            return None if w is None else replace(w)

        return await self._read(q)

    async def audit_witness_save(
        self, witness: Witness, *, expect_seq: int | None, entry: AuditDraft | None = None
    ) -> bool:
        w = _witness(witness)
        d = None if entry is None else _draft(entry)

        def tx(t: Tables) -> bool:
            old = t.witnesses.get(w.site)
            if (old is not None) if expect_seq is None else (old is None or old.seq != expect_seq):
                return False
            t.witnesses[w.site] = w
            if d is not None:
                append_entry(t, d)
            return True

        return await self._write(tx)
