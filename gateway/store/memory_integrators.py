"""The HTTP API's part of the in-memory store: integrators, submissions, the webhook
outbox (as integrators.py for the SQL backends, with the schema's constraints: unique
names and token hashes, submissions and webhooks only of a known integrator)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from gateway.store.memory_tables import IntegratorRow, MemoryTables, Tables, WebhookRow, utc
from gateway.store.records import (
    ClaimedWebhook,
    Integrator,
    StoreError,
    Submission,
    WebhookEntry,
    WebhookEvent,
)

WEBHOOK_SETTLED = ("sent", "failed", "pending")
WEBHOOK_KINDS = ("received", "delivered", "failed", "completed")


def _integrator(name: str, row: IntegratorRow) -> Integrator:
    return Integrator(name, row.webhook_url, row.webhook_secret, row.created_at, row.revoked_at)


def _known(t: Tables, integrator: str) -> None:
    if integrator not in t.integrators:
        raise StoreError(f"no integrator {integrator!r} (a foreign key of the table)")


class MemoryIntegrators(MemoryTables):
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
        at = utc(now)

        def tx(t: Tables) -> None:
            if name in t.integrators:
                raise StoreError(f"integrator {name} exists (names are never reused)")
            if any(r.token_sha256 == token_sha256 for r in t.integrators.values()):
                raise StoreError("that token is another integrator's (token hashes are unique)")
            t.integrators[name] = IntegratorRow(token_sha256, webhook_url, webhook_secret, at)

        await self._write(tx)

    async def integrator_revoke(self, name: str, *, now: datetime) -> bool:
        at = utc(now)

        def tx(t: Tables) -> bool:
            row = t.integrators.get(name)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = at
            return True

        return await self._write(tx)

    async def integrators(self) -> list[Integrator]:
        def q(t: Tables) -> list[Integrator]:
            return [_integrator(name, t.integrators[name]) for name in sorted(t.integrators)]

        return await self._read(q)

    async def integrator_for_token(self, token_sha256: str) -> Integrator | None:
        def q(t: Tables) -> Integrator | None:
            for name, row in t.integrators.items():
                if row.token_sha256 == token_sha256 and row.revoked_at is None:
                    return _integrator(name, row)
            return None

        return await self._read(q)

    # -- submissions ------------------------------------------------------------
    async def submission_reserve(
        self, submission: Submission, *, forget_before: datetime
    ) -> Submission:
        s = replace(submission, created=utc(submission.created))
        cutoff = utc(forget_before)

        def same_key(row: Submission) -> bool:
            return row.integrator == s.integrator and row.idempotency_key == s.idempotency_key

        def tx(t: Tables) -> Submission:
            if s.idempotency_key is not None:
                for mid, row in list(t.submissions.items()):
                    if same_key(row) and row.created < cutoff:
                        t.submissions[mid] = replace(row, idempotency_key=None)
                held = [r for r in t.submissions.values() if same_key(r)]
                if held:
                    return replace(held[0])
            _known(t, s.integrator)
            if s.message_id in t.submissions:
                raise StoreError(f"submission {s.message_id} exists")
            t.submissions[s.message_id] = s
            return replace(s)

        return await self._write(tx)

    async def submission(self, message_id: str) -> Submission | None:
        def q(t: Tables) -> Submission | None:
            row = t.submissions.get(message_id)
            return None if row is None else replace(row)

        return await self._read(q)

    # -- webhooks ---------------------------------------------------------------
    async def webhook_enqueue(self, events: Sequence[WebhookEvent], *, now: datetime) -> None:
        at = utc(now)
        batch = list(events)

        def tx(t: Tables) -> None:
            for e in batch:
                _known(t, e.integrator)
                if e.kind not in WEBHOOK_KINDS:
                    raise StoreError(f"unknown webhook kind {e.kind!r}")
                if e.webhook_id not in t.webhooks:
                    t.webhooks[e.webhook_id] = WebhookRow(
                        e.integrator, e.kind, e.message_id, bytes(e.body), at, at, at
                    )

        if batch:
            await self._write(tx)

    async def webhook_claim(
        self, *, owner: str, limit: int, lease_seconds: float, now: datetime
    ) -> list[ClaimedWebhook]:
        at = utc(now)
        until = at + timedelta(seconds=lease_seconds)

        def tx(t: Tables) -> list[ClaimedWebhook]:
            due = sorted(
                (w.next_attempt, wid)
                for wid, w in t.webhooks.items()
                if (w.state == "pending" and w.next_attempt <= at)
                or (w.state == "sending" and w.lease_until is not None and w.lease_until < at)
            )
            out: list[ClaimedWebhook] = []
            for _, wid in due[:limit]:
                w = t.webhooks[wid]
                w.state, w.lease_owner, w.lease_until = "sending", owner, until
                w.attempts, w.updated_at = w.attempts + 1, at
                who = t.integrators[w.integrator]
                live = who.revoked_at is None
                event = WebhookEvent(wid, w.integrator, w.kind, w.message_id, w.body)
                out.append(
                    ClaimedWebhook(
                        event,
                        w.attempts,
                        who.webhook_url if live else None,
                        who.webhook_secret if live else None,
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
        at = utc(now)
        due = at if next_attempt is None else utc(next_attempt)

        def tx(t: Tables) -> None:
            w = t.webhooks.get(webhook_id)
            if w is None or w.state != "sending" or w.lease_owner != owner:
                return
            w.state, w.next_attempt, w.lease_owner, w.lease_until = state, due, None, None
            w.last_reason, w.updated_at = reason, at

        await self._write(tx)

    async def webhooks(self, *, message_id: str | None = None) -> list[WebhookEntry]:
        def q(t: Tables) -> list[WebhookEntry]:
            rows = sorted(
                (w.created_at, wid, w)
                for wid, w in t.webhooks.items()
                if message_id is None or w.message_id == message_id
            )
            return [
                WebhookEntry(
                    wid, w.integrator, w.kind, w.message_id, w.state, w.attempts, w.last_reason
                )
                for _, wid, w in rows
            ]

        return await self._read(q)
