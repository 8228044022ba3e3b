"""The audit log part of the SQLite store.

A mixin of :class:`gateway.store.sqlite.SqliteStore` (see sqlite_integrators.py for
the conventions: ``_read`` / ``_write`` on the store's thread, times as ISO text).

History rows reach the log through the ``history_audit`` trigger (sql/sqlite/
v3_audit.sql), which hashes with the SQL functions :func:`register_audit_functions`
puts on the connection: every connection that may write history must register them
(``_connect`` does), or the insert fails ("no such function"), so nothing is recorded
without its entry. Appends are serialised by the write lock (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import sqlite3
from abc import abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from gateway.store._common import aware
from gateway.store.audit_chain import (
    CHECKPOINT_ACTION,
    ZERO_HASH,
    AuditCheckpoint,
    AuditDraft,
    AuditEntry,
    Witness,
    chain,
    entry_hash,
    history_detail,
)
from gateway.store.base import StoreError

T = TypeVar("T")


def _ts(moment: datetime) -> str:
    return aware(moment).isoformat(timespec="microseconds")


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _sql_hash(
    seq: int,
    at: str,
    actor: str,
    action: str,
    subject: str,
    result: str,
    detail: str,
    prev: bytes,
) -> bytes:
    return entry_hash(seq, _dt(at), actor, action, subject, result, detail, bytes(prev))


def register_audit_functions(conn: sqlite3.Connection) -> None:
    """Give ``conn`` the functions the history trigger hashes with."""
    conn.create_function("valise_audit_hash", 8, _sql_hash, deterministic=True)
    conn.create_function("valise_audit_detail", 3, history_detail, deterministic=True)


def _entry(r: Any) -> AuditEntry:
    return AuditEntry(int(r[0]), _dt(r[1]), r[2], r[3], r[4], r[5], r[6], bytes(r[7]), bytes(r[8]))


_WITNESS_SELECT = (
    "SELECT site, seq, hash, at, signer, signature, witness, witnessed_at, witness_signer,"
    " witness_signature, conflict, conflict_seq, conflict_hash, conflict_at"
    " FROM audit_witness WHERE site = ?"
)
_WITNESS_INSERT = (
    "INSERT INTO audit_witness (site, seq, hash, at, signer, signature, witness,"
    " witnessed_at, witness_signer, witness_signature, conflict, conflict_seq,"
    " conflict_hash, conflict_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (site) DO NOTHING"
)


def _witness(r: Any) -> Witness:
    return Witness(
        r[0],
        int(r[1]),
        bytes(r[2]),
        _dt(r[3]),
        r[4],
        bytes(r[5]),
        r[6],
        _dt(r[7]),
        r[8],
        bytes(r[9]),
        r[10],
        int(r[11]),
        bytes(r[12]),
        None if r[13] is None else _dt(r[13]),
    )


def _witness_row(w: Witness) -> tuple[Any, ...]:
    return (
        w.site,
        w.seq,
        w.hash,
        _ts(w.at),
        w.signer,
        w.signature,
        w.witness,
        _ts(w.witnessed_at),
        w.witness_signer,
        w.witness_signature,
        w.conflict,
        w.conflict_seq,
        w.conflict_hash,
        None if w.conflict_at is None else _ts(w.conflict_at),
    )


def _checkpoint(r: Any) -> AuditCheckpoint:
    token = None if r[5] is None else bytes(r[5])
    return AuditCheckpoint(int(r[0]), bytes(r[1]), _dt(r[2]), r[3], bytes(r[4]), token)


def append_entry(c: sqlite3.Connection, draft: AuditDraft) -> AuditEntry:
    """Append ``draft`` after the last entry (inside the caller's write transaction)."""
    last = c.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (1, ZERO_HASH) if last is None else (int(last[0]) + 1, bytes(last[1]))
    entry = chain(draft, seq, prev)
    c.execute(
        "INSERT INTO audit (seq, at, actor, action, subject, result, detail, prev, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entry.seq,
            _ts(entry.at),
            entry.actor,
            entry.action,
            entry.subject,
            entry.result,
            entry.detail,
            entry.prev,
            entry.hash,
        ),
    )
    return entry


class SqliteAudit:
    """The audit log methods of the Store protocol."""

    @abstractmethod
    async def _read(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> T: ...  # provided by SqliteStore

    @abstractmethod
    async def _write(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> T: ...  # provided by SqliteStore

    async def audit_identify(self, site: str) -> None:
        def tx(c: sqlite3.Connection) -> None:
            c.execute("UPDATE audit_site SET site = ? WHERE id = 1 AND site <> ?", (site, site))

        current = await self._read(
            lambda c: c.execute("SELECT site FROM audit_site WHERE id = 1").fetchone()
        )
        if current is None or current[0] != site:
            await self._write(tx)

    async def audit_append(self, draft: AuditDraft) -> AuditEntry:
        aware(draft.at, "audit time")
        return await self._write(lambda c: append_entry(c, draft))

    async def audit_head(self) -> AuditEntry | None:
        def q(c: sqlite3.Connection) -> AuditEntry | None:
            row = c.execute(
                "SELECT seq, at, actor, action, subject, result, detail, prev, hash"
                " FROM audit ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            return None if row is None else _entry(row)

        return await self._read(q)

    async def audit_entries(self, *, after: int = 0, limit: int = 1000) -> list[AuditEntry]:
        def q(c: sqlite3.Connection) -> list[AuditEntry]:
            rows = c.execute(
                "SELECT seq, at, actor, action, subject, result, detail, prev, hash"
                " FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
            return [_entry(r) for r in rows]

        return await self._read(q)

    async def audit_checkpoint_add(self, checkpoint: AuditCheckpoint, entry: AuditDraft) -> bool:
        cp = checkpoint
        row = (cp.seq, cp.hash, _ts(cp.at), cp.signer, cp.signature, cp.token)
        aware(entry.at, "audit time")
        if entry.action != CHECKPOINT_ACTION:
            raise StoreError(f"a checkpoint is recorded as {CHECKPOINT_ACTION}")

        def tx(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "INSERT INTO audit_checkpoints (seq, hash, at, signer, signature, token)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING",
                row,
            )
            if not cur.rowcount:
                return False
            append_entry(c, entry)
            return True

        return await self._write(tx)

    async def audit_checkpoints(
        self, *, after: int = 0, limit: int = 1000
    ) -> list[AuditCheckpoint]:
        def q(c: sqlite3.Connection) -> list[AuditCheckpoint]:
            rows = c.execute(
                "SELECT seq, hash, at, signer, signature, token"
                " FROM audit_checkpoints WHERE seq > ?"
                " ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
            return [_checkpoint(r) for r in rows]

        return await self._read(q)

    async def audit_last_checkpoint(self) -> AuditCheckpoint | None:
        def q(c: sqlite3.Connection) -> AuditCheckpoint | None:
            row = c.execute(
                "SELECT seq, hash, at, signer, signature, token"
                " FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            return None if row is None else _checkpoint(row)

        return await self._read(q)

    async def audit_witness(self, site: str) -> Witness | None:
        def q(c: sqlite3.Connection) -> Witness | None:
            row = c.execute(_WITNESS_SELECT, (site,)).fetchone()
            return None if row is None else _witness(row)

        return await self._read(q)

    async def audit_witness_save(
        self, witness: Witness, *, expect_seq: int | None, entry: AuditDraft | None = None
    ) -> bool:
        row = _witness_row(witness)
        if entry is not None:
            aware(entry.at, "audit time")

        def tx(c: sqlite3.Connection) -> bool:
            if expect_seq is None:
                cur = c.execute(
                    _WITNESS_INSERT,
                    row,
                )
            else:
                cur = c.execute(
                    "UPDATE audit_witness SET seq = ?, hash = ?, at = ?, signer = ?,"
                    " signature = ?, witness = ?, witnessed_at = ?, witness_signer = ?,"
                    " witness_signature = ?, conflict = ?, conflict_seq = ?,"
                    " conflict_hash = ?, conflict_at = ? WHERE site = ? AND seq = ?",
                    (*row[1:], witness.site, expect_seq),
                )
            if not cur.rowcount:
                return False
            if entry is not None:
                append_entry(c, entry)
            return True

        return await self._write(tx)
