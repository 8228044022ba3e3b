"""The trust part of the SQLite store: time-stamp tokens and directory fetches.

A mixin of :class:`gateway.store.sqlite.SqliteStore` (see sqlite_integrators.py for
the conventions: ``_read`` / ``_write`` on the store's thread, times as ISO text).
"""

from __future__ import annotations

import sqlite3
from abc import abstractmethod
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from gateway.store._common import aware
from gateway.store.base import DirectoryFetch, TimestampRecord

T = TypeVar("T")


def _ts(moment: datetime) -> str:
    return aware(moment).isoformat(timespec="microseconds")


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


class SqliteTrust:
    """The timestamp and directory-fetch methods of the Store protocol."""

    @abstractmethod
    async def _read(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> T: ...  # provided by SqliteStore

    @abstractmethod
    async def _write(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> T: ...  # provided by SqliteStore

    async def timestamp_add(self, records: Sequence[TimestampRecord]) -> None:
        rows = [(r.message_id, r.kind, r.digest, r.token, _ts(r.at)) for r in records]

        def tx(c: sqlite3.Connection) -> None:
            c.executemany(
                "INSERT INTO timestamps (message_id, kind, digest, token, at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )

        if rows:
            await self._write(tx)

    async def timestamps(self, message_id: str) -> list[TimestampRecord]:
        def q(c: sqlite3.Connection) -> list[TimestampRecord]:
            rows = c.execute(
                "SELECT message_id, kind, digest, token, at FROM timestamps"
                " WHERE message_id = ? ORDER BY at, kind",
                (message_id,),
            ).fetchall()
            return [TimestampRecord(r[0], r[1], bytes(r[2]), bytes(r[3]), _dt(r[4])) for r in rows]

        return await self._read(q)

    async def directory_fetched(self, site: str, serial: int, *, now: datetime) -> None:
        at = _ts(now)

        def tx(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO directory_fetches (site, serial, at) VALUES (?, ?, ?)"
                " ON CONFLICT (site) DO UPDATE SET serial = max(serial, excluded.serial),"
                " at = excluded.at",
                (site, serial, at),
            )

        await self._write(tx)

    async def directory_fetches(self) -> list[DirectoryFetch]:
        def q(c: sqlite3.Connection) -> list[DirectoryFetch]:
            rows = c.execute("SELECT site, serial, at FROM directory_fetches ORDER BY site")
            return [DirectoryFetch(r[0], int(r[1]), _dt(r[2])) for r in rows.fetchall()]

        return await self._read(q)
