"""The PostgreSQL driver: an asyncpg pool.

A read runs on a pooled connection; a transaction in an asyncpg transaction on one,
run again (at most _TX_ATTEMPTS times) when PostgreSQL aborted it as a deadlock or
serialization victim, nothing of it committed. Cancelling the caller cancels the
transaction's ``await``; asyncpg then rolls the transaction back (or, if the
connection is mid-statement, closes it), so nothing half-done is committed. Commits
are durable when they return (the store opens the pool with ``synchronous_commit`` on,
see postgres.py). Parameters go as ``$n`` in the order queries.py gives them; values
are passed as they are (aware datetimes, lists as arrays).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from gateway.store.driver import Conn, Row
from gateway.store.queries import Query
from gateway.store.records import StoreError

T = TypeVar("T")
PgConn = Any  # asyncpg.Connection

_TX_ATTEMPTS = 3
ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)
_RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)


def _count(status: str) -> int:
    """The rows a command changed, from its status (``UPDATE 3``, ``INSERT 0 1``)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresConn:
    """A pooled asyncpg connection inside one call."""

    backend = "postgres"

    def __init__(self, raw: PgConn):
        self.raw = raw

    async def fetch(self, query: Query, **params: Any) -> list[Row]:
        return list(await self.raw.fetch(query.sql, *query.args(params)))

    async def fetchrow(self, query: Query, **params: Any) -> Row | None:
        row: Row | None = await self.raw.fetchrow(query.sql, *query.args(params))
        return row

    async def fetchval(self, query: Query, **params: Any) -> Any:
        return await self.raw.fetchval(query.sql, *query.args(params))

    async def execute(self, query: Query, **params: Any) -> int:
        return _count(await self.raw.execute(query.sql, *query.args(params)))

    async def executemany(self, query: Query, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            await self.raw.executemany(query.sql, [query.args(dict(r)) for r in rows])


class PostgresDriver:
    """:class:`~gateway.store.driver.Driver` on an asyncpg pool."""

    backend = "postgres"

    def __init__(self, pool: Any):
        self.pool: Any = pool

    async def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            await pool.close()

    def live(self) -> Any:
        if self.pool is None:
            raise StoreError("the store is closed")
        return self.pool

    # -- raw calls: a coroutine function of an asyncpg connection ---------------
    async def call(self, fn: Callable[[PgConn], Awaitable[T]]) -> T:
        pool = self.live()
        try:
            async with pool.acquire() as conn:
                return await fn(conn)
        except ERRORS as exc:
            raise StoreError(f"PostgreSQL store: {exc}") from exc

    async def call_write(self, fn: Callable[[PgConn], Awaitable[T]]) -> T:
        """Run ``fn`` in one transaction; rerun it if PostgreSQL aborted it as a deadlock
        or serialization victim (nothing of it was committed then)."""
        pool = self.live()
        for attempt in range(1, _TX_ATTEMPTS + 1):
            try:
                async with pool.acquire() as conn, conn.transaction():
                    return await fn(conn)
            except _RETRYABLE_ERRORS as exc:
                if attempt == _TX_ATTEMPTS:
                    raise StoreError(f"PostgreSQL store: {exc}") from exc
            except ERRORS as exc:
                raise StoreError(f"PostgreSQL store: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the Driver protocol ------------------------------------------------------
    async def read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        return await self.call(lambda c: fn(PostgresConn(c)))

    async def transaction(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        return await self.call_write(lambda c: fn(PostgresConn(c)))
