"""The SQLite driver: one connection, used only from one dedicated thread.

Every call runs as a whole on that thread (stdlib ``sqlite3``): a read as it is, a
transaction as ``BEGIN IMMEDIATE … COMMIT`` around the whole call. The shared store code
is async (driver.py), so the thread drives a call's coroutine itself: the
:class:`SqliteConn` methods never suspend, the coroutine runs to its end in one
``send``, and a body that does suspend is refused (it would have to leave the thread).
Hence, as before the driver existed:

- a transaction is never interleaved with another call (one thread, one job at a time);
- a cancelled caller cannot leave a transaction half-open: cancelling the ``await``
  does not stop the job, which commits or rolls back on its own, whole;
- a commit is on disk when the call returns (the connection runs ``synchronous=FULL``).

Parameters are bound by name; an aware datetime becomes UTC ISO 8601 text with
microseconds (sorting and comparing as text), a list or tuple JSON text (read with
``json_each``). Rows are :class:`sqlite3.Row` (by name or position).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from gateway.store.driver import Conn, Row
from gateway.store.queries import Query
from gateway.store.records import StoreError

T = TypeVar("T")


def encode(value: Any) -> Any:
    """A parameter as SQLite stores it (times: UTC ISO text; lists: JSON text)."""
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise StoreError(f"time must be a timezone-aware datetime, got {value!r}")
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, list | tuple):
        return json.dumps([str(v) for v in value])
    return value


def _params(query: Query, values: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return {p: encode(values[p]) for p in query.params}
    except KeyError as exc:
        raise StoreError(f"query {query.name}: no value for :{exc.args[0]}") from None


class SqliteConn:
    """The store's connection inside one call, on the store's thread."""

    backend = "sqlite"

    def __init__(self, raw: sqlite3.Connection):
        self.raw = raw

    def _run(self, query: Query, values: Mapping[str, Any]) -> sqlite3.Cursor:
        cur = self.raw.cursor()
        cur.row_factory = sqlite3.Row
        return cur.execute(query.sql, _params(query, values))

    async def fetch(self, query: Query, **params: Any) -> list[Row]:
        return list(self._run(query, params).fetchall())

    async def fetchrow(self, query: Query, **params: Any) -> Row | None:
        row: Row | None = self._run(query, params).fetchone()
        return row

    async def fetchval(self, query: Query, **params: Any) -> Any:
        row = self._run(query, params).fetchone()
        return None if row is None else row[0]

    async def execute(self, query: Query, **params: Any) -> int:
        return self._run(query, params).rowcount

    async def executemany(self, query: Query, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.raw.executemany(query.sql, [_params(query, r) for r in rows])


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end here and now; it must not suspend (see the docstring)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise StoreError("a SQLite store call awaited something other than its connection")


class SqliteDriver:
    """:class:`~gateway.store.driver.Driver` on one SQLite connection and its thread."""

    backend = "sqlite"

    def __init__(self, path: Path, conn: sqlite3.Connection, executor: ThreadPoolExecutor):
        self.path = path
        self.conn: sqlite3.Connection | None = conn
        self._executor = executor
        # While watched: PRAGMA data_version as read after the last call, and when.
        self.watched = False
        self.version = 0
        self.version_at = 0.0

    @classmethod
    async def open(cls, path: Path, connect: Callable[[Path], sqlite3.Connection]) -> SqliteDriver:
        """``connect(path)`` on a new dedicated thread. Raises StoreError."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="valise-sqlite")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, connect, path)
        except sqlite3.Error as exc:
            executor.shutdown(wait=False)
            raise StoreError(f"cannot open SQLite store {path}: {exc}") from exc
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(path, conn, executor)

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, conn.close)
        finally:
            self._executor.shutdown(wait=False)

    # -- raw calls: a function of the sqlite3 connection, on the thread -----------
    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self.conn
        if conn is None:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        try:
            if self.watched:
                return await loop.run_in_executor(self._executor, self._versioned, fn, conn)
            return await loop.run_in_executor(self._executor, fn, conn)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {self.path}: {exc}") from exc

    def _versioned(self, fn: Callable[[sqlite3.Connection], T], c: sqlite3.Connection) -> T:
        """``fn``, then note the data version (a few microseconds): the store's watch()
        reads it from here instead of making calls of its own while busy anyway."""
        result = fn(c)
        self.version = int(c.execute("PRAGMA data_version").fetchone()[0])
        self.version_at = time.monotonic()
        return result

    async def call_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
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

        return await self.call(tx)

    # -- the Driver protocol ------------------------------------------------------
    async def read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        return await self.call(lambda c: drive(_coroutine(fn, c)))

    async def transaction(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        return await self.call_write(lambda c: drive(_coroutine(fn, c)))


def _coroutine(fn: Callable[[Conn], Awaitable[T]], c: sqlite3.Connection) -> Coroutine[Any, Any, T]:
    coro = fn(SqliteConn(c))
    if not isinstance(coro, Coroutine):
        raise StoreError("a SQLite store call must be a coroutine function")
    return coro
