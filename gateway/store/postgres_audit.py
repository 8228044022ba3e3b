"""The audit log part of the PostgreSQL store.

A mixin of :class:`gateway.store.postgres.PostgresStore` (``_read`` / ``_write``: one
transaction each, retried on a deadlock).

History rows reach the log through the deferred ``history_audit`` trigger and every
entry is appended by the SQL function ``valise_audit_append`` (sql/postgres/
v3_audit.sql), which hashes in the database and takes the chain's advisory lock, so
that every process sharing the schema extends one linear chain.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any, TypeVar

from gateway.store._common import aware
from gateway.store.audit_chain import (
    CHECKPOINT_ACTION,
    AuditCheckpoint,
    AuditDraft,
    AuditEntry,
    Witness,
)
from gateway.store.base import StoreError

T = TypeVar("T")
Conn = Any  # asyncpg.Connection

_APPEND = (
    "SELECT seq, at, actor, action, subject, result, detail, prev, hash"
    " FROM valise_audit_append($1, $2, $3, $4, $5, $6)"
)


def _entry(r: Any) -> AuditEntry:
    return AuditEntry(
        int(r[0]),
        r[1].astimezone(UTC),
        r[2],
        r[3],
        r[4],
        r[5],
        r[6],
        bytes(r[7]),
        bytes(r[8]),
    )


def _checkpoint(r: Any) -> AuditCheckpoint:
    token = None if r[5] is None else bytes(r[5])
    return AuditCheckpoint(int(r[0]), bytes(r[1]), r[2].astimezone(UTC), r[3], bytes(r[4]), token)


_WITNESS_SELECT = (
    "SELECT site, seq, hash, at, signer, signature, witness, witnessed_at, witness_signer,"
    " witness_signature, conflict, conflict_seq, conflict_hash, conflict_at"
    " FROM audit_witness WHERE site = $1"
)
_WITNESS_INSERT = (
    "INSERT INTO audit_witness (site, seq, hash, at, signer, signature, witness,"
    " witnessed_at, witness_signer, witness_signature, conflict, conflict_seq,"
    " conflict_hash, conflict_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    " ON CONFLICT (site) DO NOTHING RETURNING true"
)


def _witness(r: Any) -> Witness:
    return Witness(
        r[0],
        int(r[1]),
        bytes(r[2]),
        r[3].astimezone(UTC),
        r[4],
        bytes(r[5]),
        r[6],
        r[7].astimezone(UTC),
        r[8],
        bytes(r[9]),
        r[10],
        int(r[11]),
        bytes(r[12]),
        None if r[13] is None else r[13].astimezone(UTC),
    )


def _witness_row(w: Witness) -> tuple[Any, ...]:
    return (
        w.site,
        w.seq,
        w.hash,
        aware(w.at, "checkpoint time"),
        w.signer,
        w.signature,
        w.witness,
        aware(w.witnessed_at, "witness time"),
        w.witness_signer,
        w.witness_signature,
        w.conflict,
        w.conflict_seq,
        w.conflict_hash,
        None if w.conflict_at is None else aware(w.conflict_at, "conflict time"),
    )


async def _append(conn: Conn, d: AuditDraft) -> AuditEntry:
    row = await conn.fetchrow(
        _APPEND, aware(d.at, "audit time"), d.actor, d.action, d.subject, d.result, d.detail
    )
    return _entry(row)


class PostgresAudit:
    """The audit log methods of the Store protocol."""

    @abstractmethod
    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T: ...  # provided by PostgresStore

    @abstractmethod
    async def _write(
        self, fn: Callable[[Conn], Awaitable[T]]
    ) -> T: ...  # provided by PostgresStore

    async def audit_identify(self, site: str) -> None:
        async def tx(conn: Conn) -> None:
            await conn.execute("UPDATE audit_site SET site = $1 WHERE id = 1 AND site <> $1", site)

        async def q(conn: Conn) -> str | None:
            value: str | None = await conn.fetchval("SELECT site FROM audit_site WHERE id = 1")
            return value

        if await self._read(q) != site:
            await self._write(tx)

    async def audit_append(self, draft: AuditDraft) -> AuditEntry:
        aware(draft.at, "audit time")

        async def tx(conn: Conn) -> AuditEntry:
            return await _append(conn, draft)

        return await self._write(tx)

    async def audit_head(self) -> AuditEntry | None:
        async def q(conn: Conn) -> AuditEntry | None:
            row = await conn.fetchrow(
                "SELECT seq, at, actor, action, subject, result, detail, prev, hash"
                " FROM audit ORDER BY seq DESC LIMIT 1"
            )
            return None if row is None else _entry(row)

        return await self._read(q)

    async def audit_entries(self, *, after: int = 0, limit: int = 1000) -> list[AuditEntry]:
        async def q(conn: Conn) -> list[AuditEntry]:
            rows = await conn.fetch(
                "SELECT seq, at, actor, action, subject, result, detail, prev, hash"
                " FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                after,
                limit,
            )
            return [_entry(r) for r in rows]

        return await self._read(q)

    async def audit_checkpoint_add(self, checkpoint: AuditCheckpoint, entry: AuditDraft) -> bool:
        cp = checkpoint
        aware(cp.at, "checkpoint time")
        aware(entry.at, "audit time")
        if entry.action != CHECKPOINT_ACTION:
            raise StoreError(f"a checkpoint is recorded as {CHECKPOINT_ACTION}")

        async def tx(conn: Conn) -> bool:
            stored = await conn.fetchval(
                "INSERT INTO audit_checkpoints (seq, hash, at, signer, signature, token)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (seq) DO NOTHING RETURNING true",
                cp.seq,
                cp.hash,
                aware(cp.at),
                cp.signer,
                cp.signature,
                cp.token,
            )
            if not stored:
                return False
            await _append(conn, entry)
            return True

        return await self._write(tx)

    async def audit_checkpoints(
        self, *, after: int = 0, limit: int = 1000
    ) -> list[AuditCheckpoint]:
        async def q(conn: Conn) -> list[AuditCheckpoint]:
            rows = await conn.fetch(
                "SELECT seq, hash, at, signer, signature, token"
                " FROM audit_checkpoints WHERE seq > $1"
                " ORDER BY seq LIMIT $2",
                after,
                limit,
            )
            return [_checkpoint(r) for r in rows]

        return await self._read(q)

    async def audit_last_checkpoint(self) -> AuditCheckpoint | None:
        async def q(conn: Conn) -> AuditCheckpoint | None:
            row = await conn.fetchrow(
                "SELECT seq, hash, at, signer, signature, token"
                " FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"
            )
            return None if row is None else _checkpoint(row)

        return await self._read(q)

    async def audit_witness(self, site: str) -> Witness | None:
        async def q(conn: Conn) -> Witness | None:
            row = await conn.fetchrow(_WITNESS_SELECT, site)
            return None if row is None else _witness(row)

        return await self._read(q)

    async def audit_witness_save(
        self, witness: Witness, *, expect_seq: int | None, entry: AuditDraft | None = None
    ) -> bool:
        row = _witness_row(witness)
        if entry is not None:
            aware(entry.at, "audit time")

        async def tx(conn: Conn) -> bool:
            if expect_seq is None:
                done = await conn.fetchval(
                    _WITNESS_INSERT,
                    *row,
                )
            else:
                done = await conn.fetchval(
                    "UPDATE audit_witness SET seq = $2, hash = $3, at = $4, signer = $5,"
                    " signature = $6, witness = $7, witnessed_at = $8, witness_signer = $9,"
                    " witness_signature = $10, conflict = $11, conflict_seq = $12,"
                    " conflict_hash = $13, conflict_at = $14"
                    " WHERE site = $1 AND seq = $15 RETURNING true",
                    *row,
                    expect_seq,
                )
            if not done:
                return False
            if entry is not None:
                await _append(conn, entry)
            return True

        return await self._write(tx)
