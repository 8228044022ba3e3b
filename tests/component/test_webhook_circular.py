"""Webhooks per destination (issue 11), store-level: the webhook subscriber of a real
site folder (HQ, SQLite) fed the events a circular's receipts and failures emit.
``delivered`` once per destination, naming it; ``completed`` once, with the tally;
every body as the published OpenAPI schema says; only to the submitting integrator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.bridges.http.openapi import document
from gateway.bridges.webhooks import Webhooks, event_body
from gateway.demo.network import free_port
from gateway.relay.circular_status import emit_closed, emit_completed
from gateway.runtime.events import Event, EventBus
from gateway.site.context import SiteContext, load_site
from gateway.store.base import ReceiptRecord, Submission
from gateway.trust.enroll import init_hub
from tests.contract.helpers import record

HANOI, ROME, LIMA = "M-HANOI", "M-ROME", "M-LIMA"


@pytest.fixture
async def hq(tmp_path: Path) -> AsyncIterator[SiteContext]:
    init_hub(tmp_path / "hq", site="HQ", listen=f"127.0.0.1:{free_port()}")
    ctx = await load_site(tmp_path / "hq")
    try:
        now = datetime.now(UTC)
        for name in ("dms", "rival"):
            await ctx.store.integrator_add(
                name,
                token_sha256=name * 8,
                webhook_url=f"http://127.0.0.1:9/{name}",
                webhook_secret="whsec_" + "A" * 32,
                now=now,
            )
        yield ctx
    finally:
        await ctx.store.close()


def validate(body: bytes) -> dict[str, Any]:
    doc = document()
    schema = {"$ref": "#/components/schemas/WebhookEvent", "components": doc["components"]}
    payload: dict[str, Any] = json.loads(body)
    jsonschema.validate(payload, schema, cls=jsonschema.Draft202012Validator)
    return payload


async def send(ctx: SiteContext, n: int, sites: tuple[str, ...], integrator: str) -> str:
    now = datetime.now(UTC)
    rec = replace(
        record(n, destinations=sites, expires=now + timedelta(days=1)),
        origin="HQ",
        routes=tuple((s, s) for s in sites),
    )
    await ctx.store.submission_reserve(
        Submission(rec.message_id, integrator, None, "f" * 64, now), forget_before=now
    )
    await ctx.store.accept(rec, next_hops=list(sites), deliver_here=False, hop_ack=None, now=now)
    return rec.message_id


async def receipted(ctx: SiteContext, bus: EventBus, m: str, site: str) -> None:
    """As local delivery reports a verified receipt."""
    now = datetime.now(UTC)
    env = await ctx.store.get_envelope(m)
    assert env is not None
    digest = (site.encode() * 32)[:32]
    (out,) = await ctx.store.record_receipts(
        [ReceiptRecord(m, site, digest, env.digest, b"r:" + site.encode())], now=now
    )
    detail = {"site": site, "receipt_sha256": digest.hex()}
    await bus.emit(
        Event("delivered", m, now, detail | {"delivered": str(out.delivered), "of": str(out.total)})
    )
    if out.completed:
        await emit_completed(bus, ctx.store, m, now)


async def outbox(ctx: SiteContext) -> list[tuple[str, str, dict[str, Any]]]:
    claimed = await ctx.store.webhook_claim(
        owner="t", limit=100, lease_seconds=60, now=datetime.now(UTC) + timedelta(seconds=1)
    )
    return [(c.event.integrator, c.event.kind, validate(c.event.body)) for c in claimed]


async def test_a_circular_sends_delivered_per_destination_then_completed_once(
    hq: SiteContext,
) -> None:
    bus = EventBus()
    bus.subscribe(Webhooks(hq, timeout_seconds=5).on_event)
    m = await send(hq, 1, (HANOI, ROME, LIMA), "dms")
    await receipted(hq, bus, m, ROME)
    await receipted(hq, bus, m, HANOI)
    now = datetime.now(UTC)
    closed = await hq.store.fail(m, LIMA, reason="refused by M-LIMA: no such mailbox", now=now)
    assert closed is not None and closed.completed
    await emit_closed(bus, hq.store, closed, now)
    # A late receipt after the failure: delivered again, never a second completed.
    await receipted(hq, bus, m, LIMA)
    got = await outbox(hq)
    assert {who for who, _, _ in got} == {"dms"}  # never the rival integrator
    assert [(kind, p["data"].get("site")) for _, kind, p in got] == [
        ("delivered", ROME),
        ("delivered", HANOI),
        ("failed", None),
        ("completed", None),
        ("delivered", LIMA),
    ]
    data = [p["data"] for _, _, p in got]
    assert (data[0]["delivered"], data[0]["of"]) == ("1", "3")
    assert (data[1]["delivered"], data[1]["of"]) == ("2", "3")
    assert data[2]["sites"] == LIMA and data[2]["reason"].startswith("refused by M-LIMA")
    assert {k: data[3][k] for k in ("delivered", "of", "failed")} == {
        "delivered": "2",
        "of": "3",
        "failed": LIMA,
    }
    assert all(d["id"] == m and d["document"] == f"/v1/documents/{m}" for d in data)
    kinds = [w.kind for w in await hq.store.webhooks(message_id=m)]
    assert sorted(kinds) == ["completed", "delivered", "delivered", "delivered", "failed"]


async def test_another_integrators_message_sends_it_nothing(hq: SiteContext) -> None:
    bus = EventBus()
    bus.subscribe(Webhooks(hq, timeout_seconds=5).on_event)
    m = await send(hq, 2, (HANOI,), "rival")
    await receipted(hq, bus, m, HANOI)
    got = await outbox(hq)
    assert [(who, kind) for who, kind, _ in got] == [("rival", "delivered"), ("rival", "completed")]
    assert got[1][2]["data"]["failed"] == ""


def test_every_event_body_fits_the_published_schema() -> None:
    m = "01900000-0000-7000-8000-000000000001"
    at = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
    for event in (
        Event("received", m, at, {"origin": "M-PARIS"}),
        Event(
            "delivered",
            m,
            at,
            {"site": HANOI, "receipt_sha256": "ab" * 32, "delivered": "1", "of": "2"},
        ),
        Event("failed", m, at, {"reason": "expired", "sites": f"{HANOI},{ROME}"}),
        Event("failed", m, at, {"reason": "expired", "sites": ""}),
        Event("completed", m, at, {"delivered": "0", "of": "2", "failed": f"{HANOI},{ROME}"}),
    ):
        payload = validate(event_body(event))
        assert payload["type"] == event.kind and payload["timestamp"] == "2026-12-07T05:00:00Z"
