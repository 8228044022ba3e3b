"""The trust part of the PostgreSQL store: time-stamp tokens and directory fetches.

A mixin of :class:`gateway.store.postgres.PostgresStore` (``_read`` / ``_write``: one
transaction each, retried on a deadlock).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from gateway.store._common import aware
from gateway.store.base import DirectoryFetch, TimestampRecord

T = TypeVar("T")
Conn = Any  # asyncpg.Connection


class PostgresTrust:
    """The timestamp and directory-fetch methods of the Store protocol."""

    @abstractmethod
    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T: ...  # provided by PostgresStore

    @abstractmethod
    async def _write(
        self, fn: Callable[[Conn], Awaitable[T]]
    ) -> T: ...  # provided by PostgresStore

    async def timestamp_add(self, records: Sequence[TimestampRecord]) -> None:
        rows = [(r.message_id, r.kind, r.digest, r.token, aware(r.at)) for r in records]

        async def tx(conn: Conn) -> None:
            await conn.executemany(
                "INSERT INTO timestamps (message_id, kind, digest, token, at)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                rows,
            )

        if rows:
            await self._write(tx)

    async def timestamps(self, message_id: str) -> list[TimestampRecord]:
        async def q(conn: Conn) -> list[TimestampRecord]:
            rows = await conn.fetch(
                "SELECT message_id, kind, digest, token, at FROM timestamps"
                " WHERE message_id = $1 ORDER BY at, kind",
                message_id,
            )
            return [
                TimestampRecord(r[0], r[1], bytes(r[2]), bytes(r[3]), r[4].astimezone(UTC))
                for r in rows
            ]

        return await self._read(q)

    async def directory_fetched(self, site: str, serial: int, *, now: datetime) -> None:
        async def tx(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO directory_fetches (site, serial, at) VALUES ($1, $2, $3)"
                " ON CONFLICT (site) DO UPDATE SET"
                " serial = greatest(directory_fetches.serial, excluded.serial), at = excluded.at",
                site,
                serial,
                aware(now),
            )

        await self._write(tx)

    async def directory_fetches(self) -> list[DirectoryFetch]:
        async def q(conn: Conn) -> list[DirectoryFetch]:
            rows = await conn.fetch("SELECT site, serial, at FROM directory_fetches ORDER BY site")
            return [DirectoryFetch(r[0], int(r[1]), r[2].astimezone(UTC)) for r in rows]

        return await self._read(q)
