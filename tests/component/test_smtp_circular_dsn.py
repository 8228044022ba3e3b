"""DSNs per destination (issue 11), store-level: the SMTP bridge of a real site folder
(HQ, SQLite, Maildir delivery) driven by the events the relay emits when receipts,
refusals and expiry close a message's destinations. The bridge's listener is not
started: only its event subscriber, its DSN sender and its sweep run.

A circular here is a message from HQ to M-HANOI and M-ROME, each its own next hop; the
bridge's record of it names one of them (an SMTP submission seals one envelope per
site and mailbox), so a DSN must name that record's recipients only if that site failed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import pytest

from gateway.bridges.smtp.bridge import SmtpBridge
from gateway.bridges.smtp.sent import SentRecord
from gateway.demo.network import free_port
from gateway.relay.circular_status import emit_closed, emit_completed
from gateway.runtime.events import Event, EventBus
from gateway.site.context import SiteContext, load_site
from gateway.store.base import EnvelopeRecord, ReceiptRecord
from gateway.trust.enroll import init_hub
from tests.contract.helpers import record

HANOI, ROME = "M-HANOI", "M-ROME"
SENDER = "alice@hq.valise.local"
HEADERS = b"From: alice@hq.valise.local\r\nSubject: circulaire\r\n\r\n"


@pytest.fixture
async def hq(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SiteContext]:
    monkeypatch.setenv("VALISE_DELIVERY_MODE", "maildir")
    init_hub(tmp_path / "hq", site="HQ", listen=f"127.0.0.1:{free_port()}")
    ctx = await load_site(tmp_path / "hq")
    try:
        yield ctx
    finally:
        await ctx.store.close()


class Harness:
    def __init__(self, ctx: SiteContext) -> None:
        self.ctx = ctx
        self.bus = EventBus()
        self.bridge = SmtpBridge(ctx, self.bus)
        self.events: list[Event] = []

        async def seen(e: Event) -> None:
            self.events.append(e)

        self.bus.subscribe(seen)

    async def send(
        self, n: int, sites: tuple[str, ...], record_site: str, *, expires: timedelta
    ) -> str:
        """Message n from HQ to ``sites`` (each its own hop), forwarded, with the SMTP
        bridge's record naming ``record_site``'s two recipients."""
        now = datetime.now(UTC)
        base = record(n, destinations=sites, expires=now + expires)
        rec: EnvelopeRecord = replace(base, origin="HQ", routes=tuple((s, s) for s in sites))
        store = self.ctx.store
        await store.accept(rec, next_hops=list(sites), deliver_here=False, hop_ack=None, now=now)
        for s in sites:
            await store.claim(peer=s, owner="t", limit=1, lease_seconds=60, now=now)
            await store.forwarded([(rec.message_id, s)], owner="t", now=now)
        domain = record_site.lower()
        self.bridge.records.write(
            SentRecord(
                message_id=rec.message_id,
                sender=SENDER,
                recipients=(f"registry@{domain}.valise.local", f"archive@{domain}.valise.local"),
                site=record_site,
                mailbox="registry",
                arrival=now,
                expires=now + expires,
                headers=HEADERS,
            )
        )
        return rec.message_id

    async def receipt(self, m: str, site: str) -> None:
        """``site``'s verified receipt recorded, and the events local delivery emits."""
        now = datetime.now(UTC)
        digest = (site.encode() * 32)[:32]
        env = await self.ctx.store.get_envelope(m)
        assert env is not None
        (out,) = await self.ctx.store.record_receipts(
            [ReceiptRecord(m, site, digest, env.digest, b"receipt:" + site.encode())], now=now
        )
        assert out.status == "recorded"
        detail = {"site": site, "receipt_sha256": digest.hex()}
        detail |= {"delivered": str(out.delivered), "of": str(out.total)}
        await self.bus.emit(Event("delivered", m, now, detail))
        if out.completed:
            await emit_completed(self.bus, self.ctx.store, m, now)

    async def refused(self, m: str, site: str, reason: str) -> None:
        """``site`` refused the hop, as the courier reports it."""
        now = datetime.now(UTC)
        closed = await self.ctx.store.fail(m, site, reason=f"refused by {site}: {reason}", now=now)
        assert closed is not None
        await emit_closed(self.bus, self.ctx.store, closed, now)

    async def flush(self) -> None:
        for m in sorted(self.bridge._pending):
            await self.bridge._send_dsn(m)

    def dsn(self, m: str) -> bytes | None:
        box = self.ctx.config.directory / self.ctx.config.delivery.maildir / "alice"
        found = [p for p in box.rglob(f"dsn-{m}*") if p.is_file()] if box.exists() else []
        return found[0].read_bytes() if found else None

    def record(self, m: str) -> SentRecord | None:
        return self.bridge.records.read(m)


def groups(dsn: bytes) -> list[tuple[str, str, str]]:
    """(Final-Recipient, Status, Diagnostic-Code) of each per-recipient block."""
    report = message_from_bytes(dsn, policy=default)
    parts: list[Any] = list(report.iter_parts())
    status = parts[1].as_string()
    out = []
    for block in status.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.replace("\r", "").split("\n") if ": " in line
        )
        if "Final-Recipient" in fields:
            out.append((fields["Final-Recipient"], fields["Status"], fields["Diagnostic-Code"]))
    return out


async def test_a_circular_bounces_only_its_failed_destinations(hq: SiteContext) -> None:
    h = Harness(hq)
    m = await h.send(1, (HANOI, ROME), HANOI, expires=timedelta(days=1))
    await h.receipt(m, ROME)  # one delivered: nothing to do yet, and no completed
    assert h.record(m) is not None and h.record(m).failed_reason is None  # type: ignore[union-attr]
    assert [e.kind for e in h.events] == ["delivered"]
    await h.refused(m, HANOI, "unknown mailbox registry")
    assert [e.kind for e in h.events] == ["delivered", "failed", "completed"]
    assert h.events[-1].detail == {"delivered": "1", "of": "2", "failed": HANOI}
    kept = h.record(m)
    assert kept is not None
    assert kept.failed_sites == ((HANOI, "refused by M-HANOI: unknown mailbox registry"),)
    await h.flush()
    dsn = h.dsn(m)
    assert dsn is not None and h.record(m) is None
    assert groups(dsn) == [
        (
            "rfc822; registry@m-hanoi.valise.local",
            "5.4.0",
            "X-Valise; refused by M-HANOI: unknown mailbox registry",
        ),
        (
            "rfc822; archive@m-hanoi.valise.local",
            "5.4.0",
            "X-Valise; refused by M-HANOI: unknown mailbox registry",
        ),
    ]
    assert b"m-rome" not in dsn.split(b"text/rfc822-headers")[0].lower()


async def test_a_record_whose_site_delivered_gets_no_dsn_though_another_failed(
    hq: SiteContext,
) -> None:
    h = Harness(hq)
    m = await h.send(2, (HANOI, ROME), ROME, expires=timedelta(days=1))
    await h.refused(m, HANOI, "down for good")  # not the last open one: no completed
    assert [e.kind for e in h.events] == ["failed"]
    assert h.record(m) is not None and h.record(m).failed_reason is None  # type: ignore[union-attr]
    await h.receipt(m, ROME)
    assert [e.kind for e in h.events] == ["failed", "delivered", "completed"]
    await h.flush()
    assert h.dsn(m) is None and h.record(m) is None  # ROME's recipients were delivered


async def test_delivered_everywhere_forgets_the_record_with_no_dsn(hq: SiteContext) -> None:
    h = Harness(hq)
    m = await h.send(3, (HANOI, ROME), HANOI, expires=timedelta(days=1))
    await h.receipt(m, HANOI)
    assert h.record(m) is not None  # M-ROME is still open
    await h.receipt(m, ROME)
    assert h.record(m) is None and h.dsn(m) is None
    assert [e.kind for e in h.events] == ["delivered", "delivered", "completed"]


async def test_expiry_bounces_the_outstanding_destination_as_expired(hq: SiteContext) -> None:
    h = Harness(hq)
    m = await h.send(4, (HANOI, ROME), HANOI, expires=timedelta(seconds=1))
    await h.receipt(m, ROME)
    for closed in await hq.store.expire(now=datetime.now(UTC) + timedelta(seconds=5)):
        await emit_closed(h.bus, hq.store, closed, datetime.now(UTC))
    assert [e.kind for e in h.events] == ["delivered", "failed", "completed"]
    assert h.events[1].detail == {"reason": "expired", "sites": HANOI}
    await h.flush()
    dsn = h.dsn(m)
    assert dsn is not None
    assert [g[1:] for g in groups(dsn)] == [("5.4.7", "X-Valise; expired")] * 2


async def test_the_sweep_bounces_what_completed_while_the_bridge_was_away(
    hq: SiteContext,
) -> None:
    h = Harness(hq)
    m = await h.send(5, (HANOI, ROME), HANOI, expires=timedelta(days=1))
    done = await h.send(6, (HANOI,), HANOI, expires=timedelta(days=1))
    # Closed with no bridge listening: the store changed, no event reached it.
    now = datetime.now(UTC)
    await hq.store.fail(m, HANOI, reason="refused by M-HANOI: gone", now=now)
    await hq.store.fail(m, ROME, reason="refused by M-ROME: gone too", now=now)
    env = await hq.store.get_envelope(done)
    assert env is not None
    await hq.store.record_receipts(
        [ReceiptRecord(done, HANOI, bytes(32), env.digest, b"receipt")], now=now
    )
    await h.bridge._sweep()
    assert h.record(done) is None  # delivered: forgotten
    failed = h.record(m)
    assert failed is not None
    assert failed.failed_sites == (
        (HANOI, "refused by M-HANOI: gone"),
        (ROME, "refused by M-ROME: gone too"),
    )
    await h.flush()
    dsn = h.dsn(m)
    assert dsn is not None
    assert [g[2] for g in groups(dsn)] == ["X-Valise; refused by M-HANOI: gone"] * 2


def test_a_record_keeps_its_failed_sites_and_reads_old_files(tmp_path: Path) -> None:
    now = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
    rec = SentRecord(
        "01900000-0000-7000-8000-000000000001", SENDER, ("a@m-hanoi.valise.local",),
        HANOI, "a", now, now, HEADERS, "expired", now, None, ((HANOI, "expired"),),
    )  # fmt: skip
    assert SentRecord.from_json(rec.to_json()) == rec
    old = replace(rec, failed_sites=())
    assert b"failed_sites" not in old.to_json()
    assert SentRecord.from_json(old.to_json()).failed_sites == ()
