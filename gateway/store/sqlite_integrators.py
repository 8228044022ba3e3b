"""The HTTP API's part of the SQLite store: integrators, submissions, the webhook outbox.

A mixin of :class:`gateway.store.sqlite.SqliteStore`: every call runs through the
store's ``_read`` / ``_write`` (one thread, one ``BEGIN IMMEDIATE … COMMIT``), with
the same time encoding (UTC ISO 8601 text with microseconds).
"""

from __future__ import annotations

import sqlite3
from abc import abstractmethod
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from gateway.store._common import aware
from gateway.store.base import (
    ClaimedWebhook,
    Integrator,
    StoreError,
    Submission,
    WebhookEntry,
    WebhookEvent,
)

T = TypeVar("T")
WEBHOOK_SETTLED = ("sent", "failed", "pending")


def _ts(moment: datetime) -> str:
    return aware(moment).isoformat(timespec="microseconds")


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _integrator(r: sqlite3.Row | tuple[object, ...]) -> Integrator:
    return Integrator(
        name=str(r[0]),
        webhook_url=None if r[1] is None else str(r[1]),
        webhook_secret=None if r[2] is None else str(r[2]),
        created=_dt(str(r[3])),
        revoked=None if r[4] is None else _dt(str(r[4])),
    )


def _submission(r: tuple[object, ...]) -> Submission:
    return Submission(
        message_id=str(r[0]),
        integrator=str(r[1]),
        idempotency_key=None if r[2] is None else str(r[2]),
        fingerprint=str(r[3]),
        created=_dt(str(r[4])),
    )


_INTEGRATOR_COLUMNS = "name, webhook_url, webhook_secret, created_at, revoked_at"
_SUBMISSION_COLUMNS = "message_id, integrator, idempotency_key, fingerprint, created_at"


class SqliteIntegrators:
    """The integrator, submission and webhook methods of the Store protocol."""

    @abstractmethod
    async def _read(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> T: ...  # provided by SqliteStore

    @abstractmethod
    async def _write(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> T: ...  # provided by SqliteStore

    # -- integrators ------------------------------------------------------------
    async def integrator_add(
        self,
        name: str,
        *,
        token_sha256: str,
        webhook_url: str | None,
        webhook_secret: str | None,
        now: datetime,
    ) -> None:
        at = _ts(now)

        def tx(c: sqlite3.Connection) -> None:
            cur = c.execute(
                "INSERT INTO integrators (name, token_sha256, webhook_url, webhook_secret,"
                " created_at, revoked_at) VALUES (?, ?, ?, ?, ?, NULL)"
                " ON CONFLICT (name) DO NOTHING",
                (name, token_sha256, webhook_url, webhook_secret, at),
            )
            if cur.rowcount == 0:
                raise StoreError(f"integrator {name} exists (names are never reused)")

        await self._write(tx)

    async def integrator_revoke(self, name: str, *, now: datetime) -> bool:
        at = _ts(now)

        def tx(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE integrators SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (at, name),
            )
            return cur.rowcount > 0

        return await self._write(tx)

    async def integrators(self) -> list[Integrator]:
        def q(c: sqlite3.Connection) -> list[Integrator]:
            rows = c.execute(
                f"SELECT {_INTEGRATOR_COLUMNS} FROM integrators ORDER BY name"  # noqa: S608
            ).fetchall()
            return [_integrator(r) for r in rows]

        return await self._read(q)

    async def integrator_for_token(self, token_sha256: str) -> Integrator | None:
        def q(c: sqlite3.Connection) -> Integrator | None:
            row = c.execute(
                f"SELECT {_INTEGRATOR_COLUMNS} FROM integrators"  # noqa: S608
                " WHERE token_sha256 = ? AND revoked_at IS NULL",
                (token_sha256,),
            ).fetchone()
            return None if row is None else _integrator(row)

        return await self._read(q)

    # -- submissions ------------------------------------------------------------
    async def submission_reserve(
        self, submission: Submission, *, forget_before: datetime
    ) -> Submission:
        s = submission
        at, cutoff = _ts(s.created), _ts(forget_before)

        def tx(c: sqlite3.Connection) -> Submission:
            if s.idempotency_key is not None:
                c.execute(
                    "UPDATE submissions SET idempotency_key = NULL"
                    " WHERE integrator = ? AND idempotency_key = ? AND created_at < ?",
                    (s.integrator, s.idempotency_key, cutoff),
                )
            cur = c.execute(
                "INSERT INTO submissions (message_id, integrator, idempotency_key, fingerprint,"
                " created_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (integrator, idempotency_key) DO NOTHING",
                (s.message_id, s.integrator, s.idempotency_key, s.fingerprint, at),
            )
            if cur.rowcount:
                return s
            row = c.execute(
                f"SELECT {_SUBMISSION_COLUMNS} FROM submissions"  # noqa: S608
                " WHERE integrator = ? AND idempotency_key = ?",
                (s.integrator, s.idempotency_key),
            ).fetchone()
            return _submission(row)

        return await self._write(tx)

    async def submission(self, message_id: str) -> Submission | None:
        def q(c: sqlite3.Connection) -> Submission | None:
            row = c.execute(
                f"SELECT {_SUBMISSION_COLUMNS} FROM submissions WHERE message_id = ?",  # noqa: S608
                (message_id,),
            ).fetchone()
            return None if row is None else _submission(row)

        return await self._read(q)

    # -- webhooks ---------------------------------------------------------------
    async def webhook_enqueue(self, events: Sequence[WebhookEvent], *, now: datetime) -> None:
        at = _ts(now)
        batch = list(events)

        def tx(c: sqlite3.Connection) -> None:
            c.executemany(
                "INSERT INTO webhooks (id, integrator, kind, message_id, body, state, attempts,"
                " next_attempt, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                [
                    (e.webhook_id, e.integrator, e.kind, e.message_id, e.body, at, at, at)
                    for e in batch
                ],
            )

        if batch:
            await self._write(tx)

    async def webhook_claim(
        self, *, owner: str, limit: int, lease_seconds: float, now: datetime
    ) -> list[ClaimedWebhook]:
        at = _ts(now)
        until = _ts(aware(now) + timedelta(seconds=lease_seconds))

        def tx(c: sqlite3.Connection) -> list[ClaimedWebhook]:
            rows = c.execute(
                "SELECT w.id, w.integrator, w.kind, w.message_id, w.body, w.attempts,"
                " i.webhook_url, i.webhook_secret, i.revoked_at"
                " FROM webhooks w JOIN integrators i ON i.name = w.integrator"
                " WHERE (w.state = 'pending' AND w.next_attempt <= :now)"
                "  OR (w.state = 'sending' AND w.lease_until < :now)"
                " ORDER BY w.next_attempt, w.id LIMIT :limit",
                {"now": at, "limit": limit},
            ).fetchall()
            out: list[ClaimedWebhook] = []
            for wid, who, kind, mid, body, attempts, url, secret, revoked in rows:
                c.execute(
                    "UPDATE webhooks SET state = 'sending', lease_owner = ?, lease_until = ?,"
                    " attempts = attempts + 1, updated_at = ? WHERE id = ?",
                    (owner, until, at, wid),
                )
                live = revoked is None
                out.append(
                    ClaimedWebhook(
                        WebhookEvent(wid, who, kind, mid, bytes(body)),
                        attempts + 1,
                        url if live else None,
                        secret if live else None,
                    )
                )
            return out

        if limit <= 0:
            return []
        return await self._write(tx)

    async def webhook_settle(
        self,
        webhook_id: str,
        *,
        owner: str,
        state: str,
        reason: str,
        now: datetime,
        next_attempt: datetime | None = None,
    ) -> None:
        if state not in WEBHOOK_SETTLED or (state == "pending") != (next_attempt is not None):
            raise StoreError(f"cannot settle a webhook as {state!r} (next_attempt for pending)")
        at = _ts(now)
        due = at if next_attempt is None else _ts(next_attempt)

        def tx(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE webhooks SET state = ?, next_attempt = ?, lease_owner = NULL,"
                " lease_until = NULL, last_reason = ?, updated_at = ?"
                " WHERE id = ? AND state = 'sending' AND lease_owner = ?",
                (state, due, reason, at, webhook_id, owner),
            )

        await self._write(tx)

    async def webhooks(self, *, message_id: str | None = None) -> list[WebhookEntry]:
        def q(c: sqlite3.Connection) -> list[WebhookEntry]:
            rows = c.execute(
                "SELECT id, integrator, kind, message_id, state, attempts, last_reason"
                " FROM webhooks WHERE (:mid IS NULL OR message_id = :mid)"
                " ORDER BY created_at, id",
                {"mid": message_id},
            ).fetchall()
            return [WebhookEntry(*r) for r in rows]

        return await self._read(q)
