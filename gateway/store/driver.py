"""The thin driver both store backends run their shared SQL through.

A store call is a coroutine function of one :class:`Conn` run by the :class:`Driver`,
either as a read (:meth:`Driver.read`) or as one transaction (:meth:`Driver.transaction`);
inside it the call reaches the database only through ``fetch`` / ``fetchrow`` /
``fetchval`` / ``execute`` / ``executemany`` with a named query (queries.py) and its
parameters by name (``:name`` in the SQL).

Why a function and not an ``async with`` block: the SQLite driver runs the whole
function on the store's one thread, inside one ``BEGIN IMMEDIATE … COMMIT``, so no
other call interleaves with a transaction and a cancelled caller cannot leave one
half-open (driver_sqlite.py). A transaction body must therefore await nothing but its
``Conn``; PostgreSQL runs the same body in an asyncpg transaction (driver_postgres.py).

Values: parameters are Python values (aware datetimes, bytes, str, int, lists of str);
each driver encodes them for its backend (SQLite: times as UTC ISO 8601 text, lists as
JSON text for ``json_each``). What comes back is backend-native: decode times with
:func:`when`, booleans with ``bool()``, and a list column with :func:`strs`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from gateway.store.queries import Queries, Query, load

T = TypeVar("T")


class Row(Protocol):
    """A result row: by column name or position, or iterated (sqlite3.Row, asyncpg.Record)."""

    def __getitem__(self, key: str | int, /) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...


class Conn(Protocol):
    """The database inside one read or one transaction."""

    backend: str  # "sqlite" or "postgres": whose queries it runs (queries.load)

    async def fetch(self, query: Query, **params: Any) -> list[Row]: ...
    async def fetchrow(self, query: Query, **params: Any) -> Row | None: ...
    async def fetchval(self, query: Query, **params: Any) -> Any: ...

    async def execute(self, query: Query, **params: Any) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def executemany(self, query: Query, rows: Sequence[Mapping[str, Any]]) -> None: ...


class Driver(Protocol):
    """One backend's way to run store calls (one SQLite file, or a PostgreSQL pool)."""

    backend: str  # "sqlite" or "postgres": whose queries it runs (queries.load)

    async def read(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """``fn`` outside a transaction (one consistent statement at a time)."""
        ...

    async def transaction(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """``fn`` in one transaction, committed durably before this returns (rolled back
        if it raises). PostgreSQL may run it again after a deadlock or serialization
        failure (nothing of the first run was committed then)."""
        ...


def when(value: Any) -> datetime:
    """A time column as an aware UTC datetime (SQLite: ISO text; PostgreSQL: timestamptz)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"not a time: {value!r}")
    return value.astimezone(UTC)


def opt_when(value: Any) -> datetime | None:
    return None if value is None else when(value)


def strs(value: Any) -> tuple[str, ...]:
    """A list-of-text column (SQLite: JSON text; PostgreSQL: text[])."""
    if isinstance(value, str):
        value = json.loads(value)
    return tuple(str(v) for v in value)


class OnDriver:
    """A store concern written once, over the store's driver (a mixin of both stores)."""

    _db: Driver

    def _sql(self, concern: str) -> Queries:
        """The concern's named queries for this store's backend (loaded once)."""
        return load(self._db.backend, concern)


def sql(c: Conn, concern: str) -> Queries:
    """The concern's named queries for ``c``'s backend (for helpers taking a Conn)."""
    return load(c.backend, concern)
