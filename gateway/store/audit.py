"""The audit log part of the store: entries, checkpoints, HQ's witness records.

One implementation for both backends, over the store's driver (driver.py) and
sql/queries/audit*.sql. Only appending differs, by strategy:

- SQLite: the store's single writer holds the chain's end (``BEGIN IMMEDIATE``), so an
  entry is chained here in Python and inserted; the ``history_audit`` trigger hashes
  history rows with the functions sqlite_audit.py registers on the connection.
- PostgreSQL: the SQL function ``valise_audit_append`` (sql/postgres/v3_audit.sql)
  hashes in the database and takes the chain's advisory lock, so every process sharing
  the schema extends one linear chain; history reaches it by a deferred trigger.
"""

from __future__ import annotations

from datetime import datetime

from gateway.store._common import aware, check_limit
from gateway.store.audit_chain import (
    CHECKPOINT_ACTION,
    ZERO_HASH,
    AuditCheckpoint,
    AuditDraft,
    AuditEntry,
    Witness,
    chain,
)
from gateway.store.driver import Conn, OnDriver, Row, opt_when, when
from gateway.store.queries import Queries
from gateway.store.records import StoreError


def _entry(r: Row) -> AuditEntry:
    return AuditEntry(int(r[0]), when(r[1]), r[2], r[3], r[4], r[5], r[6], bytes(r[7]), bytes(r[8]))


def _checkpoint(r: Row) -> AuditCheckpoint:
    token = None if r[5] is None else bytes(r[5])
    return AuditCheckpoint(int(r[0]), bytes(r[1]), when(r[2]), r[3], bytes(r[4]), token)


def _witness(r: Row) -> Witness:
    return Witness(
        r[0],
        int(r[1]),
        bytes(r[2]),
        when(r[3]),
        r[4],
        bytes(r[5]),
        r[6],
        when(r[7]),
        r[8],
        bytes(r[9]),
        r[10],
        int(r[11]),
        bytes(r[12]),
        opt_when(r[13]),
    )


def _witness_params(w: Witness) -> dict[str, object]:
    conflict_at: datetime | None = None
    if w.conflict_at is not None:
        conflict_at = aware(w.conflict_at, "conflict time")
    return {
        "site": w.site,
        "seq": w.seq,
        "hash": w.hash,
        "at": aware(w.at, "checkpoint time"),
        "signer": w.signer,
        "signature": w.signature,
        "witness": w.witness,
        "witnessed_at": aware(w.witnessed_at, "witness time"),
        "witness_signer": w.witness_signer,
        "witness_signature": w.witness_signature,
        "conflict": w.conflict,
        "conflict_seq": w.conflict_seq,
        "conflict_hash": w.conflict_hash,
        "conflict_at": conflict_at,
    }


async def append_entry(c: Conn, q: Queries, draft: AuditDraft) -> AuditEntry:
    """Append ``draft`` after the last entry, inside the caller's transaction (the
    strategy per backend: see the module docstring)."""
    d = draft
    fields = {"at": aware(d.at, "audit time"), "actor": d.actor, "action": d.action}
    fields |= {"subject": d.subject, "result": d.result, "detail": d.detail}
    if q.backend == "postgres":
        row = await c.fetchrow(q.append, **fields)
        if row is None:  # pragma: no cover - the function returns the entry
            raise StoreError("the audit log appended nothing")
        return _entry(row)
    last = await c.fetchrow(q.last_link)
    seq, prev = (1, ZERO_HASH) if last is None else (int(last[0]) + 1, bytes(last[1]))
    entry = chain(d, seq, prev)
    await c.execute(q.append, **fields, seq=entry.seq, prev=entry.prev, hash=entry.hash)
    return entry


class Audit(OnDriver):
    """The audit log methods of the Store protocol."""

    async def audit_identify(self, site: str) -> None:
        q = self._sql("audit")

        async def read(c: Conn) -> object:
            return await c.fetchval(q.site)

        async def tx(c: Conn) -> None:
            await c.execute(q.identify, site=site)

        if await self._db.read(read) != site:
            await self._db.transaction(tx)

    async def audit_append(self, draft: AuditDraft) -> AuditEntry:
        q = self._sql("audit")
        aware(draft.at, "audit time")

        async def tx(c: Conn) -> AuditEntry:
            return await append_entry(c, q, draft)

        return await self._db.transaction(tx)

    async def audit_head(self) -> AuditEntry | None:
        q = self._sql("audit")

        async def read(c: Conn) -> AuditEntry | None:
            row = await c.fetchrow(q.head)
            return None if row is None else _entry(row)

        return await self._db.read(read)

    async def audit_entries(self, *, after: int = 0, limit: int = 1000) -> list[AuditEntry]:
        q = self._sql("audit")
        check_limit(limit)

        async def read(c: Conn) -> list[AuditEntry]:
            return [_entry(r) for r in await c.fetch(q.entries, after=after, limit=limit)]

        return await self._db.read(read)

    async def audit_checkpoint_add(self, checkpoint: AuditCheckpoint, entry: AuditDraft) -> bool:
        cp, q = checkpoint, self._sql("audit")
        at = aware(cp.at, "checkpoint time")
        aware(entry.at, "audit time")
        if entry.action != CHECKPOINT_ACTION:
            raise StoreError(f"a checkpoint is recorded as {CHECKPOINT_ACTION}")

        async def tx(c: Conn) -> bool:
            stored = await c.execute(
                q.checkpoint_add,
                seq=cp.seq,
                hash=cp.hash,
                at=at,
                signer=cp.signer,
                signature=cp.signature,
                token=cp.token,
            )
            if not stored:
                return False
            await append_entry(c, q, entry)
            return True

        return await self._db.transaction(tx)

    async def audit_checkpoints(
        self, *, after: int = 0, limit: int = 1000
    ) -> list[AuditCheckpoint]:
        q = self._sql("audit")
        check_limit(limit)

        async def read(c: Conn) -> list[AuditCheckpoint]:
            return [_checkpoint(r) for r in await c.fetch(q.checkpoints, after=after, limit=limit)]

        return await self._db.read(read)

    async def audit_last_checkpoint(self) -> AuditCheckpoint | None:
        q = self._sql("audit")

        async def read(c: Conn) -> AuditCheckpoint | None:
            row = await c.fetchrow(q.last_checkpoint)
            return None if row is None else _checkpoint(row)

        return await self._db.read(read)

    async def audit_witness(self, site: str) -> Witness | None:
        q = self._sql("audit")

        async def read(c: Conn) -> Witness | None:
            row = await c.fetchrow(q.witness, site=site)
            return None if row is None else _witness(row)

        return await self._db.read(read)

    async def audit_witness_save(
        self, witness: Witness, *, expect_seq: int | None, entry: AuditDraft | None = None
    ) -> bool:
        q, params = self._sql("audit"), _witness_params(witness)
        if entry is not None:
            aware(entry.at, "audit time")

        async def tx(c: Conn) -> bool:
            if expect_seq is None:
                done = await c.execute(q.witness_add, **params)
            else:
                done = await c.execute(q.witness_update, **params, expect_seq=expect_seq)
            if not done:
                return False
            if entry is not None:
                await append_entry(c, q, entry)
            return True

        return await self._db.transaction(tx)
