"""The trust part of the store: time-stamp tokens, directory fetches, escrowed content
keys, re-sealed copies and renewed hop acknowledgements.

One implementation for both backends over the store's driver (sql/queries/trust*.sql).
Envelopes awaiting a time-stamp carry ``stamp_pending`` (the column default, so the
accepting transaction sets it) under a partial index; settling clears it in the same
transaction that stores the tokens (sql/<backend>/v4_timestamps.sql). Two workers of
one site may both stamp an envelope: the second token is dropped (ON CONFLICT DO
NOTHING).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from envelope.framing import PREFIX_BYTES
from envelope.limits import MAX_HEAD_XML_BYTES
from gateway.store._common import aware, check_limit
from gateway.store.destinations import requeue as requeue_deliveries
from gateway.store.driver import Conn, OnDriver, when
from gateway.store.queries import Queries
from gateway.store.records import DirectoryFetch, PendingStamp, TimestampRecord


def head_bytes(prefix: bytes, max_head: int = MAX_HEAD_XML_BYTES) -> int:
    """How many bytes of a stored copy its prefix and head take (the head's length is
    in the prefix, envelope/framing.py; at most ``max_head`` of it). SQLite's queries
    call it as valise_head_bytes (sqlite.py); PostgreSQL's write it out (_head_bytes)."""
    length = int.from_bytes(prefix[-4:], "big") if len(prefix) == PREFIX_BYTES else 0
    return PREFIX_BYTES + min(length, max_head)


async def _head(c: Conn, q: Queries, message_id: str) -> int:
    """head_bytes() of the stored copy of ``message_id``."""
    prefix = await c.fetchval(q.head, message_id=message_id, n=PREFIX_BYTES)
    return head_bytes(bytes(prefix or b""))


class Trust(OnDriver):
    """The timestamp, directory-fetch, escrow and re-sealing methods of the Store protocol."""

    async def timestamp_add(self, records: Sequence[TimestampRecord]) -> None:
        await self.timestamp_settle(records, done=())

    async def timestamp_settle(
        self, records: Sequence[TimestampRecord], *, done: Sequence[str]
    ) -> None:
        q = self._sql("trust")
        rows = [
            {
                "message_id": r.message_id,
                "kind": r.kind,
                "digest": r.digest,
                "token": r.token,
                "at": aware(r.at),
                "digested": r.digested or None,
            }
            for r in records
        ]
        ids = [{"message_id": m, "yes": True, "no": False} for m in done]

        async def tx(c: Conn) -> None:
            await c.executemany(q.timestamp_add, rows)
            await c.executemany(q.stamp_done, ids)

        if rows or ids:
            await self._db.transaction(tx)

    async def timestamp_pending(self, *, limit: int) -> list[PendingStamp]:
        check_limit(limit)
        q = self._sql("trust")

        async def read(c: Conn) -> list[PendingStamp]:
            rows = await c.fetch(q.stamp_pending, max_head=MAX_HEAD_XML_BYTES, limit=limit)
            return [PendingStamp(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5])) for r in rows]

        return await self._db.read(read)

    async def received_heads(self, *, after: str, limit: int) -> list[tuple[str, bytes]]:
        check_limit(limit)
        q = self._sql("trust")

        async def read(c: Conn) -> list[tuple[str, bytes]]:
            rows = await c.fetch(
                q.received_heads, after=after, limit=limit, max_head=MAX_HEAD_XML_BYTES
            )
            return [(r[0], bytes(r[1])) for r in rows]

        return await self._db.read(read)

    async def timestamps(self, message_id: str) -> list[TimestampRecord]:
        q = self._sql("trust")

        async def read(c: Conn) -> list[TimestampRecord]:
            return [
                TimestampRecord(
                    r[0], r[1], bytes(r[2]), bytes(r[3]), when(r[4]), bytes(r[5] or b"")
                )
                for r in await c.fetch(q.timestamps, message_id=message_id)
            ]

        return await self._db.read(read)

    async def directory_fetched(self, site: str, serial: int, *, now: datetime) -> None:
        q, at = self._sql("trust"), aware(now)

        async def tx(c: Conn) -> None:
            await c.execute(q.directory_fetched, site=site, serial=serial, at=at)

        await self._db.transaction(tx)

    async def directory_fetches(self) -> list[DirectoryFetch]:
        q = self._sql("trust")

        async def read(c: Conn) -> list[DirectoryFetch]:
            rows = await c.fetch(q.directory_fetches)
            return [DirectoryFetch(r[0], int(r[1]), when(r[2])) for r in rows]

        return await self._db.read(read)

    async def escrow(self, message_id: str) -> bytes | None:
        q = self._sql("trust")

        async def read(c: Conn) -> bytes | None:
            value = await c.fetchval(q.escrow, message_id=message_id)
            return None if value is None else bytes(value)

        return await self._db.read(read)

    async def open_escrows(self, *, receipts_since: datetime) -> list[tuple[str, bytes]]:
        q, since = self._sql("trust"), aware(receipts_since)

        async def read(c: Conn) -> list[tuple[str, bytes]]:
            return [(r[0], bytes(r[1])) for r in await c.fetch(q.open_escrows, since=since)]

        return await self._db.read(read)

    async def replace_escrow(self, message_id: str, *, old: bytes, new: bytes) -> bool:
        q = self._sql("trust")

        async def tx(c: Conn) -> bool:
            return await c.execute(q.replace_escrow, message_id=message_id, old=old, new=new) > 0

        return await self._db.transaction(tx)

    async def replace_sealed(
        self,
        message_id: str,
        *,
        data: bytes,
        digest: bytes,
        chain: bytes,
        hop_ack: bytes | None,
        expected_digest: bytes,
        requeue: Sequence[str],
        held_for: str | None,
        now: datetime,
        reason: str,
        resend_receipt: bool = False,
    ) -> int:
        q, at = self._sql("trust"), aware(now)
        requeue_states = list(requeue)
        again = bool(resend_receipt)

        async def tx(c: Conn) -> int:
            key = {"message_id": message_id}
            held = held_for is None or await c.fetchrow(q.held_for, held_for=held_for, **key)
            if not held:
                return 0
            replaceable = await c.fetchrow(
                q.replaceable, expected=expected_digest, digest=digest, again=again, **key
            )
            if replaceable is None:
                return 0
            # Deliveries first: with none to send again (one being tried now, say), the
            # stored copy stays the one that try sends, and nothing changes. A requeued
            # failed delivery reopens its failed destinations.
            moved = await requeue_deliveries(
                c, message_id, from_states=requeue_states, reason=reason, at=at
            )
            if moved:
                # Keep the replaced copy's head (superseded_heads, v12): a receipt naming
                # its digest is then shown to be for the same message.
                await c.execute(q.keep_head, n=await _head(c, q, message_id), at=at, **key)
                await c.execute(
                    q.replace_sealed,
                    data=data,
                    digest=digest,
                    chain=chain,
                    hop_ack=hop_ack,
                    size=len(data),
                    again=again,
                    **key,
                )
            return moved

        return await self._db.transaction(tx)

    async def renew_hop_ack(
        self, message_id: str, *, digest: bytes, old: bytes, new: bytes
    ) -> bool:
        q = self._sql("trust")

        async def tx(c: Conn) -> bool:
            done = await c.execute(
                q.renew_hop_ack, message_id=message_id, digest=digest, old=old, new=new
            )
            return done > 0

        return await self._db.transaction(tx)
