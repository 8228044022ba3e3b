"""The first start's re-check of the receipts kept before v11, in the PostgreSQL store
(Store.kept_receipts_to_recheck and settle_kept_receipts; review 11c).

Rules:
- The waiting rows are the open destination rows whose reason is RECHECK_REASON (set
  only by the v11 migration step, gateway/store/migrate_v11.py); their receipts are
  chosen as that step chose them (migrate_v11.postgres_kept), acknowledged first, first.
- Settling is ONE transaction: the verified receipts are recorded as any receipt at the
  origin (record_receipt_rows, under the messages' row locks), each recorded row's
  ``receipt_at`` then set to when the old gateway acknowledged it (when this site first
  recorded it); a refused receipt's own history takes an ``acked`` row with the reason
  (so it is not chosen again); an unconfirmed row takes its reason only while it is
  still waiting, and stays open.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from gateway.store._common import RECHECK_REASON, aware
from gateway.store.migrate_v11 import postgres_kept
from gateway.store.postgres_destinations import lock_messages, record_receipt_rows
from gateway.store.postgres_rows import Conn, add_history
from gateway.store.records import InState, KeptReceipt, KeptReceipts, ReceiptOutcome, ReceiptRecord

T = TypeVar("T")

_WAITING = """
SELECT message_id, site FROM destinations WHERE outcome = 'open' AND reason = $1
ORDER BY message_id, site
"""
_WHEN = """
UPDATE destinations SET receipt_at = $3 WHERE message_id = $1 AND site = $2
  AND receipt_digest = $4
"""
_UNCONFIRMED = """
UPDATE destinations SET reason = $3, updated_at = $4
WHERE message_id = $1 AND site = $2 AND outcome = 'open' AND reason = $5
"""


class PostgresKeptReceipts:
    """The kept receipts' re-check methods of the Store protocol."""

    @abstractmethod
    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T: ...  # provided by PostgresStore

    @abstractmethod
    async def _write(
        self, fn: Callable[[Conn], Awaitable[T]]
    ) -> T: ...  # provided by PostgresStore

    async def kept_receipts_to_recheck(self) -> KeptReceipts:
        async def q(conn: Conn) -> KeptReceipts:
            found = await conn.fetch(_WAITING, RECHECK_REASON)
            rows = [(r["message_id"], r["site"]) for r in found]
            kept = await postgres_kept(conn, set(rows))
            return KeptReceipts(
                tuple(rows),
                tuple(KeptReceipt(k.answers, k.site, k.receipt_id, aware(k.at)) for k in kept),
            )

        return await self._read(q)

    async def settle_kept_receipts(
        self,
        verified: Sequence[tuple[ReceiptRecord, datetime]],
        refused: Sequence[tuple[str, str]],
        unconfirmed: Sequence[tuple[str, str, str]],
        *,
        now: datetime,
    ) -> list[ReceiptOutcome]:
        at = aware(now)

        async def tx(conn: Conn) -> list[ReceiptOutcome]:
            # The envelope rows first (postgres_destinations.py: lock order).
            await lock_messages(
                conn, [r.message_id for r, _ in verified] + [m for m, _, _ in unconfirmed]
            )
            out = await record_receipt_rows(conn, [r for r, _ in verified], at)
            for (r, acked), o in zip(verified, out, strict=True):
                if o.status == "recorded":
                    await conn.execute(_WHEN, r.message_id, r.site, aware(acked), r.receipt_digest)
            for receipt_id, reason in refused:
                await add_history(conn, receipt_id, None, InState.ACKED.value, reason, at)
            for message_id, site, reason in unconfirmed:
                await conn.execute(_UNCONFIRMED, message_id, site, reason, at, RECHECK_REASON)
            return out

        return await self._write(tx)
