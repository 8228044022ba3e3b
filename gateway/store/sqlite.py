"""The SQLite store: one file, one connection, driven from one dedicated thread.

Every call runs as a whole on the store's own thread (stdlib ``sqlite3``), so a
transaction is never interleaved with another call and a cancelled caller can't
leave one half-open: each mutating call is ``BEGIN IMMEDIATE … COMMIT`` in one go.
The file is opened with ``journal_mode=WAL``, ``synchronous=FULL`` (a commit is on
disk before the call returns), ``foreign_keys=ON`` and a ``busy_timeout``, so
other processes (the admin CLI) can share it: they wait for the write lock.

Times are stored as UTC ISO 8601 strings with microseconds, which sort and compare
as text; they come back as aware UTC datetimes.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from gateway.store._common import (
    EXPIRED_REASON,
    HOLDABLE,
    LATEST_VERSION,
    MIGRATIONS,
    RECEIPT_REASON,
    RETRYABLE,
    aware,
    check_record,
    load_sql,
    reclaim_reason,
    unique_hops,
)
from gateway.store.base import (
    Acceptance,
    Claimed,
    EnvelopeRecord,
    InboxItem,
    InState,
    OutState,
    QueueEntry,
    StoreError,
    Transition,
)
from gateway.store.sqlite_integrators import SqliteIntegrators

if TYPE_CHECKING:
    from gateway.store.base import Store

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000
_SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def _ts(moment: datetime) -> str:
    return aware(moment).isoformat(timespec="microseconds")


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _opt_dt(text: str | None) -> datetime | None:
    return None if text is None else _dt(text)


def _statements(script: str) -> list[str]:
    """Split a schema file into statements (executescript would commit on its own)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        if not buf and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise StoreError(f"incomplete SQL statement in schema: {buf.strip()[:60]!r}")
    return out


def _connect(path: Path) -> sqlite3.Connection:
    if sqlite3.sqlite_version_info < (3, 35, 0):
        raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old (need 3.35+)")
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: could not switch to WAL (journal_mode is {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply the schema if there is no version table; then any later migrations."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        present = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        current = 0
        if present:
            (current,) = conn.execute(
                "SELECT coalesce(max(version), 0) FROM schema_version"
            ).fetchone()
        if current > LATEST_VERSION:
            raise StoreError(
                f"store schema version {current} is newer than this software ({LATEST_VERSION})"
            )
        now = _ts(datetime.now(UTC))
        for version, name in MIGRATIONS:
            if version <= current:
                continue
            for statement in _statements(load_sql("sqlite", name)):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (version, now)
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _history(
    c: sqlite3.Connection,
    message_id: str,
    peer: str | None,
    state: str,
    reason: str,
    at: str,
) -> None:
    c.execute(
        "INSERT INTO history (message_id, peer, state, reason, at) VALUES (?, ?, ?, ?, ?)",
        (message_id, peer, state, reason, at),
    )


def _accept_one(
    c: sqlite3.Connection,
    record: EnvelopeRecord,
    next_hops: Sequence[str],
    deliver_here: bool,
    hop_ack: bytes | None,
    at: str,
) -> Acceptance:
    cur = c.execute(
        "INSERT INTO envelopes (message_id, origin, destinations, digest, created, expires,"
        " priority, received_from, size, data, hop_ack, receipt, accepted_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)"
        " ON CONFLICT (message_id) DO NOTHING",
        (
            record.message_id,
            record.origin,
            json.dumps(list(record.destinations)),
            record.digest,
            _ts(record.created),
            _ts(record.expires),
            str(record.priority),
            record.received_from,
            len(record.data),
            record.data,
            hop_ack,
            at,
        ),
    )
    if cur.rowcount == 0:
        row = c.execute(
            "SELECT hop_ack FROM envelopes WHERE message_id = ?", (record.message_id,)
        ).fetchone()
        return Acceptance(new=False, hop_ack=row[0])
    for peer in unique_hops(next_hops):
        c.execute(
            "INSERT INTO deliveries (message_id, peer, state, attempts, updated_at)"
            " VALUES (?, ?, 'queued', 0, ?)",
            (record.message_id, peer, at),
        )
        _history(c, record.message_id, peer, OutState.QUEUED.value, "", at)
    if deliver_here:
        c.execute(
            "INSERT INTO inbound (message_id, state, received_at, updated_at)"
            " VALUES (?, 'received', ?, ?)",
            (record.message_id, at, at),
        )
        _history(c, record.message_id, None, InState.RECEIVED.value, "", at)
    return Acceptance(new=True, hop_ack=hop_ack)


def _set_state(
    c: sqlite3.Connection,
    message_id: str,
    *,
    to: str,
    from_states: Sequence[str],
    reason: str,
    at: str,
    next_attempt: str | None = None,
) -> int:
    """Move the message's deliveries in ``from_states`` to ``to`` (lease dropped); history."""
    rows = c.execute(
        "UPDATE deliveries SET state = ?, next_attempt = ?, lease_owner = NULL,"
        " lease_until = NULL, last_reason = ?, updated_at = ?"
        " WHERE message_id = ? AND state IN (SELECT value FROM json_each(?)) RETURNING peer",
        (to, next_attempt, reason, at, message_id, json.dumps([str(s) for s in from_states])),
    ).fetchall()
    for (peer,) in sorted(rows):
        _history(c, message_id, peer, to, reason, at)
    return len(rows)


class SqliteStore(SqliteIntegrators):
    """:class:`~gateway.store.base.Store` on one SQLite file."""

    def __init__(self, path: Path, conn: sqlite3.Connection, executor: ThreadPoolExecutor):
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._executor = executor

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        """Open (creating and migrating if need be) the store at ``path``."""
        path = Path(path)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="valise-sqlite")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, _connect, path)
        except sqlite3.Error as exc:
            executor.shutdown(wait=False)
            raise StoreError(f"cannot open SQLite store {path}: {exc}") from exc
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(path, conn, executor)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, conn.close)
        finally:
            self._executor.shutdown(wait=False)

    # -- plumbing ---------------------------------------------------------------
    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        if conn is None:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, conn)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {self.path}: {exc}") from exc

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._call(fn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE … COMMIT`` transaction."""

        def tx(c: sqlite3.Connection) -> T:
            c.execute("BEGIN IMMEDIATE")
            try:
                result = fn(c)
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:  # SQLite may have rolled back on its own already
                    c.execute("ROLLBACK")
                raise
            return result

        return await self._call(tx)

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
        check_record(record)
        at = _ts(now)
        hops = list(next_hops)
        return await self._write(lambda c: _accept_one(c, record, hops, deliver_here, hop_ack, at))

    async def accept_many(
        self,
        items: Sequence[tuple[EnvelopeRecord, Sequence[str], bool, bytes | None]],
        *,
        now: datetime,
    ) -> list[Acceptance]:
        batch = [(r, list(h), d, a) for r, h, d, a in items]
        for record, _, _, _ in batch:
            check_record(record)
        at = _ts(now)
        if not batch:
            return []
        return await self._write(lambda c: [_accept_one(c, r, h, d, a, at) for r, h, d, a in batch])

    async def get_envelope(self, message_id: str) -> EnvelopeRecord | None:
        def q(c: sqlite3.Connection) -> EnvelopeRecord | None:
            row = c.execute(
                "SELECT message_id, origin, destinations, digest, created, expires, priority,"
                " received_from, data FROM envelopes WHERE message_id = ?",
                (message_id,),
            ).fetchone()
            if row is None:
                return None
            return EnvelopeRecord(
                message_id=row[0],
                origin=row[1],
                destinations=tuple(json.loads(row[2])),
                digest=row[3],
                created=_dt(row[4]),
                expires=_dt(row[5]),
                priority=row[6],
                received_from=row[7],
                data=row[8],
            )

        return await self._read(q)

    # -- outbound work ----------------------------------------------------------
    async def claim(
        self, *, peer: str, owner: str, limit: int, lease_seconds: float, now: datetime
    ) -> list[Claimed]:
        at = _ts(now)
        until = _ts(aware(now) + timedelta(seconds=lease_seconds))
        if limit <= 0:
            return []

        def tx(c: sqlite3.Connection) -> list[Claimed]:
            rows = c.execute(
                "SELECT d.message_id, d.state, d.lease_owner, d.attempts, e.data, e.expires"
                " FROM deliveries d JOIN envelopes e ON e.message_id = d.message_id"
                " WHERE d.peer = :peer AND (d.state = 'queued'"
                "  OR (d.state = 'deferred' AND d.next_attempt <= :now)"
                "  OR (d.state = 'sending' AND d.lease_until < :now))"
                " ORDER BY CASE e.priority WHEN 'flash' THEN 0 WHEN 'immediate' THEN 1"
                "  WHEN 'priority' THEN 2 ELSE 3 END, e.created, d.message_id LIMIT :limit",
                {"peer": peer, "now": at, "limit": limit},
            ).fetchall()
            out: list[Claimed] = []
            for message_id, old_state, old_owner, attempts, data, expires in rows:
                c.execute(
                    "UPDATE deliveries SET state = 'sending', lease_owner = ?, lease_until = ?,"
                    " attempts = attempts + 1, updated_at = ? WHERE message_id = ? AND peer = ?",
                    (owner, until, at, message_id, peer),
                )
                reason = reclaim_reason(old_state, old_owner)
                _history(c, message_id, peer, OutState.SENDING.value, reason, at)
                out.append(Claimed(message_id, peer, attempts + 1, data, _dt(expires)))
            return out

        return await self._write(tx)

    async def peers_with_work(self, *, now: datetime) -> list[str]:
        at = _ts(now)

        def q(c: sqlite3.Connection) -> list[str]:
            rows = c.execute(
                "SELECT DISTINCT d.peer FROM deliveries d WHERE d.state = 'queued'"
                " OR (d.state = 'deferred' AND d.next_attempt <= :now)"
                " OR (d.state = 'sending' AND d.lease_until < :now) ORDER BY d.peer",
                {"now": at},
            ).fetchall()
            return [r[0] for r in rows]

        return await self._read(q)

    async def next_due(self, *, now: datetime) -> datetime | None:
        aware(now)

        def q(c: sqlite3.Connection) -> datetime | None:
            (first,) = c.execute(
                "SELECT min(next_attempt) FROM deliveries WHERE state = 'deferred'"
            ).fetchone()
            return _opt_dt(first)

        return await self._read(q)

    async def forwarded(
        self, items: Sequence[tuple[str, str]], *, owner: str, now: datetime, reason: str = ""
    ) -> None:
        at = _ts(now)
        pairs = list(items)

        def tx(c: sqlite3.Connection) -> None:
            for message_id, peer in pairs:
                cur = c.execute(
                    "UPDATE deliveries SET state = 'forwarded', lease_owner = NULL,"
                    " lease_until = NULL, next_attempt = NULL, last_reason = ?, updated_at = ?"
                    " WHERE message_id = ? AND peer = ? AND state = 'sending'"
                    " AND lease_owner = ?",
                    (reason, at, message_id, peer, owner),
                )
                if cur.rowcount:
                    _history(c, message_id, peer, OutState.FORWARDED.value, reason, at)

        if pairs:
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
        at = _ts(now)
        when = _ts(next_attempt)

        def tx(c: sqlite3.Connection) -> None:
            cur = c.execute(
                "UPDATE deliveries SET state = 'deferred', next_attempt = ?, lease_owner = NULL,"
                " lease_until = NULL, last_reason = ?, updated_at = ?"
                " WHERE message_id = ? AND peer = ? AND state = 'sending' AND lease_owner = ?",
                (when, reason, at, message_id, peer, owner),
            )
            if cur.rowcount:
                _history(c, message_id, peer, OutState.DEFERRED.value, reason, at)

        await self._write(tx)

    async def fail(self, message_id: str, peer: str | None, *, reason: str, now: datetime) -> None:
        at = _ts(now)

        def tx(c: sqlite3.Connection) -> None:
            if c.execute("SELECT 1 FROM envelopes WHERE message_id = ?", (message_id,)).fetchone():
                rows = c.execute(
                    "UPDATE deliveries SET state = 'failed', lease_owner = NULL,"
                    " lease_until = NULL, last_reason = ?, updated_at = ?"
                    " WHERE message_id = ? AND state IN ('queued', 'deferred', 'sending', 'held')"
                    " AND (? IS NULL OR peer = ?) RETURNING peer",
                    (reason, at, message_id, peer, peer),
                ).fetchall()
                for (p,) in sorted(rows):
                    _history(c, message_id, p, OutState.FAILED.value, reason, at)
            else:
                raise StoreError(f"unknown message {message_id}")

        await self._write(tx)

    async def expire(self, *, now: datetime) -> list[str]:
        at = _ts(now)

        def tx(c: sqlite3.Connection) -> list[str]:
            rows = c.execute(
                "UPDATE deliveries SET state = 'failed', lease_owner = NULL, lease_until = NULL,"
                " last_reason = :reason, updated_at = :now"
                " WHERE (state IN ('queued', 'deferred', 'sending', 'held')"
                # At the origin, a message forwarded but never receipted fails at expiry too.
                "  OR (state = 'forwarded' AND message_id IN (SELECT message_id FROM envelopes"
                "      WHERE received_from IS NULL AND receipt IS NULL)))"
                " AND message_id IN (SELECT message_id FROM envelopes WHERE expires <= :now)"
                " RETURNING message_id, peer",
                {"reason": EXPIRED_REASON, "now": at},
            ).fetchall()
            for message_id, peer in sorted(rows):
                _history(c, message_id, peer, OutState.FAILED.value, EXPIRED_REASON, at)
            return sorted({r[0] for r in rows})

        return await self._write(tx)

    # -- receipts ---------------------------------------------------------------
    async def delivered(self, message_id: str, *, receipt: bytes, now: datetime) -> bool:
        at = _ts(now)

        def tx(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE envelopes SET receipt = ? WHERE message_id = ? AND receipt IS NULL",
                (receipt, message_id),
            )
            if cur.rowcount == 0:
                if c.execute(
                    "SELECT 1 FROM envelopes WHERE message_id = ?", (message_id,)
                ).fetchone():
                    return False
                raise StoreError(f"unknown message {message_id}")
            moved = _set_state(
                c,
                message_id,
                to=OutState.DELIVERED.value,
                from_states=[s for s in OutState if s != OutState.DELIVERED],
                reason=RECEIPT_REASON,
                at=at,
            )
            if not moved:
                _history(c, message_id, None, OutState.DELIVERED.value, RECEIPT_REASON, at)
            return True

        return await self._write(tx)

    async def receipt(self, message_id: str) -> bytes | None:
        def q(c: sqlite3.Connection) -> bytes | None:
            row = c.execute(
                "SELECT receipt FROM envelopes WHERE message_id = ?", (message_id,)
            ).fetchone()
            return None if row is None else row[0]

        return await self._read(q)

    # -- inbound ----------------------------------------------------------------
    async def inbound_set(
        self, message_id: str, state: InState, *, reason: str, now: datetime
    ) -> None:
        at = _ts(now)
        new = InState(state).value

        def tx(c: sqlite3.Connection) -> None:
            row = c.execute(
                "SELECT state FROM inbound WHERE message_id = ?", (message_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"no inbound item {message_id}")
            if row[0] == new:
                return
            c.execute(
                "UPDATE inbound SET state = ?, updated_at = ? WHERE message_id = ?",
                (new, at, message_id),
            )
            _history(c, message_id, None, new, reason, at)

        await self._write(tx)

    async def inbox(
        self,
        *,
        state: InState | None = None,
        limit: int = 100,
        after: tuple[datetime, str] | None = None,
    ) -> list[InboxItem]:
        wanted = None if state is None else InState(state).value
        after_at = None if after is None else _ts(after[0])
        after_id = None if after is None else after[1]

        def q(c: sqlite3.Connection) -> list[InboxItem]:
            rows = c.execute(
                "SELECT i.message_id, e.origin, i.state, i.received_at, e.size"
                " FROM inbound i JOIN envelopes e ON e.message_id = i.message_id"
                " WHERE (:state IS NULL OR i.state = :state)"
                " AND (:after_at IS NULL OR i.received_at > :after_at"
                "  OR (i.received_at = :after_at AND i.message_id > :after_id))"
                " ORDER BY i.received_at, i.message_id LIMIT :limit",
                {"state": wanted, "limit": limit, "after_at": after_at, "after_id": after_id},
            ).fetchall()
            return [InboxItem(r[0], r[1], r[2], _dt(r[3]), r[4]) for r in rows]

        return await self._read(q)

    # -- operator ---------------------------------------------------------------
    async def hold(self, message_id: str, *, now: datetime, reason: str) -> int:
        at = _ts(now)
        return await self._write(
            lambda c: _set_state(
                c, message_id, to=OutState.HELD.value, from_states=HOLDABLE, reason=reason, at=at
            )
        )

    async def release(self, message_id: str, *, now: datetime, reason: str) -> int:
        at = _ts(now)
        return await self._write(
            lambda c: _set_state(
                c,
                message_id,
                to=OutState.QUEUED.value,
                from_states=[OutState.HELD.value],
                reason=reason,
                at=at,
            )
        )

    async def retry(self, message_id: str, *, now: datetime, reason: str) -> int:
        at = _ts(now)
        return await self._write(
            lambda c: _set_state(
                c,
                message_id,
                to=OutState.QUEUED.value,
                from_states=RETRYABLE,
                reason=reason,
                at=at,
                next_attempt=at,
            )
        )

    async def delete(self, message_id: str, *, now: datetime, reason: str) -> int:
        at = _ts(now)

        def tx(c: sqlite3.Connection) -> int:
            removed = c.execute(
                "DELETE FROM deliveries WHERE message_id = ?", (message_id,)
            ).rowcount
            inbound = c.execute("DELETE FROM inbound WHERE message_id = ?", (message_id,)).rowcount
            envelope = c.execute(
                "DELETE FROM envelopes WHERE message_id = ?", (message_id,)
            ).rowcount
            if removed or inbound or envelope:
                _history(c, message_id, None, "deleted", reason, at)
            return removed

        return await self._write(tx)

    async def queue(self, *, peer: str | None = None, state: str | None = None) -> list[QueueEntry]:
        def q(c: sqlite3.Connection) -> list[QueueEntry]:
            rows = c.execute(
                "SELECT d.message_id, d.peer, d.state, d.attempts, d.next_attempt, d.last_reason,"
                " e.origin, e.destinations, e.created, e.expires, e.priority, e.size"
                " FROM deliveries d JOIN envelopes e ON e.message_id = d.message_id"
                " WHERE (:peer IS NULL OR d.peer = :peer) AND (:state IS NULL OR d.state = :state)"
                " ORDER BY CASE e.priority WHEN 'flash' THEN 0 WHEN 'immediate' THEN 1"
                "  WHEN 'priority' THEN 2 ELSE 3 END, e.created, d.message_id, d.peer",
                {"peer": peer, "state": None if state is None else str(state)},
            ).fetchall()
            return [
                QueueEntry(
                    message_id=r[0],
                    peer=r[1],
                    state=r[2],
                    attempts=r[3],
                    next_attempt=_opt_dt(r[4]),
                    last_reason=r[5],
                    origin=r[6],
                    destinations=tuple(json.loads(r[7])),
                    created=_dt(r[8]),
                    expires=_dt(r[9]),
                    priority=r[10],
                    size=r[11],
                )
                for r in rows
            ]

        return await self._read(q)

    async def history(self, message_id: str) -> list[Transition]:
        def q(c: sqlite3.Connection) -> list[Transition]:
            rows = c.execute(
                "SELECT at, peer, state, reason FROM history WHERE message_id = ? ORDER BY id",
                (message_id,),
            ).fetchall()
            return [Transition(_dt(r[0]), r[1], r[2], r[3]) for r in rows]

        return await self._read(q)

    async def depths(self) -> dict[tuple[str, str], int]:
        def q(c: sqlite3.Connection) -> dict[tuple[str, str], int]:
            rows = c.execute(
                "SELECT peer, state, count(*) FROM deliveries GROUP BY peer, state"
            ).fetchall()
            return {(r[0], r[1]): r[2] for r in rows}

        return await self._read(q)

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    async def durability(self) -> dict[str, str]:
        def q(c: sqlite3.Connection) -> dict[str, str]:
            (mode,) = c.execute("PRAGMA journal_mode").fetchone()
            (sync,) = c.execute("PRAGMA synchronous").fetchone()
            (fks,) = c.execute("PRAGMA foreign_keys").fetchone()
            (busy,) = c.execute("PRAGMA busy_timeout").fetchone()
            return {
                "backend": "sqlite",
                "path": str(self.path),
                "journal_mode": str(mode).lower(),
                "synchronous": _SYNCHRONOUS_NAMES.get(int(sync), str(sync)),
                "synchronous_level": str(sync),
                "foreign_keys": "on" if fks else "off",
                "busy_timeout_ms": str(busy),
                "sqlite_version": sqlite3.sqlite_version,
            }

        return await self._read(q)


if TYPE_CHECKING:

    def _conforms(store: SqliteStore) -> Store:
        return store
