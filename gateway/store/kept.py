"""The first start's re-check of the receipts kept before v11 (Store.kept_receipts_to_recheck
and settle_kept_receipts; review 11c), one implementation for both backends over the
store's driver (sql/queries/kept.sql).

Rules:
- The waiting rows are the open destination rows whose reason is RECHECK_REASON (set
  only by the v11 migration step, gateway/store/migrate_v11.py); their receipts are
  chosen as that step chose them (migrate_v11.sqlite_kept / postgres_kept, on the
  connection under the driver), acknowledged first, first.
- Settling is ONE transaction: the verified receipts are recorded as any receipt at the
  origin (record_receipt_rows, under the messages' row locks), each recorded row's
  ``receipt_at`` then set to when the old gateway acknowledged it (when this site first
  recorded it); a refused receipt's own history takes an ``acked`` row with the reason
  (so it is not chosen again); an unconfirmed row takes its reason only while it is
  still waiting, and stays open.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from gateway.store._common import RECHECK_REASON, aware
from gateway.store.destinations import record_receipt_rows
from gateway.store.driver import Conn, OnDriver, when
from gateway.store.migrate_v11 import Kept, postgres_kept, sqlite_kept
from gateway.store.records import InState, KeptReceipt, KeptReceipts, ReceiptOutcome, ReceiptRecord
from gateway.store.rows import add_history, lock_messages


async def _kept(c: Conn, rows: set[tuple[str, str]]) -> list[Kept]:
    """The migration step's choice of kept receipts for ``rows``, on the raw connection
    (migrate_v11 runs inside the migration too, before any driver exists)."""
    raw = cast(Any, c).raw
    if c.backend == "sqlite":
        return sqlite_kept(raw, rows)
    return await postgres_kept(raw, rows)


class KeptReceiptsRecheck(OnDriver):
    """The kept receipts' re-check methods of the Store protocol."""

    async def kept_receipts_to_recheck(self) -> KeptReceipts:
        q = self._sql("kept")

        async def read(c: Conn) -> KeptReceipts:
            found = await c.fetch(q.waiting, recheck=RECHECK_REASON)
            rows = [(r[0], r[1]) for r in found]
            kept = await _kept(c, set(rows))
            return KeptReceipts(
                tuple(rows),
                tuple(KeptReceipt(k.answers, k.site, k.receipt_id, when(k.at)) for k in kept),
            )

        return await self._db.read(read)

    async def settle_kept_receipts(
        self,
        verified: Sequence[tuple[ReceiptRecord, datetime]],
        refused: Sequence[tuple[str, str]],
        unconfirmed: Sequence[tuple[str, str, str]],
        *,
        now: datetime,
    ) -> list[ReceiptOutcome]:
        q, at = self._sql("kept"), aware(now)

        async def tx(c: Conn) -> list[ReceiptOutcome]:
            # The envelope rows first (rows.py: lock order).
            await lock_messages(
                c, [r.message_id for r, _ in verified] + [m for m, _, _ in unconfirmed]
            )
            out = await record_receipt_rows(c, [r for r, _ in verified], at)
            for (r, acked), o in zip(verified, out, strict=True):
                if o.status == "recorded":
                    await c.execute(
                        q.acked_at,
                        message_id=r.message_id,
                        site=r.site,
                        at=aware(acked),
                        digest=r.receipt_digest,
                    )
            for receipt_id, reason in refused:
                await add_history(c, receipt_id, None, InState.ACKED.value, reason, at)
            for message_id, site, reason in unconfirmed:
                await c.execute(
                    q.unconfirmed,
                    message_id=message_id,
                    site=site,
                    reason=reason,
                    at=at,
                    recheck=RECHECK_REASON,
                )
            return out

        return await self._db.transaction(tx)
