"""The first start's re-check of the receipts kept before v11, in the SQLite store
(Store.kept_receipts_to_recheck and settle_kept_receipts; review 11c).

Rules:
- The waiting rows are the open destination rows whose reason is RECHECK_REASON (set
  only by the v11 migration step, gateway/store/migrate_v11.py); their receipts are
  chosen as that step chose them (migrate_v11.sqlite_kept), acknowledged first, first.
- Settling is ONE transaction: the verified receipts are recorded as any receipt at the
  origin (record_receipt_rows), each recorded row's ``receipt_at`` then set to when the
  old gateway acknowledged it (when this site first recorded it); a refused receipt's
  own history takes an ``acked`` row with the reason (so it is not chosen again); an
  unconfirmed row takes its reason only while it is still waiting, and stays open.
"""

from __future__ import annotations

import sqlite3
from abc import abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from gateway.store._common import RECHECK_REASON
from gateway.store.migrate_v11 import sqlite_kept
from gateway.store.records import InState, KeptReceipt, KeptReceipts, ReceiptOutcome, ReceiptRecord
from gateway.store.sqlite_destinations import record_receipt_rows
from gateway.store.sqlite_rows import add_history, dt, ts

T = TypeVar("T")

_WAITING = (
    "SELECT message_id, site FROM destinations WHERE outcome = 'open' AND reason = ?"
    " ORDER BY message_id, site"
)
_WHEN = (
    "UPDATE destinations SET receipt_at = ? WHERE message_id = ? AND site = ?"
    " AND receipt_digest = ?"
)
_UNCONFIRMED = (
    "UPDATE destinations SET reason = ?, updated_at = ?"
    " WHERE message_id = ? AND site = ? AND outcome = 'open' AND reason = ?"
)


class SqliteKeptReceipts:
    """The kept receipts' re-check methods of the Store protocol."""

    @abstractmethod
    async def _read(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> T: ...  # provided by SqliteStore

    @abstractmethod
    async def _write(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> T: ...  # provided by SqliteStore

    async def kept_receipts_to_recheck(self) -> KeptReceipts:
        def q(c: sqlite3.Connection) -> KeptReceipts:
            rows = [(m, s) for m, s in c.execute(_WAITING, (RECHECK_REASON,)).fetchall()]
            kept = sqlite_kept(c, set(rows))
            return KeptReceipts(
                tuple(rows),
                tuple(KeptReceipt(k.answers, k.site, k.receipt_id, dt(k.at)) for k in kept),
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
        at = ts(now)

        def tx(c: sqlite3.Connection) -> list[ReceiptOutcome]:
            out = record_receipt_rows(c, [r for r, _ in verified], at)
            for (r, acked), o in zip(verified, out, strict=True):
                if o.status == "recorded":
                    c.execute(_WHEN, (ts(acked), r.message_id, r.site, r.receipt_digest))
            for receipt_id, reason in refused:
                add_history(c, receipt_id, None, InState.ACKED.value, reason, at)
            for message_id, site, reason in unconfirmed:
                c.execute(_UNCONFIRMED, (reason, at, message_id, site, RECHECK_REASON))
            return out

        return await self._write(tx)
