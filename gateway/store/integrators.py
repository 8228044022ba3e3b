"""The HTTP API's part of the store: integrators, submissions, the webhook outbox.

One implementation for both backends, over the store's driver (driver.py) and the
queries in sql/queries/integrators*.sql. Webhooks are claimed under a lease, like
outbound work: the due rows are read in claim order and taken in the same transaction;
on PostgreSQL the read locks them ``FOR UPDATE … SKIP LOCKED`` (the per-backend
fragment), so several gateway processes on one database never post the same webhook at
once; SQLite's single writer holds them until it commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from gateway.store._common import aware
from gateway.store.driver import Conn, OnDriver, Row, opt_when, when
from gateway.store.records import (
    ClaimedWebhook,
    Integrator,
    StoreError,
    Submission,
    WebhookEntry,
    WebhookEvent,
)

WEBHOOK_SETTLED = ("sent", "failed", "pending")


def _integrator(r: Row) -> Integrator:
    return Integrator(
        r["name"],
        r["webhook_url"],
        r["webhook_secret"],
        when(r["created_at"]),
        opt_when(r["revoked_at"]),
    )


def _submission(r: Row) -> Submission:
    return Submission(
        r["message_id"],
        r["integrator"],
        r["idempotency_key"],
        r["fingerprint"],
        when(r["created_at"]),
    )


class Integrators(OnDriver):
    """The integrator, submission and webhook methods of the Store protocol."""

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
        q, at = self._sql("integrators"), aware(now)

        async def tx(c: Conn) -> None:
            added = await c.execute(
                q.integrator_add,
                name=name,
                token_sha256=token_sha256,
                webhook_url=webhook_url,
                webhook_secret=webhook_secret,
                now=at,
            )
            if not added:
                raise StoreError(f"integrator {name} exists (names are never reused)")

        await self._db.transaction(tx)

    async def integrator_revoke(self, name: str, *, now: datetime) -> bool:
        q, at = self._sql("integrators"), aware(now)

        async def tx(c: Conn) -> bool:
            return await c.execute(q.integrator_revoke, name=name, now=at) > 0

        return await self._db.transaction(tx)

    async def integrators(self) -> list[Integrator]:
        q = self._sql("integrators")

        async def read(c: Conn) -> list[Integrator]:
            return [_integrator(r) for r in await c.fetch(q.integrators)]

        return await self._db.read(read)

    async def integrator_for_token(self, token_sha256: str) -> Integrator | None:
        q = self._sql("integrators")

        async def read(c: Conn) -> Integrator | None:
            r = await c.fetchrow(q.integrator_for_token, token_sha256=token_sha256)
            return None if r is None else _integrator(r)

        return await self._db.read(read)

    # -- submissions ------------------------------------------------------------
    async def submission_reserve(
        self, submission: Submission, *, forget_before: datetime
    ) -> Submission:
        s, q = submission, self._sql("integrators")
        key = {"integrator": s.integrator, "key": s.idempotency_key}
        at, cutoff = aware(s.created), aware(forget_before)

        async def tx(c: Conn) -> Submission:
            if s.idempotency_key is not None:
                await c.execute(q.submission_forget_key, cutoff=cutoff, **key)
            added = await c.execute(
                q.submission_add,
                message_id=s.message_id,
                fingerprint=s.fingerprint,
                created=at,
                **key,
            )
            if added:
                return s
            r = await c.fetchrow(q.submission_by_key, **key)
            if r is None:  # pragma: no cover - the conflicting row is there
                raise StoreError(f"submission {s.message_id} neither added nor found")
            return _submission(r)

        return await self._db.transaction(tx)

    async def submission(self, message_id: str) -> Submission | None:
        q = self._sql("integrators")

        async def read(c: Conn) -> Submission | None:
            r = await c.fetchrow(q.submission, message_id=message_id)
            return None if r is None else _submission(r)

        return await self._db.read(read)

    # -- webhooks ---------------------------------------------------------------
    async def webhook_enqueue(self, events: Sequence[WebhookEvent], *, now: datetime) -> None:
        q, at = self._sql("integrators"), aware(now)
        rows = [
            {
                "id": e.webhook_id,
                "integrator": e.integrator,
                "kind": e.kind,
                "message_id": e.message_id,
                "body": e.body,
                "now": at,
            }
            for e in events
        ]

        async def tx(c: Conn) -> None:
            await c.executemany(q.webhook_enqueue, rows)

        if rows:
            await self._db.transaction(tx)

    async def webhook_claim(
        self, *, owner: str, limit: int, lease_seconds: float, now: datetime
    ) -> list[ClaimedWebhook]:
        q, at = self._sql("integrators"), aware(now)
        until = at + timedelta(seconds=lease_seconds)

        async def tx(c: Conn) -> list[ClaimedWebhook]:
            rows = await c.fetch(q.webhook_due, now=at, limit=limit)
            await c.executemany(
                q.webhook_take,
                [{"id": r["id"], "owner": owner, "until": until, "now": at} for r in rows],
            )
            out = []
            for r in rows:
                live = r["revoked_at"] is None
                event = WebhookEvent(
                    r["id"], r["integrator"], r["kind"], r["message_id"], bytes(r["body"])
                )
                out.append(
                    ClaimedWebhook(
                        event,
                        r["attempts"] + 1,
                        r["webhook_url"] if live else None,
                        r["webhook_secret"] if live else None,
                    )
                )
            return out

        if limit <= 0:
            return []
        return await self._db.transaction(tx)

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
        q, at = self._sql("integrators"), aware(now)
        due = at if next_attempt is None else aware(next_attempt)

        async def tx(c: Conn) -> None:
            await c.execute(
                q.webhook_settle,
                id=webhook_id,
                owner=owner,
                state=state,
                due=due,
                reason=reason,
                now=at,
            )

        await self._db.transaction(tx)

    async def webhooks(self, *, message_id: str | None = None) -> list[WebhookEntry]:
        q = self._sql("integrators")

        async def read(c: Conn) -> list[WebhookEntry]:
            return [WebhookEntry(*r) for r in await c.fetch(q.webhooks, message_id=message_id)]

        return await self._db.read(read)
