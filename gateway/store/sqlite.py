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
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.store._common import LATEST_VERSION, MIGRATIONS, load_sql, migration_parts
from gateway.store.base import StoreError
from gateway.store.driver_sqlite import SqliteDriver, encode
from gateway.store.sql_store import SqlStore, migration_step
from gateway.store.sqlite_audit import register_audit_functions
from gateway.store.trust import head_bytes

if TYPE_CHECKING:
    from gateway.store.base import Store


BUSY_TIMEOUT_MS = 10_000
_SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
# watch(): how often to look at PRAGMA data_version; quickly while other processes are
# writing (seen within WATCH_ACTIVE_SECONDS), slowly otherwise.
WATCH_FAST_SECONDS = 0.01
WATCH_SLOW_SECONDS = 0.1
WATCH_ACTIVE_SECONDS = 2.0


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


def _head_bytes(prefix: bytes | None, max_head: int) -> int:
    return head_bytes(bytes(prefix or b""), max_head)


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
        register_audit_functions(conn)  # the history trigger hashes with them
        conn.create_function("valise_head_bytes", 2, _head_bytes, deterministic=True)
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
        now = encode(datetime.now(UTC))
        for version, name in MIGRATIONS:
            if version <= current:
                continue
            for part, step in migration_parts(load_sql("sqlite", name)):
                for statement in _statements(part):
                    conn.execute(statement)
                if step is not None:
                    migration_step(step)[0](conn)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (version, now)
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class SqliteStore(SqlStore):
    """:class:`~gateway.store.base.Store` on one SQLite file."""

    _db: SqliteDriver

    def __init__(self, db: SqliteDriver):
        self.path = db.path
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        """Open (creating and migrating if need be) the store at ``path``."""
        return cls(await SqliteDriver.open(Path(path), _connect))

    async def close(self) -> None:
        await self._db.close()

    # -- what this backend reports of itself ------------------------------------
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

        return await self._db.call(q)

    # -- change notices -----------------------------------------------------------
    async def watch(self, on_change: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Poll ``PRAGMA data_version`` of the store's connection: it changes when another
        connection commits. Every call notes it on the way (see _versioned), so a busy
        store costs no extra calls; an idle one is asked every WATCH_SLOW_SECONDS, and
        every WATCH_FAST_SECONDS for a while after another process wrote."""
        db = self._db
        db.watched = True

        async def poll() -> None:
            await self._db.call(lambda c: None)
            last = db.version
            active_until = 0.0
            while True:
                now = time.monotonic()
                interval = WATCH_FAST_SECONDS if now < active_until else WATCH_SLOW_SECONDS
                await asyncio.sleep(interval)
                try:
                    if time.monotonic() - db.version_at >= interval:
                        await self._db.call(lambda c: None)  # nothing noted it lately
                except StoreError:
                    if db.conn is None:
                        return
                    continue
                if db.version != last:
                    last = db.version
                    active_until = time.monotonic() + WATCH_ACTIVE_SECONDS
                    on_change()

        task = asyncio.create_task(poll(), name="store-watch")

        async def stop() -> None:
            db.watched = False
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, StoreError):
                await task

        return stop


if TYPE_CHECKING:

    def _conforms(store: SqliteStore) -> Store:
        return store
