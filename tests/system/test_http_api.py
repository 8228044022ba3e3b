"""The integrators' HTTP API against a real network on loopback (HQ, M-PARIS, M-HANOI).

curl drives submit, status and inbox fetch once; aiohttp clients do the rest. A
webhook receiver runs in this process on 127.0.0.1 (its own thread and loop).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web

from envelope.open import parse_framed_head
from gateway.bridges import edxml
from gateway.bridges.webhooks import verify
from gateway.demo.network import Network, free_port
from tests.conftest import require_tool
from tests.support.cli import valise
from tests.system.test_relay import FAST

MAX_BODY = 2 * 1024 * 1024  # over aiohttp's own 1 MiB default: bodies must stream
ENV = {**FAST, "VALISE_SMTP_ENABLED": "no", "VALISE_HTTP_MAX_BODY_BYTES": str(MAX_BODY)}
WAIT_S = 40.0


@dataclass
class Receiver:
    """A tiny webhook receiver: the first attempt of every M-PARIS webhook gets 503."""

    port: int = field(default_factory=free_port)
    got: list[tuple[str, dict[str, str], bytes, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    loop: asyncio.AbstractEventLoop | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        site = request.match_info["site"]
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self.lock:
            seen = any(g[1].get("webhook-id") == headers.get("webhook-id") for g in self.got)
            status = 503 if site == "paris" and not seen else 204
            self.got.append((site, headers, body, status))
        return web.Response(status=status)

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            app = web.Application()
            app.router.add_post("/{site}", self._handle)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def events(self, site: str, kind: str, mid: str) -> list[tuple[dict[str, str], bytes, int]]:
        with self.lock:
            out = []
            for s, headers, body, status in self.got:
                data = json.loads(body)
                if s == site and data["type"] == kind and data["data"]["id"] == mid:
                    out.append((headers, body, status))
            return out


@dataclass
class Api:
    net: Network
    receiver: Receiver
    tokens: dict[str, str]
    secrets: dict[str, str]

    def url(self, site: str, path: str) -> str:
        return f"http://127.0.0.1:{self.net.sites[site].ports['http']}{path}"

    def auth(self, site: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[site]}"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    receiver = Receiver()
    receiver.start()
    try:
        with Network(tmp_path_factory.mktemp("http"), env=ENV) as net:
            tokens, secrets = {}, {}
            for site, name in (("M-PARIS", "paris"), ("M-HANOI", "hanoi")):
                hook = f"http://127.0.0.1:{receiver.port}/{name}"
                out = valise(
                    "integrator", "add", "app", "--webhook", hook, "--json",
                    "--dir", str(net.sites[site].directory),
                )  # fmt: skip
                assert out.returncode == 0, out.stderr
                made = json.loads(out.stdout)
                tokens[site], secrets[site] = made["token"], made["webhook_secret"]
            yield Api(net, receiver, tokens, secrets)
    finally:
        receiver.stop()


def form(meta: dict[str, Any], files: list[tuple[str, str, bytes]]) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("metadata", json.dumps(meta), content_type="application/json")
    for name, media_type, content in files:
        data.add_field("file", io.BytesIO(content), filename=name, content_type=media_type)
    return data


async def submit(
    s: aiohttp.ClientSession, api: Api, meta: dict[str, Any], files: list[tuple[str, str, bytes]],
    **headers: str,
) -> tuple[int, dict[str, Any], Any]:  # fmt: skip
    async with s.post(
        api.url("M-PARIS", "/v1/documents"),
        data=form(meta, files),
        headers={**api.auth("M-PARIS"), **headers},
    ) as r:
        return r.status, await r.json(), r.headers


async def wait_status(s: aiohttp.ClientSession, api: Api, mid: str, want: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        async with s.get(
            api.url("M-PARIS", f"/v1/documents/{mid}"), headers=api.auth("M-PARIS")
        ) as r:
            assert r.status == 200, await r.text()
            info: dict[str, Any] = await r.json()
        if info["status"] == want or time.monotonic() > deadline:
            return info
        await asyncio.sleep(0.2)


async def wait_inbox(s: aiohttp.ClientSession, api: Api, mid: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while True:
        async with s.get(api.url("M-HANOI", f"/v1/inbox/{mid}"), headers=api.auth("M-HANOI")) as r:
            if r.status == 200:
                item: dict[str, Any] = await r.json()
                return item
            assert r.status == 404, await r.text()
        assert time.monotonic() < deadline, f"{mid} never reached the M-HANOI inbox"
        await asyncio.sleep(0.2)


def wait_webhook(api: Api, site: str, kind: str, mid: str, status: int = 204) -> list[Any]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        got = api.receiver.events(site, kind, mid)
        if any(g[2] == status for g in got):
            return got
        time.sleep(0.1)
    raise AssertionError(f"no {kind} webhook for {mid} at {site}")


# -- curl ------------------------------------------------------------------------------


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", *args], capture_output=True, check=False
    )


def test_curl_submit_status_and_inbox_fetch(api: Api, tmp_path: Path) -> None:
    require_tool("curl")
    meta, doc = tmp_path / "meta.json", tmp_path / "rapport.pdf"
    meta.write_text(json.dumps({"to": ["M-HANOI"], "subject": "Rapport", "priority": "flash"}))
    doc.write_bytes(b"%PDF-1.7\n" + os.urandom(4000))
    auth = ["-H", f"Authorization: Bearer {api.tokens['M-PARIS']}"]
    sent = curl(
        *auth, "-w", "\n%{http_code}", "-F", f"metadata=@{meta};type=application/json",
        "-F", f"file=@{doc};type=application/pdf", api.url("M-PARIS", "/v1/documents"),
    )  # fmt: skip
    body, _, code = sent.stdout.decode().rpartition("\n")
    assert code == "202", sent
    mid = json.loads(body)["id"]
    deadline = time.monotonic() + WAIT_S
    while True:
        status = json.loads(curl(*auth, api.url("M-PARIS", f"/v1/documents/{mid}")).stdout)
        if status["status"] == "delivered" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status["status"] == "delivered" and status["priority"] == "flash", status
    hanoi = ["-H", f"Authorization: Bearer {api.tokens['M-HANOI']}"]
    listing = json.loads(curl(*hanoi, api.url("M-HANOI", "/v1/inbox?limit=500")).stdout)
    assert mid in [i["id"] for i in listing["items"]]
    got, headers = tmp_path / "got.pdf", tmp_path / "headers.txt"
    fetched = curl(
        *hanoi, "-D", str(headers), "-o", str(got), api.url("M-HANOI", f"/v1/inbox/{mid}/parts/0")
    )
    assert fetched.returncode == 0, fetched.stderr
    assert got.read_bytes() == doc.read_bytes()
    text = headers.read_text().lower()
    assert "content-type: application/pdf" in text and 'filename="rapport.pdf"' in text


# -- submit, deliver, fetch, webhooks -------------------------------------------------------


async def test_document_arrives_byte_identical_with_receipt_and_webhooks(api: Api) -> None:
    content = os.urandom(1_500_000)
    name = "note verbale n°7.pdf"
    async with aiohttp.ClientSession() as s:
        status, body, headers = await submit(
            s, api, {"to": ["M-HANOI"], "subject": "NV 7", "dossier": "NV/7"},
            [(name, "application/pdf", content), ("annexe.txt", "text/plain", b"annexe\n")],
        )  # fmt: skip
        assert status == 202, body
        mid = body["id"]
        assert headers["Location"] == f"/v1/documents/{mid}" == body["location"]
        item = await wait_inbox(s, api, mid)
        assert item["from"] == "M-PARIS" and item["subject"] == "NV 7" and item["dossier"] == "NV/7"
        assert [(p["name"], p["media_type"], p["size"]) for p in item["parts"]] == [
            (name, "application/pdf", len(content)),
            ("annexe.txt", "text/plain", 7),
        ]
        async with s.get(
            api.url("M-HANOI", item["parts"][0]["href"]), headers=api.auth("M-HANOI")
        ) as r:
            assert r.status == 200
            assert await r.read() == content
            assert r.headers["Content-Type"] == "application/pdf"
            assert f"filename*=UTF-8''{quote(name, safe='')}" in r.headers["Content-Disposition"]
        info = await wait_status(s, api, mid, "delivered")
        assert info["status"] == "delivered" and info["hops"] == {"HQ": "delivered"}, info
        assert info["history"][0]["state"] == "queued"
        async with s.get(
            api.url("M-PARIS", info["receipt"]["href"]), headers=api.auth("M-PARIS")
        ) as r:
            assert r.status == 200 and r.content_type == "application/vnd.valise.envelope"
            receipt = await r.read()
        routing = parse_framed_head(receipt)[0].head.routing
        assert routing.doc_class == "receipt" and routing.in_reply_to == mid
        assert routing.origin == "M-HANOI"
        # Acknowledged items leave the default listing but stay fetchable.
        async with s.post(
            api.url("M-HANOI", f"/v1/inbox/{mid}/ack"), headers=api.auth("M-HANOI")
        ) as r:
            assert r.status == 200 and (await r.json())["state"] == "acked"
        async with s.get(
            api.url("M-HANOI", "/v1/inbox?limit=500"), headers=api.auth("M-HANOI")
        ) as r:
            assert mid not in [i["id"] for i in (await r.json())["items"]]
        async with s.get(
            api.url("M-HANOI", "/v1/inbox?state=acked&limit=500"), headers=api.auth("M-HANOI")
        ) as r:
            assert mid in [i["id"] for i in (await r.json())["items"]]
    # Webhooks: signed, Standard Webhooks style; the failed first attempt was retried
    # under the same webhook-id.
    delivered = wait_webhook(api, "paris", "delivered", mid)
    assert [g[2] for g in delivered] == [503, 204]
    assert delivered[0][0]["webhook-id"] == delivered[1][0]["webhook-id"]
    for headers_, body_, _ in delivered:
        assert verify(api.secrets["M-PARIS"], headers_, body_)
        assert not verify(api.secrets["M-HANOI"], headers_, body_)
        assert headers_["webhook-signature"].startswith("v1,")
    received = wait_webhook(api, "hanoi", "received", mid)
    headers_, body_, _ = received[0]
    assert verify(api.secrets["M-HANOI"], headers_, body_)
    assert json.loads(body_)["data"]["origin"] == "M-PARIS"
    tampered = body_.replace(b"M-PARIS", b"M-EVILS")
    assert not verify(api.secrets["M-HANOI"], headers_, tampered)


async def test_raw_body_with_metadata_in_headers(api: Api) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(
            api.url("M-PARIS", "/v1/documents"),
            data=b"plain text body\n",
            headers={
                **api.auth("M-PARIS"),
                "Content-Type": "text/plain",
                "Content-Disposition": 'attachment; filename="lettre.txt"',
                "Valise-To": "M-HANOI",
                "Valise-Subject": quote("Lettre d'accréditation"),
                "Valise-Priority": "immediate",
            },
        ) as r:
            assert r.status == 202, await r.text()
            mid = (await r.json())["id"]
        item = await wait_inbox(s, api, mid)
    assert item["subject"] == "Lettre d'accréditation" and item["priority"] == "immediate"
    assert [(p["name"], p["media_type"]) for p in item["parts"]] == [("lettre.txt", "text/plain")]


async def test_inbox_is_cursor_paged(api: Api) -> None:
    async with aiohttp.ClientSession() as s:
        ids = []
        for i in range(3):
            status, body, _ = await submit(
                s, api, {"to": ["M-HANOI"]}, [(f"p{i}.txt", "text/plain", b"x")]
            )
            assert status == 202
            ids.append(body["id"])
        for mid in ids:
            await wait_inbox(s, api, mid)
        seen: list[str] = []
        cursor: str | None = None
        while True:
            query = "?limit=1" + (f"&cursor={cursor}" if cursor else "")
            async with s.get(
                api.url("M-HANOI", "/v1/inbox" + query), headers=api.auth("M-HANOI")
            ) as r:
                page = await r.json()
            assert len(page["items"]) <= 1
            seen += [i["id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) and set(ids) <= set(seen)
        async with s.get(
            api.url("M-HANOI", "/v1/inbox?cursor=garbage!"), headers=api.auth("M-HANOI")
        ) as r:
            assert r.status == 400 and (await r.json())["code"] == "malformed_request"


# -- idempotency ---------------------------------------------------------------------------


async def test_idempotency_key_same_request_same_id_sent_once(api: Api) -> None:
    meta = {"to": ["M-HANOI"], "subject": "once"}
    files = [("once.txt", "text/plain", b"only once\n")]
    async with aiohttp.ClientSession() as s:
        first = await submit(s, api, meta, files, **{"Idempotency-Key": "order-42"})
        again = await submit(s, api, meta, files, **{"Idempotency-Key": "order-42"})
        assert first[0] == again[0] == 202 and first[1]["id"] == again[1]["id"]
        assert again[2]["Idempotent-Replayed"] == "true"
        other = await submit(
            s,
            api,
            meta,
            [("once.txt", "text/plain", b"changed\n")],
            **{"Idempotency-Key": "order-42"},
        )
        assert other[0] == 409 and other[1]["code"] == "idempotency_conflict"
        mid = first[1]["id"]
        info = await wait_status(s, api, mid, "delivered")
        assert info["status"] == "delivered"
        assert [h["state"] for h in info["history"] if h["peer"] == "HQ"].count("queued") == 1
        await wait_inbox(s, api, mid)
        bad = await submit(s, api, meta, files, **{"Idempotency-Key": "é"})
        assert bad[0] == 400 and bad[1]["code"] == "invalid_idempotency_key"
    inbox = api.net.sites["M-HANOI"].directory / "inbox"
    assert sum(1 for p in inbox.iterdir() if p.name == mid) == 1


# -- circulars: state and receipts per destination -----------------------------------------


async def get_json(s: aiohttp.ClientSession, api: Api, path: str, token: str) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    async with s.get(api.url("M-PARIS", path), headers=headers) as r:
        return r.status, await r.json()


async def test_a_circulars_status_and_receipts_are_per_destination(api: Api) -> None:
    hanoi = api.net.sites["M-HANOI"]
    hanoi.stop()
    try:
        async with aiohttp.ClientSession() as s:
            status, body, _ = await submit(
                s, api, {"to": ["HQ", "M-HANOI"], "subject": "circulaire"},
                [("c.txt", "text/plain", b"circulaire\n")],
            )  # fmt: skip
            assert status == 202, body
            mid = body["id"]
            part = await wait_status(s, api, mid, "partially_delivered")
            assert part["status"] == "partially_delivered", part
            assert (part["receipts"], part["of"], part["outstanding"]) == (1, 2, ["M-HANOI"])
            sites = {d["site"]: d for d in part["destinations"]}
            assert sites["M-HANOI"]["state"] == "forwarded" and sites["M-HANOI"]["receipt"] is None
            assert (
                sites["HQ"]["state"] == "delivered" and len(sites["HQ"]["receipt"]["sha256"]) == 64
            )
            assert part["hops"] == {"HQ": "forwarded"} and part["receipt"] is None
            # Only HQ's completion so far: one delivered webhook, no completed.
            await asyncio.to_thread(wait_webhook, api, "paris", "delivered", mid)
            assert api.receiver.events("paris", "completed", mid) == []
    finally:
        hanoi.start()
    async with aiohttp.ClientSession() as s:
        done = await wait_status(s, api, mid, "delivered")
        assert done["status"] == "delivered" and (done["receipts"], done["of"]) == (2, 2), done
        assert done["outstanding"] == [] and done["hops"] == {"HQ": "delivered"}
        got: dict[str, bytes] = {}
        for d in done["destinations"]:
            receipt = d["receipt"]
            assert receipt["href"] == f"/v1/documents/{mid}/receipts/{d['site']}"
            async with s.get(api.url("M-PARIS", receipt["href"]), headers=api.auth("M-PARIS")) as r:
                assert r.status == 200 and r.content_type == "application/vnd.valise.envelope"
                got[d["site"]] = await r.read()
            head = parse_framed_head(got[d["site"]])[0]
            assert head.head.routing.origin == d["site"] and head.head.routing.in_reply_to == mid
            assert head.digest.hex() == receipt["sha256"] and len(got[d["site"]]) == receipt["size"]
        assert got["HQ"] != got["M-HANOI"]
        token = api.tokens["M-PARIS"]
        # The single receipt of a circular is no answer: 409, naming where to look.
        code, err = await get_json(s, api, f"/v1/documents/{mid}/receipt", token)
        assert (code, err["code"]) == (409, "circular") and "/receipts/" in err["message"]
        # Not a destination, malformed, or this site itself: 404 JSON, never a crash.
        for site in ("M-PARIS", "M-ROME", "m-hanoi", "X", "M-" + "A" * 40, "H%C3%A9"):
            code, err = await get_json(s, api, f"/v1/documents/{mid}/receipts/{site}", token)
            assert (code, err["code"]) == (404, "not_found"), site
    # Webhooks: delivered once per destination, naming it; completed once, at the end.
    delivered = await asyncio.to_thread(wait_webhook, api, "paris", "delivered", mid)
    completed = await asyncio.to_thread(wait_webhook, api, "paris", "completed", mid)
    await asyncio.sleep(1.0)  # time for a (wrong) second completed to show
    firsts = {
        g[0]["webhook-id"]: json.loads(g[1]) for g in api.receiver.events("paris", "delivered", mid)
    }
    assert sorted(e["data"]["site"] for e in firsts.values()) == ["HQ", "M-HANOI"], delivered
    assert {e["data"]["receipt_sha256"] for e in firsts.values()} == {
        parse_framed_head(b)[0].digest.hex() for b in got.values()
    }
    ends = {
        g[0]["webhook-id"]: json.loads(g[1]) for g in api.receiver.events("paris", "completed", mid)
    }
    assert len(ends) == 1, completed
    (end,) = ends.values()
    assert (end["data"]["delivered"], end["data"]["of"], end["data"]["failed"]) == ("2", "2", "")
    for headers_, body_, _ in completed:
        assert verify(api.secrets["M-PARIS"], headers_, body_)


async def test_another_integrator_sees_none_of_a_circulars_status_or_receipts(api: Api) -> None:
    paris = api.net.sites["M-PARIS"]
    out = valise("integrator", "add", "rival", "--dir", str(paris.directory))
    assert out.returncode == 0, out.stderr
    rival = out.stdout.strip()
    async with aiohttp.ClientSession() as s:
        status, body, _ = await submit(
            s, api, {"to": ["HQ", "M-HANOI"]}, [("r.txt", "text/plain", b"r\n")]
        )
        assert status == 202, body
        mid = body["id"]
        await wait_status(s, api, mid, "delivered")
        paths = [
            f"/v1/documents/{mid}",
            f"/v1/documents/{mid}/receipt",
            f"/v1/documents/{mid}/receipts/HQ",
            f"/v1/documents/{mid}/receipts/M-HANOI",
            f"/v1/documents/{mid}/receipts/M-ROME",
            f"/v1/documents/{mid}/receipts/not%20a%20site",
        ]
        for path in paths:
            code, err = await get_json(s, api, path, rival)
            # As before circulars: 404, the same words whatever follows the id.
            assert (code, err["code"]) == (404, "not_found"), path
            assert err["message"] == f"no document {mid} submitted by this integrator", path
        async with s.get(
            api.url("M-PARIS", f"/v1/documents/{mid}/receipts/HQ"), headers=api.auth("M-PARIS")
        ) as r:
            assert r.status == 200  # its own integrator gets it


# -- negatives ---------------------------------------------------------------------------------


async def test_missing_wrong_and_revoked_tokens_get_401_and_are_logged(api: Api) -> None:
    paris = api.net.sites["M-PARIS"]
    out = valise("integrator", "add", "temp", "--dir", str(paris.directory))
    assert out.returncode == 0, out.stderr
    temp = out.stdout.strip()
    again = valise("integrator", "add", "temp", "--dir", str(paris.directory))
    assert again.returncode == 2 and "exists" in again.stderr
    for bad in (("BAD NAME",), ("ok", "--webhook", "ftp://x")):
        refused = valise("integrator", "add", *bad, "--dir", str(paris.directory))
        assert refused.returncode == 2 and refused.stdout == "", refused.stderr
    unknown = valise("integrator", "revoke", "nobody", "--dir", str(paris.directory))
    assert unknown.returncode == 2 and "no active integrator" in unknown.stderr
    async with aiohttp.ClientSession() as s:
        for headers in (
            {},
            {"Authorization": "Bearer vlt_" + "A" * 43},
            {"Authorization": "Basic dXNlcjpwYXNz"},
            {"Authorization": f"Bearer {temp}x"},
        ):
            async with s.get(api.url("M-PARIS", "/v1/inbox"), headers=headers) as r:
                assert r.status == 401 and (await r.json())["code"] == "unauthorized"
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
        async with s.get(
            api.url("M-PARIS", "/v1/inbox"), headers={"Authorization": f"Bearer {temp}"}
        ) as r:
            assert r.status == 200
        assert valise("integrator", "revoke", "temp", "--dir", str(paris.directory)).returncode == 0
        async with s.get(
            api.url("M-PARIS", "/v1/openapi.json"), headers={"Authorization": f"Bearer {temp}"}
        ) as r:
            assert r.status == 401
    listing = json.loads(
        valise("integrator", "list", "--json", "--dir", str(paris.directory)).stdout
    )
    mine = {r["name"]: r["status"] for r in listing if r["name"] in ("app", "temp")}
    assert mine == {"app": "active", "temp": "revoked"}  # other tests add their own
    assert temp not in paris.log.read_text()  # tokens are never logged
    lines = paris.log.read_text().splitlines()
    logged = [json.loads(line) for line in lines if "http_unauthorized" in line]
    assert {e["reason"] for e in logged} >= {"missing bearer token", "unknown or revoked token"}


async def test_size_encoding_multipart_and_metadata_errors(api: Api) -> None:
    url = api.url("M-PARIS", "/v1/documents")
    auth = api.auth("M-PARIS")
    async with aiohttp.ClientSession() as s:

        async def post(data: Any, **headers: str) -> tuple[int, str]:
            async with s.post(url, data=data, headers={**auth, **headers}) as r:
                return r.status, (await r.json())["code"]

        big = os.urandom(MAX_BODY + 1)
        declared = await post(io.BytesIO(big), **{"Valise-To": "M-HANOI"})
        assert declared == (413, "payload_too_large")

        async def chunks() -> Any:  # no Content-Length: refused once past the limit
            for _ in range(MAX_BODY // 65536 + 2):
                yield bytes(65536)

        assert await post(chunks(), **{"Valise-To": "M-HANOI"}) == (413, "payload_too_large")
        got = await submit(
            s, api, {"to": ["M-HANOI"]}, [("big.bin", "application/octet-stream", big)]
        )
        assert (got[0], got[1]["code"]) == (413, "payload_too_large")
        assert await post(b"x", **{"Valise-To": "M-HANOI", "Content-Encoding": "gzip"}) == (
            415,
            "unsupported_encoding",
        )
        boundary = "----b"
        broken = (  # the last part never ends
            f"--{boundary}\r\nContent-Type: application/json\r\n\r\n"
            '{"to": ["M-HANOI"]}\r\n'
            f"--{boundary}\r\nContent-Disposition: form-data; name=file; filename=a\r\n\r\nabc"
        )
        assert await post(
            broken.encode(), **{"Content-Type": f"multipart/form-data; boundary={boundary}"}
        ) == (400, "malformed_multipart")
        assert await post(b"garbage", **{"Content-Type": "multipart/form-data"}) == (
            400,
            "malformed_multipart",
        )
        for meta, code in (
            ({"to": ["M-NOWHERE"]}, "unknown_site"),
            ({"to": ["not a site"]}, "unknown_site"),
            ({"to": []}, "invalid_metadata"),
            ({"to": ["M-HANOI"], "priority": "urgent"}, "invalid_metadata"),
            ({"to": ["M-HANOI"], "expires": "2001-01-01T00:00:00Z"}, "invalid_metadata"),
            ({"to": ["M-HANOI"], "colour": "red"}, "invalid_metadata"),
        ):
            got = await submit(s, api, meta, [("a.txt", "text/plain", b"a")])
            assert (got[0], got[1]["code"]) == (422, code), meta
        got = await submit(s, api, {"to": ["M-HANOI"]}, [])
        assert (got[0], got[1]["code"]) == (422, "no_documents")
        data = aiohttp.FormData()
        data.add_field("metadata", "{not json", content_type="application/json")
        assert await post(data) == (400, "malformed_metadata")
        async with s.get(api.url("M-PARIS", "/v1/nothing"), headers=auth) as r:
            assert r.status == 404 and (await r.json())["code"] == "not_found"
        async with s.delete(api.url("M-PARIS", "/v1/inbox"), headers=auth) as r:
            assert r.status == 405 and (await r.json())["code"] == "method_not_allowed"
        # A message this integrator did not submit is not its to see.
        async with s.get(
            api.url("M-HANOI", "/v1/documents/0190a000-0000-7000-8000-000000000001"),
            headers=api.auth("M-HANOI"),
        ) as r:
            assert r.status == 404


async def test_openapi_document_is_served(api: Api) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.get(api.url("M-PARIS", "/v1/openapi.json"), headers=api.auth("M-PARIS")) as r,
    ):
        doc = await r.json()
    assert doc["openapi"] == "3.1.0" and "/v1/documents" in doc["paths"]


# -- edXML ----------------------------------------------------------------------------------

EDXML_NS = edxml.NS


def edxml_doc(to: str, files: list[tuple[str, str, bytes]]) -> bytes:
    refs = "".join(
        f"<e:Reference><e:ContentId>cid:{i}</e:ContentId><e:ContentType>{m}</e:ContentType>"
        f"<e:AttachmentName>{n}</e:AttachmentName></e:Reference>"
        for i, (n, m, _) in enumerate(files)
    )
    enc = "".join(
        f"<e:Attachment><e:ContentId>cid:{i}</e:ContentId>"
        f"<e:ContentTransferEncoded>{base64.b64encode(d).decode()}</e:ContentTransferEncoded></e:Attachment>"
        for i, (_, _, d) in enumerate(files)
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<e:edXMLEnvelope xmlns:e="{EDXML_NS}"><e:edXMLHeader><e:MessageHeader>
<e:From><e:OrganId>M-PARIS</e:OrganId><e:OrganName>Bộ Ngoại giao</e:OrganName></e:From>
<e:To><e:OrganId>{to}</e:OrganId><e:OrganName>Đại sứ quán</e:OrganName></e:To>
<e:Code><e:CodeNumber>45</e:CodeNumber><e:CodeNotation>BNG-LS</e:CodeNotation></e:Code>
<e:DocumentType><e:Type>1</e:Type></e:DocumentType>
<e:Subject>Về việc cấp thị thực</e:Subject><e:DueDate>2099-01-31</e:DueDate>
<e:OtherInfo><e:Priority>2</e:Priority></e:OtherInfo><e:DocumentId>VB-45</e:DocumentId>
</e:MessageHeader></e:edXMLHeader>
<e:edXMLBody><e:edXMLManifest version="1.0">{refs}</e:edXMLManifest>
<e:AttachmentEncoded>{enc}</e:AttachmentEncoded></e:edXMLBody></e:edXMLEnvelope>""".encode()


async def test_edxml_round_trip_and_malformed_edxml(api: Api) -> None:
    files = [
        ("cong-van.pdf", "application/pdf", os.urandom(5000)),
        ("phu-luc.txt", "text/plain", "phụ lục\n".encode()),
    ]
    url = api.url("M-PARIS", "/v1/documents")
    headers = {**api.auth("M-PARIS"), "Content-Type": edxml.MEDIA_TYPE}
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=edxml_doc("M-HANOI", files), headers=headers) as r:
            assert r.status == 202, await r.text()
            mid = (await r.json())["id"]
        item = await wait_inbox(s, api, mid)
        assert item["subject"] == "Về việc cấp thị thực" and item["priority"] == "immediate"
        assert item["class"] == "edxml-1" and item["dossier"] == "45/BNG-LS"
        assert [p["name"] for p in item["parts"]] == [
            "cong-van.pdf",
            "phu-luc.txt",
            edxml.HEADER_PART_NAME,
        ]
        async with s.get(
            api.url("M-HANOI", f"/v1/inbox/{mid}/parts/0"), headers=api.auth("M-HANOI")
        ) as r:
            assert await r.read() == files[0][2] and r.content_type == "application/pdf"
        for query, accept in (("?format=edxml", {}), ("", {"Accept": edxml.MEDIA_TYPE})):
            async with s.get(
                api.url("M-HANOI", f"/v1/inbox/{mid}{query}"),
                headers={**api.auth("M-HANOI"), **accept},
            ) as r:
                assert r.status == 200 and r.content_type == edxml.MEDIA_TYPE
                back = edxml.parse_edxml(await r.read(), max_bytes=MAX_BODY * 2)
            assert [(a.name, a.media_type, a.data) for a in back.attachments] == files
            assert back.sender == edxml.Party("M-PARIS", "Bộ Ngoại giao")
            assert (back.code_number, back.code_notation, back.document_id) == (
                "45",
                "BNG-LS",
                "VB-45",
            )
            assert back.subject == "Về việc cấp thị thực" and back.priority == "2"
        # An organ id no site serves (see test_edxml_network.py for organs) needs Valise-To.
        foreign = edxml_doc("000.00.00.H01", files[:1])
        async with s.post(url, data=foreign, headers=headers) as r:
            body = await r.json()
            assert r.status == 422 and body["code"] == "unknown_organ", body
            assert body["message"] == "no site serves organ 000.00.00.H01", body
        async with s.post(url, data=foreign, headers={**headers, "Valise-To": "M-HANOI"}) as r:
            assert r.status == 202
        for bad in (
            b"<not-closed>",
            b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>",
            b'<edXMLEnvelope xmlns="urn:x"/>',
        ):
            async with s.post(url, data=bad, headers=headers) as r:
                assert r.status == 400 and (await r.json())["code"] == "malformed_edxml", bad


# -- failure (last: it stops HQ for a while) ---------------------------------------------


async def test_failed_webhook_when_a_message_expires_undelivered(api: Api) -> None:
    hq = api.net.sites["HQ"]
    hq.stop()
    try:
        expires = datetime.now(UTC) + timedelta(seconds=3)
        async with aiohttp.ClientSession() as s:
            status, body, _ = await submit(
                s, api, {"to": ["M-HANOI"], "expires": expires.isoformat()},
                [("late.txt", "text/plain", b"too late\n")],
            )  # fmt: skip
            assert status == 202, body
            mid = body["id"]
            failed = await asyncio.to_thread(wait_webhook, api, "paris", "failed", mid)
            assert verify(api.secrets["M-PARIS"], failed[-1][0], failed[-1][1])
            assert json.loads(failed[-1][1])["data"]["reason"] == "expired"
            info = await wait_status(s, api, mid, "failed")
            assert info["status"] == "failed" and info["hops"] == {"HQ": "failed"}
    finally:
        hq.start()
