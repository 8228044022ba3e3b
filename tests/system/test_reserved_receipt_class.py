"""A submitted document may not claim the class ``receipt`` (review 11, F1).

Before: an integrator at a destination posted ``{"class": "receipt", "in_reply_to": X}``;
its gateway sealed and sent it, and HQ — which cannot open a receipt — took it as that
destination's receipt of X, closed its delivery of X and then refused the genuine
receipt as a second one. Receipts are sealed only by the gateway itself
(gateway/relay/local_delivery.py seal_reply); every submission path (HTTP, SMTP, `valise
send`) goes through gateway/relay/outbox.py, which now refuses the class, queueing nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner

from envelope.errors import UsageError
from gateway.bridges.http.api import make_app
from gateway.bridges.http.common import ApiState
from gateway.bridges.integrators import new_token, token_sha256
from gateway.cli.main import main
from gateway.relay.outbox import Document, send_documents
from gateway.site.context import load_site
from tests.support.offline_hq import add_mission, make_hq

X = "01a24e0f-660a-76cd-be02-c0b7af5d9d3e"


@pytest.fixture()
def hq(tmp_path: Path) -> Path:
    site = make_hq(tmp_path)
    add_mission(site, "M-PARIS")
    return site


async def test_the_outbox_refuses_the_receipt_class_and_queues_nothing(hq: Path) -> None:
    ctx = await load_site(hq)
    try:
        with pytest.raises(UsageError, match="reserved"):
            await send_documents(
                ctx,
                ["M-PARIS"],
                [Document("r.xml", "application/xml", b"<receipt/>")],
                now=datetime.now(UTC),
                doc_class="receipt",
                in_reply_to=X,
            )
        assert await ctx.store.queue(todo=False) == []
    finally:
        await ctx.store.close()


async def test_an_integrator_cannot_submit_a_receipt_over_http(tmp_path: Path, hq: Path) -> None:
    ctx = await load_site(hq)
    token = new_token()
    await ctx.store.integrator_add(
        "app",
        token_sha256=token_sha256(token),
        webhook_url=None,
        webhook_secret=None,
        now=datetime.now(UTC),
    )
    workdir = tmp_path / "http-tmp"
    workdir.mkdir(mode=0o700)
    api = ApiState(ctx, webhooks=None, max_body_bytes=1 << 20, workdir=workdir)  # type: ignore[arg-type]
    runner = web.AppRunner(make_app(api), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/documents"
    meta = {"to": ["M-PARIS"], "class": "receipt", "in_reply_to": X}
    form = aiohttp.FormData()
    form.add_field("metadata", json.dumps(meta), content_type="application/json")
    form.add_field("f", b"<receipt/>", filename="r.xml", content_type="application/xml")
    try:
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as s, s.post(url, data=form, headers=auth) as r:
            body = await r.json()
        assert r.status == 422, body
        assert "reserved" in body["message"], body
        assert await ctx.store.queue(todo=False) == []
    finally:
        await runner.cleanup()
        await ctx.store.close()


def test_valise_send_refuses_the_receipt_class(tmp_path: Path, hq: Path) -> None:
    doc = tmp_path / "r.xml"
    doc.write_bytes(b"<receipt/>")
    got = CliRunner().invoke(
        main, ["send", "--to", "M-PARIS", "--class", "receipt", str(doc), "--dir", str(hq)]
    )
    assert got.exit_code == 2, got.output
    assert "reserved" in got.output
