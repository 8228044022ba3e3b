"""The SQL functions the SQLite store's audit trigger hashes with (SQLite only).

Strategy-specific: SQLite has no SHA-256, so the ``history_audit`` trigger
(sql/sqlite/v3_audit.sql) calls the Python functions :func:`register_audit_functions`
puts on the connection. Every connection that may write history must register them
(sqlite.py's ``_connect`` does), or the insert fails ("no such function"), so nothing
is recorded without its entry. The audit methods themselves are audit.py's, shared.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from gateway.store.audit_chain import entry_hash, history_detail


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
    when = datetime.fromisoformat(at).astimezone(UTC)
    return entry_hash(seq, when, actor, action, subject, result, detail, bytes(prev))


def register_audit_functions(conn: sqlite3.Connection) -> None:
    """Give ``conn`` the functions the history trigger hashes with."""
    conn.create_function("valise_audit_hash", 8, _sql_hash, deterministic=True)
    conn.create_function("valise_audit_detail", 3, history_detail, deterministic=True)
