"""The HTTP and SMTP bridges in a revocation window behave as `valise send` does
(issue 10): a destination in force with no active encryption key yet is taken and
its document queued, held, waiting for the key (gateway/relay/key_wait.py); a site not in
the directory is still refused.

The HTTP API's own app (make_app) runs in this process on a free loopback port,
over an HQ site folder with no process running (tests/support/offline_hq.py);
the SMTP handler's RCPT hook is called directly."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from envelope.open import parse_framed_head
from gateway.bridges.http.api import make_app, reachable_sites
from gateway.bridges.http.common import ApiState
from gateway.bridges.integrators import new_token, token_sha256
from gateway.bridges.smtp.handler import SmtpHandler
from gateway.bridges.smtp.replies import RECIPIENT_OK
from gateway.bridges.smtp.server import MailEnvelope
from gateway.relay.key_wait import WAITING_FOR_KEY
from gateway.site.context import load_site
from routing.directory import KeyState
from tests.support.offline_hq import add_mission, make_hq, set_encryption_keys


@pytest.fixture()
def window(tmp_path: Path) -> tuple[Path, str]:
    """HQ with M-PARIS (keyed) and M-HANOI (its only encryption key revoked)."""
    hq = make_hq(tmp_path)
    add_mission(hq, "M-PARIS")
    hanoi = add_mission(hq, "M-HANOI")
    set_encryption_keys(hq, "M-HANOI", ((hanoi.decryption, KeyState.REVOKED),))
    return hq, hanoi.decryption.key_id


def _form(to: list[str]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("metadata", json.dumps({"to": to}), content_type="application/json")
    form.add_field("f", b"note verbale", filename="nv.txt", content_type="text/plain")
    return form


async def test_http_submit_to_a_site_waiting_for_its_key_is_queued_held(
    tmp_path: Path, window: tuple[Path, str]
) -> None:
    hq, revoked = window
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
    headers = {"Authorization": f"Bearer {token}"}
    try:
        assert set(reachable_sites(ctx.directory)) == {"HQ", "M-PARIS", "M-HANOI"}
        async with aiohttp.ClientSession() as s:
            async with s.post(url, data=_form(["M-HANOI"]), headers=headers) as r:
                body = await r.json()
                assert r.status == 202, body
            assert body["status"] == "queued" and body["waiting_for_key"] == ["M-HANOI"]
            async with s.post(url, data=_form(["M-PARIS"]), headers=headers) as r:
                plain = await r.json()
                assert r.status == 202 and "waiting_for_key" not in plain
            async with s.post(url, data=_form(["M-NOWHERE"]), headers=headers) as r:
                assert r.status == 422 and (await r.json())["code"] == "unknown_site"
        held = [
            (q.peer, q.state, q.last_reason)
            for q in await ctx.store.queue()
            if q.message_id == body["id"]
        ]
        assert held == [("M-HANOI", "held", f"{WAITING_FOR_KEY} M-HANOI")]
        record = await ctx.store.get_envelope(body["id"])
        assert record is not None
        stanzas = parse_framed_head(record.data)[0].head.recipients
        assert revoked not in {s.key_id for s in stanzas}
    finally:
        await runner.cleanup()
        await ctx.store.close()


async def test_smtp_rcpt_to_a_site_waiting_for_its_key_is_accepted(
    window: tuple[Path, str],
) -> None:
    hq, _ = window
    ctx = await load_site(hq)
    try:
        handler = SmtpHandler(ctx, records=None)  # type: ignore[arg-type]
        domain = ctx.config.smtp.domain
        envelope = MailEnvelope()
        ok = await handler.handle_RCPT(None, None, envelope, f"visa@m-hanoi.{domain}", [])  # type: ignore[arg-type]
        assert ok == RECIPIENT_OK
        unknown = await handler.handle_RCPT(None, None, envelope, f"visa@m-nowhere.{domain}", [])  # type: ignore[arg-type]
        assert unknown.startswith("550 5.1.1")
    finally:
        await ctx.store.close()
