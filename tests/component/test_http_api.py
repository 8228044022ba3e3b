"""The integrators' HTTP API (gateway/bridges/http/api.py make_app) over an in-memory
store, served in this process on loopback by aiohttp's TestServer: submitting (202
only once the envelope and its destination rows are in the store), the status
document, authentication, and the inbox of a document delivered here."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from gateway.bridges.http.api import make_app
from gateway.bridges.http.common import ApiState
from gateway.bridges.integrators import new_token, token_sha256
from gateway.bridges.webhooks import Webhooks
from gateway.site.context import SiteContext
from gateway.store.base import InState
from tests.component.support import (
    HANOI,
    HUB,
    PARIS,
    Net,
    RecordingHandOff,
    arrive,
    local_delivery,
    sealed,
    send,
    states,
)


@dataclass
class Api:
    client: TestClient  # type: ignore[type-arg]
    token: str
    rung: list[tuple[str, ...]]

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


async def add_integrator(ctx: SiteContext, name: str, webhook_url: str | None = None) -> str:
    token = new_token()
    await ctx.store.integrator_add(
        name,
        token_sha256=token_sha256(token),
        webhook_url=webhook_url,
        webhook_secret="whsec_dGVzdA==" if webhook_url else None,
        now=datetime.now(UTC),
    )
    return token


@asynccontextmanager
async def api_of(ctx: SiteContext, tmp_path: Path) -> AsyncIterator[Api]:
    """``ctx``'s HTTP API with an integrator ``app`` (its token in ``Api.token``); the
    next hops the submissions ring ``ctx.queued`` with are recorded."""
    token = await add_integrator(ctx, "app")
    workdir = tmp_path / f"http-tmp-{ctx.here}"
    workdir.mkdir(mode=0o700)
    state = ApiState(ctx, Webhooks(ctx, timeout_seconds=5), 1 << 20, workdir)
    rung: list[tuple[str, ...]] = []

    def ring(peers: Sequence[str]) -> None:
        rung.append(tuple(peers))

    ctx.queued.listen(ring)
    client = TestClient(TestServer(make_app(state), host="127.0.0.1"))
    await client.start_server()
    try:
        yield Api(client, token, rung)
    finally:
        await client.close()
        ctx.queued.forget(ring)


def form(to: list[str], data: bytes = b"note verbale", **meta: str) -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("metadata", json.dumps({"to": to, **meta}), content_type="application/json")
    body.add_field("f", data, filename="nv.txt", content_type="text/plain")
    return body


async def test_submit_answers_202_once_the_envelope_and_its_destinations_are_stored(
    net: Net, tmp_path: Path
) -> None:
    async with api_of(net.paris, tmp_path) as api:
        resp = await api.client.post(
            "/v1/documents", data=form([HANOI, HUB], subject="Visa"), headers=api.auth()
        )
        body = await resp.json()
    assert resp.status == 202, body
    mid = body["id"]
    assert body == {"id": mid, "status": "queued", "location": f"/v1/documents/{mid}"}
    assert resp.headers["Location"] == f"/v1/documents/{mid}"
    record = await net.paris.store.get_envelope(mid)
    assert record is not None
    assert (record.origin, record.destinations, record.received_from) == (
        PARIS,
        (HANOI, HUB),
        None,
    )
    # One row per destination, both through the hub; one outbound row, to the hub.
    rows = sorted((d.site, d.hop, d.state) for d in await net.paris.store.destinations(mid))
    assert rows == [(HUB, HUB, "queued"), (HANOI, HUB, "queued")]
    assert [(q.message_id, q.peer, q.state) for q in await net.paris.store.queue()] == [
        (mid, HUB, "queued")
    ]
    submission = await net.paris.store.submission(mid)
    assert submission is not None and submission.integrator == "app"
    assert api.rung == [(HUB,)]  # the couriers of a running site are woken


async def test_the_status_document_shows_each_destination_and_the_history(
    net: Net, tmp_path: Path
) -> None:
    async with api_of(net.paris, tmp_path) as api:
        resp = await api.client.post("/v1/documents", data=form([HANOI]), headers=api.auth())
        mid = (await resp.json())["id"]
        resp = await api.client.get(f"/v1/documents/{mid}", headers=api.auth())
        status = await resp.json()
    assert resp.status == 200
    assert (status["id"], status["status"], status["to"]) == (mid, "queued", [HANOI])
    assert (status["receipts"], status["of"], status["outstanding"]) == (0, 1, [HANOI])
    [dest] = status["destinations"]
    assert dest["site"] == HANOI and dest["receipt"] is None
    assert [(h["peer"], h["state"]) for h in status["history"]] == await states(
        net.paris.store, mid
    )


async def test_requests_without_a_valid_token_are_401_and_queue_nothing(
    net: Net, tmp_path: Path
) -> None:
    async with api_of(net.paris, tmp_path) as api:
        missing = await api.client.post("/v1/documents", data=form([HANOI]))
        unknown = await api.client.post(
            "/v1/documents", data=form([HANOI]), headers=api.auth(new_token())
        )
        malformed = await api.client.get("/v1/inbox", headers={"Authorization": "Basic eDp5"})
        answers = [await r.json() for r in (missing, unknown, malformed)]
        await net.paris.store.integrator_revoke("app", now=datetime.now(UTC))
        revoked = await api.client.get("/v1/inbox", headers=api.auth())
    assert [r.status for r in (missing, unknown, malformed, revoked)] == [401] * 4
    assert [a["message"] for a in answers] == [
        "missing bearer token",
        "unknown or revoked token",
        "malformed bearer token",
    ]
    assert {a["code"] for a in answers} == {"unauthorized"}
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="valise"'
    assert await net.paris.store.queue() == []
    assert api.rung == []


async def test_an_integrator_sees_only_its_own_documents(net: Net, tmp_path: Path) -> None:
    other = await add_integrator(net.paris, "other-app")
    async with api_of(net.paris, tmp_path) as api:
        resp = await api.client.post("/v1/documents", data=form([HANOI]), headers=api.auth())
        mid = (await resp.json())["id"]
        theirs = await api.client.get(f"/v1/documents/{mid}", headers=api.auth(other))
        body = await theirs.json()
    assert theirs.status == 404 and body["code"] == "not_found"


async def test_an_unknown_destination_is_422_and_nothing_is_stored(
    net: Net, tmp_path: Path
) -> None:
    async with api_of(net.paris, tmp_path) as api:
        resp = await api.client.post(
            "/v1/documents", data=form([HANOI, "M-NOWHERE"]), headers=api.auth()
        )
        body = await resp.json()
    assert resp.status == 422 and body["code"] == "unknown_site"
    assert await net.paris.store.queue() == []
    assert api.rung == []


async def test_the_same_idempotency_key_queues_the_document_once(net: Net, tmp_path: Path) -> None:
    async with api_of(net.paris, tmp_path) as api:
        headers = {**api.auth(), "Idempotency-Key": "order-2026-0042"}
        first = await api.client.post("/v1/documents", data=form([HANOI]), headers=headers)
        again = await api.client.post("/v1/documents", data=form([HANOI]), headers=headers)
        other = await api.client.post(
            "/v1/documents", data=form([HANOI], b"another text"), headers=headers
        )
        ids = [(await r.json()).get("id") for r in (first, again)]
        conflict = await other.json()
    assert [first.status, again.status] == [202, 202]
    assert ids[0] == ids[1]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status == 409 and conflict["code"] == "idempotency_conflict"
    assert [q.message_id for q in await net.paris.store.queue()] == [ids[0]]


async def test_a_delivered_document_is_listed_read_and_acked_in_the_inbox(
    net: Net, tmp_path: Path
) -> None:
    mid = await arrive(
        net, await sealed(net.paris, await send(net.paris, [HANOI], b"visa 42")), PARIS, HANOI
    )
    worker, _ = local_delivery(net.hanoi, RecordingHandOff())
    assert await worker.once()
    async with api_of(net.hanoi, tmp_path) as api:
        listing = await (await api.client.get("/v1/inbox", headers=api.auth())).json()
        part = await api.client.get(f"/v1/inbox/{mid}/parts/0", headers=api.auth())
        content = await part.read()
        acked = await api.client.post(f"/v1/inbox/{mid}/ack", headers=api.auth())
        ack_body = await acked.json()
        after = await (await api.client.get("/v1/inbox", headers=api.auth())).json()
    [item] = listing["items"]
    assert (item["id"], item["from"], item["state"], item["subject"]) == (
        mid,
        PARIS,
        "available",
        "Note verbale",
    )
    assert (part.status, content) == (200, b"visa 42")
    assert acked.status == 200 and ack_body == {"id": mid, "state": "acked"}
    assert after["items"] == []
    [row] = await net.hanoi.store.inbox(state=InState.ACKED)
    assert row.message_id == mid
