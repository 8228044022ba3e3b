"""The HTTP API's part of the PostgreSQL store: integrators, submissions, the webhook outbox.

A mixin of :class:`gateway.store.postgres.PostgresStore`: every call runs through
the store's ``_read`` / ``_write`` (one transaction, retried on a deadlock).
Webhooks are claimed with ``FOR UPDATE SKIP LOCKED`` under a lease, so several
gateway processes on one database never post the same webhook at once.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

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
Conn = Any  # asyncpg.Connection
WEBHOOK_SETTLED = ("sent", "failed", "pending")

_CLAIM_WEBHOOKS = """
WITH due AS (
    SELECT w.id FROM webhooks w
    WHERE (w.state = 'pending' AND w.next_attempt <= $1)
       OR (w.state = 'sending' AND w.lease_until < $1)
    ORDER BY w.next_attempt, w.id
    LIMIT $2
    FOR UPDATE OF w SKIP LOCKED
), claimed AS (
    UPDATE webhooks w
    SET state = 'sending', lease_owner = $3, lease_until = $4,
        attempts = w.attempts + 1, updated_at = $1
    FROM due WHERE w.id = due.id
    RETURNING w.id, w.integrator, w.kind, w.message_id, w.body, w.attempts, w.next_attempt
)
SELECT c.id, c.integrator, c.kind, c.message_id, c.body, c.attempts,
       i.webhook_url, i.webhook_secret, i.revoked_at
FROM claimed c JOIN integrators i ON i.name = c.integrator
ORDER BY c.next_attempt, c.id
"""


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


def _integrator(r: Any) -> Integrator:
    created = _utc(r["created_at"])
    assert created is not None
    return Integrator(
        r["name"], r["webhook_url"], r["webhook_secret"], created, _utc(r["revoked_at"])
    )


def _submission(r: Any) -> Submission:
    created = _utc(r["created_at"])
    assert created is not None
    return Submission(
        r["message_id"], r["integrator"], r["idempotency_key"], r["fingerprint"], created
    )


_INTEGRATOR = "SELECT name, webhook_url, webhook_secret, created_at, revoked_at FROM integrators"
_SUBMISSION = (
    "SELECT message_id, integrator, idempotency_key, fingerprint, created_at FROM submissions"
)


class PostgresIntegrators:
    """The integrator, submission and webhook methods of the Store protocol."""

    @abstractmethod
    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T: ...  # provided by PostgresStore

    @abstractmethod
    async def _write(
        self, fn: Callable[[Conn], Awaitable[T]]
    ) -> T: ...  # provided by PostgresStore

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
        at = aware(now)

        async def tx(conn: Conn) -> None:
            added = await conn.fetchval(
                "INSERT INTO integrators (name, token_sha256, webhook_url, webhook_secret,"
                " created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, NULL)"
                " ON CONFLICT (name) DO NOTHING RETURNING true",
                name,
                token_sha256,
                webhook_url,
                webhook_secret,
                at,
            )
            if not added:
                raise StoreError(f"integrator {name} exists (names are never reused)")

        await self._write(tx)

    async def integrator_revoke(self, name: str, *, now: datetime) -> bool:
        at = aware(now)

        async def tx(conn: Conn) -> bool:
            done = await conn.fetchval(
                "UPDATE integrators SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL"
                " RETURNING true",
                name,
                at,
            )
            return bool(done)

        return await self._write(tx)

    async def integrators(self) -> list[Integrator]:
        async def q(conn: Conn) -> list[Integrator]:
            return [_integrator(r) for r in await conn.fetch(_INTEGRATOR + " ORDER BY name")]

        return await self._read(q)

    async def integrator_for_token(self, token_sha256: str) -> Integrator | None:
        async def q(conn: Conn) -> Integrator | None:
            r = await conn.fetchrow(
                _INTEGRATOR + " WHERE token_sha256 = $1 AND revoked_at IS NULL", token_sha256
            )
            return None if r is None else _integrator(r)

        return await self._read(q)

    # -- submissions ------------------------------------------------------------
    async def submission_reserve(
        self, submission: Submission, *, forget_before: datetime
    ) -> Submission:
        s = submission
        at, cutoff = aware(s.created), aware(forget_before)

        async def tx(conn: Conn) -> Submission:
            if s.idempotency_key is not None:
                await conn.execute(
                    "UPDATE submissions SET idempotency_key = NULL"
                    " WHERE integrator = $1 AND idempotency_key = $2 AND created_at < $3",
                    s.integrator,
                    s.idempotency_key,
                    cutoff,
                )
            added = await conn.fetchval(
                "INSERT INTO submissions (message_id, integrator, idempotency_key, fingerprint,"
                " created_at) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (integrator, idempotency_key) DO NOTHING RETURNING true",
                s.message_id,
                s.integrator,
                s.idempotency_key,
                s.fingerprint,
                at,
            )
            if added:
                return s
            r = await conn.fetchrow(
                _SUBMISSION + " WHERE integrator = $1 AND idempotency_key = $2",
                s.integrator,
                s.idempotency_key,
            )
            return _submission(r)

        return await self._write(tx)

    async def submission(self, message_id: str) -> Submission | None:
        async def q(conn: Conn) -> Submission | None:
            r = await conn.fetchrow(_SUBMISSION + " WHERE message_id = $1", message_id)
            return None if r is None else _submission(r)

        return await self._read(q)

    # -- webhooks ---------------------------------------------------------------
    async def webhook_enqueue(self, events: Sequence[WebhookEvent], *, now: datetime) -> None:
        at = aware(now)
        batch = list(events)

        async def tx(conn: Conn) -> None:
            await conn.executemany(
                "INSERT INTO webhooks (id, integrator, kind, message_id, body, state, attempts,"
                " next_attempt, created_at, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6)"
                " ON CONFLICT (id) DO NOTHING",
                [(e.webhook_id, e.integrator, e.kind, e.message_id, e.body, at) for e in batch],
            )

        if batch:
            await self._write(tx)

    async def webhook_claim(
        self, *, owner: str, limit: int, lease_seconds: float, now: datetime
    ) -> list[ClaimedWebhook]:
        at = aware(now)
        until = at + timedelta(seconds=lease_seconds)

        async def tx(conn: Conn) -> list[ClaimedWebhook]:
            rows = await conn.fetch(_CLAIM_WEBHOOKS, at, limit, owner, until)
            out = []
            for r in rows:
                live = r["revoked_at"] is None
                event = WebhookEvent(
                    r["id"], r["integrator"], r["kind"], r["message_id"], bytes(r["body"])
                )
                out.append(
                    ClaimedWebhook(
                        event,
                        r["attempts"],
                        r["webhook_url"] if live else None,
                        r["webhook_secret"] if live else None,
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
        at = aware(now)
        due = at if next_attempt is None else aware(next_attempt)

        async def tx(conn: Conn) -> None:
            await conn.execute(
                "UPDATE webhooks SET state = $3, next_attempt = $4, lease_owner = NULL,"
                " lease_until = NULL, last_reason = $5, updated_at = $6"
                " WHERE id = $1 AND state = 'sending' AND lease_owner = $2",
                webhook_id,
                owner,
                state,
                due,
                reason,
                at,
            )

        await self._write(tx)

    async def webhooks(self, *, message_id: str | None = None) -> list[WebhookEntry]:
        async def q(conn: Conn) -> list[WebhookEntry]:
            rows = await conn.fetch(
                "SELECT id, integrator, kind, message_id, state, attempts, last_reason"
                " FROM webhooks WHERE ($1::text IS NULL OR message_id = $1)"
                " ORDER BY created_at, id",
                message_id,
            )
            return [WebhookEntry(*r.values()) for r in rows]

        return await self._read(q)
