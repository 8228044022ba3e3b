"""The trust part of the in-memory store: time-stamp tokens, directory fetches, escrows and
re-sealing (as trust.py for the SQL backends), and HQ's enrolments and issued
certificates (as enroll.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from envelope.framing import PREFIX_BYTES
from envelope.limits import MAX_HEAD_XML_BYTES
from gateway.store._common import check_limit
from gateway.store.enrollments import CertificatePurpose, Enrollment, IssuedCertificate
from gateway.store.memory_destinations import requeue as requeue_deliveries
from gateway.store.memory_tables import MemoryTables, Tables, utc
from gateway.store.records import (
    DirectoryFetch,
    OutState,
    PendingStamp,
    StoreError,
    TimestampRecord,
)

TIMESTAMP_KINDS = ("sent", "relayed", "delivered")


def head_of(data: bytes) -> bytes:
    """The envelope's framing prefix and head XML (not its segments), as the SQL backends
    cut it: the head's length is in the prefix (envelope/framing.py)."""
    prefix = data[:PREFIX_BYTES]
    length = int.from_bytes(prefix[-4:], "big") if len(prefix) == PREFIX_BYTES else 0
    return data[: PREFIX_BYTES + min(length, MAX_HEAD_XML_BYTES)]


def _timestamp(r: TimestampRecord) -> TimestampRecord:
    if r.kind not in TIMESTAMP_KINDS:
        raise StoreError(f"unknown time-stamp kind {r.kind!r}")
    return TimestampRecord(
        str(r.message_id), r.kind, bytes(r.digest), bytes(r.token), utc(r.at), bytes(r.digested)
    )


def _enrollment(e: Enrollment) -> Enrollment:
    return replace(e, created=utc(e.created), expires=utc(e.expires))


def _certificate(c: IssuedCertificate) -> IssuedCertificate:
    purpose = CertificatePurpose(c.purpose)
    return replace(c, purpose=purpose, issued=utc(c.issued), not_after=utc(c.not_after))


class MemoryTrust(MemoryTables):
    """The timestamp, directory-fetch, re-sealing and enrolment methods of the protocol."""

    # -- time-stamp tokens --------------------------------------------------------
    async def timestamp_add(self, records: Sequence[TimestampRecord]) -> None:
        await self.timestamp_settle(records, done=())

    async def timestamp_settle(
        self, records: Sequence[TimestampRecord], *, done: Sequence[str]
    ) -> None:
        rows = [_timestamp(r) for r in records]
        ids = list(done)

        def tx(t: Tables) -> None:
            for r in rows:
                t.timestamps.setdefault((r.message_id, r.kind, r.digest), r)
            for message_id in ids:
                env = t.envelopes.get(message_id)
                if env is not None:
                    env.stamp_pending = False

        if rows or ids:
            await self._write(tx)

    async def timestamp_pending(self, *, limit: int) -> list[PendingStamp]:
        check_limit(limit)

        def q(t: Tables) -> list[PendingStamp]:
            pending = sorted(
                (env.accepted_at, mid) for mid, env in t.envelopes.items() if env.stamp_pending
            )
            out = []
            for _, mid in pending[:limit]:
                env = t.envelopes[mid]
                out.append(
                    PendingStamp(
                        mid,
                        env.origin,
                        env.received_from,
                        env.doc_class,
                        env.digest,
                        head_of(env.data),
                    )
                )
            return out

        return await self._read(q)

    async def timestamps(self, message_id: str) -> list[TimestampRecord]:
        def q(t: Tables) -> list[TimestampRecord]:
            rows = [r for (mid, _, _), r in t.timestamps.items() if mid == message_id]
            return [replace(r) for r in sorted(rows, key=lambda r: (r.at, r.kind))]

        return await self._read(q)

    # -- directory fetches ------------------------------------------------------------
    async def directory_fetched(self, site: str, serial: int, *, now: datetime) -> None:
        at = utc(now)

        def tx(t: Tables) -> None:
            old = t.directory_fetches.get(site)
            highest = serial if old is None else max(old.serial, serial)
            t.directory_fetches[site] = DirectoryFetch(site, int(highest), at)

        await self._write(tx)

    async def directory_fetches(self) -> list[DirectoryFetch]:
        def q(t: Tables) -> list[DirectoryFetch]:
            return [replace(t.directory_fetches[s]) for s in sorted(t.directory_fetches)]

        return await self._read(q)

    # -- re-sealing -----------------------------------------------------------------
    async def escrow(self, message_id: str) -> bytes | None:
        def q(t: Tables) -> bytes | None:
            env = t.envelopes.get(message_id)
            return None if env is None else env.escrow

        return await self._read(q)

    async def received_heads(self, *, after: str, limit: int) -> list[tuple[str, bytes]]:
        check_limit(limit)

        def q(t: Tables) -> list[tuple[str, bytes]]:
            ids = sorted(m for m, i in t.inbound.items() if i.state == "received" and m > after)
            return [(m, head_of(t.envelopes[m].data)) for m in ids[:limit]]

        return await self._read(q)

    async def open_escrows(self, *, receipts_since: datetime) -> list[tuple[str, bytes]]:
        since = utc(receipts_since)

        def q(t: Tables) -> list[tuple[str, bytes]]:
            out = []
            for mid in sorted(t.envelopes):
                env = t.envelopes[mid]
                if env.escrow is None:
                    continue
                if env.receipt is None or (env.doc_class == "receipt" and env.created >= since):
                    out.append((mid, env.escrow))
            return out

        return await self._read(q)

    async def replace_escrow(self, message_id: str, *, old: bytes, new: bytes) -> bool:
        def tx(t: Tables) -> bool:
            env = t.envelopes.get(message_id)
            if env is None or env.escrow is None or env.escrow != bytes(old):
                return False
            env.escrow = bytes(new)
            return True

        return await self._write(tx)

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
        at = utc(now)
        states = [str(s) for s in requeue]
        new_data, new_digest = bytes(data), bytes(digest)
        new_chain, new_ack = bytes(chain), None if hop_ack is None else bytes(hop_ack)

        def tx(t: Tables) -> int:
            env = t.envelopes.get(message_id)
            if env is None:
                return 0
            if held_for is not None and not any(
                d.state == OutState.HELD.value and d.last_reason.startswith(held_for)
                for _, d in t.deliveries_of(message_id)
            ):
                return 0
            # Only while a destination still lacks its receipt (open or failed); without
            # destination rows: while the message has no receipt, or (resend_receipt) it
            # is a receipt sealed here whose stored proof, the hop ack, goes with its copy.
            rows = t.rows_of(message_id)
            if env.digest != bytes(expected_digest) or env.digest == new_digest:
                return 0
            lacking = any(r.outcome != "delivered" for _, r in rows)
            no_proof = env.receipt is None or (resend_receipt and env.doc_class == "receipt")
            if not lacking and not (no_proof and not rows):
                return 0
            moved = requeue_deliveries(t, message_id, from_states=states, reason=reason, at=at)
            if moved:
                t.superseded_heads.setdefault((message_id, env.digest), head_of(env.data))
                env.superseded = (*env.superseded, env.digest)
                env.data, env.digest, env.chain, env.hop_ack = (
                    new_data,
                    new_digest,
                    new_chain,
                    new_ack,
                )
                if resend_receipt and env.doc_class == "receipt":
                    env.receipt = None
            return moved

        return await self._write(tx)

    async def renew_hop_ack(
        self, message_id: str, *, digest: bytes, old: bytes, new: bytes
    ) -> bool:
        def tx(t: Tables) -> bool:
            env = t.envelopes.get(message_id)
            if env is None or env.digest != bytes(digest) or env.hop_ack is None:
                return False
            if env.hop_ack != bytes(old):
                return False
            env.hop_ack = bytes(new)
            return True

        return await self._write(tx)

    # -- enrolments and issued certificates (HQ) ---------------------------------------
    async def enrollment_add(self, enrollment: Enrollment, bootstrap: IssuedCertificate) -> None:
        e, cert = _enrollment(enrollment), _certificate(bootstrap)

        def tx(t: Tables) -> None:
            t.enrollments[e.site] = e
            t.certificates.setdefault(cert.serial, cert)

        await self._write(tx)

    async def enrollment_take(
        self, site: str, *, token_sha256: str, bootstrap_serial: str, now: datetime
    ) -> Enrollment | None:
        at = utc(now)

        def tx(t: Tables) -> Enrollment | None:
            e = t.enrollments.get(site)
            if e is None or e.token_sha256 != token_sha256:
                return None
            if e.bootstrap_serial != bootstrap_serial or e.expires <= at:
                return None
            del t.enrollments[site]
            return replace(e)

        return await self._write(tx)

    async def enrollments(self) -> list[Enrollment]:
        def q(t: Tables) -> list[Enrollment]:
            return [replace(t.enrollments[s]) for s in sorted(t.enrollments)]

        return await self._read(q)

    async def certificate_add(self, cert: IssuedCertificate) -> None:
        c = _certificate(cert)

        def tx(t: Tables) -> None:
            t.certificates.setdefault(c.serial, c)

        await self._write(tx)

    async def certificate(self, serial: str) -> IssuedCertificate | None:
        def q(t: Tables) -> IssuedCertificate | None:
            c = t.certificates.get(serial)
            return None if c is None else replace(c)

        return await self._read(q)
