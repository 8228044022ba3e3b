"""The PostgreSQL store: an asyncpg pool; several gateway processes may share one database.

Each mutating call is one transaction (retried on a deadlock or serialization
failure, which PostgreSQL resolves by aborting one side). Outbound work is claimed
with ``SELECT … FOR UPDATE SKIP LOCKED`` and leased through the ``lease_owner`` /
``lease_until`` columns, so concurrent claimers never get the same delivery and a
dead sender's work comes back once its lease runs out.

Commits are durable when they return: sessions run with ``synchronous_commit`` on
(a server, database or role default of ``off`` is overridden for the store's
sessions at connect time; ``local``, ``remote_write`` and ``remote_apply`` are
kept). :meth:`durability` reports what the sessions actually run with.

``schema`` puts the store's tables in that schema (created if missing) by making it
the sessions' ``search_path``; without it the server's search_path decides.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg  # type: ignore[import-untyped]

from gateway.store._common import LATEST_VERSION, MIGRATIONS, load_sql, migration_parts
from gateway.store.base import StoreError
from gateway.store.driver import Conn
from gateway.store.driver_postgres import ERRORS as _ERRORS
from gateway.store.driver_postgres import PgConn, PostgresDriver
from gateway.store.queries import load
from gateway.store.sql_store import SqlStore, migration_step

if TYPE_CHECKING:
    from gateway.store.base import Store

log = logging.getLogger("valise.store")

SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
CONNECT_TIMEOUT = 10.0


def notify_channel(schema: str | None) -> str:
    """The LISTEN/NOTIFY channel of a store (an identifier: at most 63 bytes)."""
    name = f"valise_work_{schema}" if schema else "valise_work"
    if len(name) > 63:
        name = "valise_work_" + hashlib.sha256(name.encode()).hexdigest()[:32]
    return name


async def _create_pool(dsn: str, settings: dict[str, str], min_size: int, max_size: int) -> Any:
    try:
        return await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=CONNECT_TIMEOUT,
            server_settings=dict(settings),
        )
    except _ERRORS as exc:
        raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc


class PostgresStore(SqlStore):
    """:class:`~gateway.store.base.Store` on a PostgreSQL database (one schema)."""

    _db: PostgresDriver

    def __init__(
        self, pool: Any, schema: str | None, dsn: str = "", settings: dict[str, str] | None = None
    ):
        self._db = PostgresDriver(pool)
        self.schema = schema
        self._dsn = dsn
        self._settings = dict(settings or {})
        self.channel = notify_channel(schema)

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
    ) -> PostgresStore:
        """Connect a pool to ``dsn`` and create or migrate the schema."""
        settings = {"application_name": "valise-gateway"}
        if schema is not None:
            if SCHEMA_RE.fullmatch(schema) is None:
                raise StoreError(f"schema name {schema!r} must match {SCHEMA_RE.pattern}")
            settings["search_path"] = schema
        pool = await _create_pool(dsn, settings, min_size, max_size)
        try:
            sync = await pool.fetchval("SELECT current_setting('synchronous_commit')")
        except _ERRORS as exc:
            await pool.close()
            raise StoreError(f"cannot query PostgreSQL: {exc}") from exc
        if sync == "off":
            # The server or role default would acknowledge commits before they are on
            # disk: run the store's sessions with synchronous_commit on instead.
            await pool.close()
            settings["synchronous_commit"] = "on"
            pool = await _create_pool(dsn, settings, min_size, max_size)
        store = cls(pool, schema, dsn, settings)
        try:
            await store._db.call_write(store._migrate)
        except BaseException:
            await pool.close()
            raise
        return store

    async def _migrate(self, conn: PgConn) -> None:
        """Apply the schema if there is no version table; then any later migrations."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('valise.store.migrate:' || $1::text))",
            self.schema or "",
        )
        if self.schema is not None and not await conn.fetchval(
            "SELECT true FROM pg_namespace WHERE nspname = $1", self.schema
        ):
            await conn.execute(f'CREATE SCHEMA "{self.schema}"')
        present = await conn.fetchval(
            "SELECT true FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_name = 'schema_version'"
        )
        current = 0
        if present:
            current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
        if current > LATEST_VERSION:
            raise StoreError(
                f"store schema version {current} is newer than this software ({LATEST_VERSION})"
            )
        for version, name in MIGRATIONS:
            if version <= current:
                continue
            for part, step in migration_parts(load_sql("postgres", name)):
                await conn.execute(part)
                if step is not None:
                    await migration_step(step)[1](conn)
            await conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES ($1, now())", version
            )

    async def close(self) -> None:
        await self._db.close()

    @property
    def _pool(self) -> Any:
        """The asyncpg pool (None once closed)."""
        return self._db.pool

    # -- accepting: a notice to the watchers ------------------------------------
    async def _accepted(self, c: Conn) -> None:
        """Wake the site's dispatchers (see watch): NOTIFY in the accepting transaction,
        so that a notice means committed work."""
        await c.execute(load("postgres", "watch").notify, channel=self.channel)

    # -- what this backend reports of itself ------------------------------------
    async def durability(self) -> dict[str, str]:
        async def q(conn: PgConn) -> dict[str, str]:
            r = await conn.fetchrow(
                "SELECT current_setting('synchronous_commit') AS synchronous_commit,"
                " current_setting('fsync') AS fsync,"
                " current_setting('full_page_writes') AS full_page_writes,"
                " current_setting('server_version') AS server_version,"
                " coalesce(current_schema(), '') AS schema"
            )
            return {"backend": "postgresql", **{k: str(v) for k, v in r.items()}}

        return await self._db.call(q)

    # -- change notices -----------------------------------------------------------
    async def watch(self, on_change: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """LISTEN on the store's channel, on a connection of its own: accept() notifies
        it in the accepting transaction, so a notice means committed work."""
        self._db.live()
        try:
            conn = await asyncpg.connect(
                self._dsn, timeout=CONNECT_TIMEOUT, server_settings=self._settings
            )
            await conn.add_listener(self.channel, lambda *_: on_change())
        except _ERRORS as exc:
            log.warning(f"no change notices from PostgreSQL ({exc}): polling only")

            async def nothing() -> None:
                return None

            return nothing

        async def stop() -> None:
            with contextlib.suppress(*_ERRORS):
                await conn.close(timeout=5)

        return stop


if TYPE_CHECKING:

    def _conforms(store: PostgresStore) -> Store:
        return store
