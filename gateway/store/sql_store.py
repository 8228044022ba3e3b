"""What the two SQL stores share: the Store protocol's calls, each concern written once
over the store's driver (``self._db``), and the Python steps of the migration files.

:class:`~gateway.store.sqlite.SqliteStore` and
:class:`~gateway.store.postgres.PostgresStore` add their own connection and driver,
migration, durability report and change notices.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.store import migrate_v11
from gateway.store.accept import Accepting
from gateway.store.audit import Audit
from gateway.store.claim import Claiming
from gateway.store.destinations import Destinations
from gateway.store.enroll import Enroll
from gateway.store.inbound import Inbound
from gateway.store.integrators import Integrators
from gateway.store.kept import KeptReceiptsRecheck
from gateway.store.operator import Operator
from gateway.store.outbound import Outbound
from gateway.store.records import StoreError
from gateway.store.trust import Trust

SqliteStep = Callable[[sqlite3.Connection], None]
PostgresStep = Callable[[Any], Awaitable[None]]  # of an asyncpg connection

# The Python step of a migration file (``-- @step NAME``): name -> SQLite's, PostgreSQL's.
_STEPS: dict[str, tuple[SqliteStep, PostgresStep]] = {
    migrate_v11.STEP: (migrate_v11.sqlite_step, migrate_v11.postgres_step),
}


def migration_step(name: str) -> tuple[SqliteStep, PostgresStep]:
    """The step ``name`` of a migration file, per backend. Raises StoreError."""
    if name not in _STEPS:
        raise StoreError(f"unknown migration step {name!r}")
    return _STEPS[name]


class SqlStore(
    Accepting,
    Claiming,
    Inbound,
    Operator,
    Integrators,
    Trust,
    Audit,
    Enroll,
    Destinations,
    Outbound,
    KeptReceiptsRecheck,
):
    """The Store protocol's calls over ``self._db`` (a :class:`~gateway.store.driver.Driver`)."""
