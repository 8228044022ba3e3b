"""Adversarial review 12c of issue 12 (edXML bridge, organ directory) on a live loopback
network: HQ (organ G17), M-PARIS (G22) and M-HANOI (H41, H14), the fixture of
test_edxml_network. An integrator of M-PARIS holding a valid token lies in its
headers. F1 (sending as an organ its site does not serve) failed before its fix; the
other tests are what the review tried and held, kept as regressions.
"""

from __future__ import annotations

import asyncio
import json
import time
from base64 import b64encode
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.bridges import edxml
from tests.system import test_edxml_network as edxml_network
from tests.system.test_edxml_network import Net, post_edxml
from tests.system.test_http_api import valise

NS = edxml.NS
net = edxml_network.net  # the fixture: HQ, M-PARIS, M-HANOI and their organs


def new_document(
    sender: str, to: str, doc_id: str = "000.00.00.G22,2026/01/01,1/RV12C", subject: str = "r"
) -> bytes:
    data = b64encode(b"%PDF-1.4 review 12c\n").decode()
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<edXML xmlns="{NS}"><edXML:edXMLEnvelope xmlns:edXML="{NS}">
 <edXML:edXMLHeader><edXML:MessageHeader>
  <edXML:From><edXML:OrganId>{sender}</edXML:OrganId><edXML:OrganName>X</edXML:OrganName></edXML:From>
  <edXML:To><edXML:OrganId>{to}</edXML:OrganId></edXML:To>
  <edXML:DocumentId>{doc_id}</edXML:DocumentId>
  <edXML:Subject>{subject}</edXML:Subject>
 </edXML:MessageHeader></edXML:edXMLHeader>
 <edXML:edXMLBody><edXML:edXMLManifest version="1.0"><edXML:Reference>
  <edXML:ContentId>cid:1</edXML:ContentId><edXML:ContentType>application/pdf</edXML:ContentType>
  <edXML:AttachmentName>a.pdf</edXML:AttachmentName></edXML:Reference>
 </edXML:edXMLManifest></edXML:edXMLBody></edXML:edXMLEnvelope>
<AttachmentEncoded><Attachment><ContentId>cid:1</ContentId><AttachmentName>a.pdf</AttachmentName>
<ContentType>application/pdf</ContentType>
<edXML:ContentTransferEncoded xmlns:edXML="{NS}">{data}</edXML:ContentTransferEncoded>
</Attachment></AttachmentEncoded></edXML>""".encode()


def queued(net: Net, site: str) -> list[str]:
    out = valise("queue", "list", "--all", "--json", "--dir", net.folder(site))
    assert out.returncode == 0, out.stderr
    return sorted(q["id"] for q in json.loads(out.stdout))


async def arrived(s: aiohttp.ClientSession, net: Net, site: str, mid: str) -> dict[str, Any] | None:
    """The inbox item at ``site`` if it arrives within a few seconds, else None."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        async with s.get(net.url(site, f"/v1/inbox/{mid}"), headers=net.auth(site)) as r:
            if r.status == 200:
                item: dict[str, Any] = await r.json()
                return item
        await asyncio.sleep(0.3)
    return None


async def exported_sender(s: aiohttp.ClientSession, net: Net, site: str, mid: str) -> str:
    async with s.get(net.url(site, f"/v1/inbox/{mid}?format=edxml"), headers=net.auth(site)) as r:
        back = await r.read()
    return edxml.parse_edxml(back, max_bytes=len(back)).sender.organ_id


# F1: From/OrganId is never checked against the organs of the sending site. An
# integrator of M-PARIS (G22) sends as HQ's organ G17 or as M-HANOI's own H14; the
# receiver's DMS gets an edXML export whose From says G17/H14 (the kept header "as
# sent"), while the directory says M-PARIS serves only G22.
@pytest.mark.parametrize("claimed", ["000.00.00.G17", "000.00.00.H14", "000.99.99.NOBODY"])
async def test_an_integrator_cannot_send_as_an_organ_its_site_does_not_serve(
    net: Net, claimed: str
) -> None:
    async with aiohttp.ClientSession() as s:
        status, body = await post_edxml(
            s, net, "M-PARIS", new_document(claimed, "000.00.00.H41", subject=f"as {claimed}")
        )
        if status == 202:
            item = await arrived(s, net, "M-HANOI", body["id"])
            seen = await exported_sender(s, net, "M-HANOI", body["id"]) if item else None
            pytest.fail(
                f"M-PARIS (organ G22) sent as {claimed}: 202,"
                f" delivered to M-HANOI={item is not None},"
                f" M-HANOI's edXML export says From/OrganId={seen}"
            )
        assert status == 422, body


# Organ id tricks: each is refused 422 unknown_organ naming it (printable), nothing
# queued, never a 500.
@pytest.mark.parametrize(
    "organ",
    [
        "000.00.00.h41",  # case
        "000.00.00.Н41",  # Cyrillic EN
        "000.00.00.H41\u200b",  # zero-width space
        "000.00.00.H41\u00a0x",  # no-break space inside
        "m-hanoi",  # a site id in another case
        "000.00.00.H41 000.00.00.H14",  # two ids in one
    ],
)
async def test_organ_id_tricks_are_refused_cleanly(net: Net, organ: str) -> None:
    before = queued(net, "M-PARIS")
    async with aiohttp.ClientSession() as s:
        status, body = await post_edxml(s, net, "M-PARIS", new_document("000.00.00.G22", organ))
    assert (status, body.get("code")) == (422, "unknown_organ"), body
    assert "\u200b" not in body["message"] and "\u00a0" not in body["message"], body
    assert queued(net, "M-PARIS") == before


# An organ of the sending site itself (M-PARIS -> G22): a document to oneself. Either
# delivered to M-PARIS's own inbox or refused clearly; never a 500 or a stuck queue.
async def test_a_document_to_an_organ_of_the_sending_site(net: Net) -> None:
    async with aiohttp.ClientSession() as s:
        status, body = await post_edxml(
            s, net, "M-PARIS", new_document("000.00.00.G22", "000.00.00.G22")
        )
        assert status in (202, 422), body
        if status == 202:
            assert await arrived(s, net, "M-PARIS", body["id"]) is not None


def _hwm_kib(net: Net, site: str) -> int:
    proc = net.net.sites[site].proc
    assert proc is not None
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


# Memory: exporting a document with a 16 MiB attachment as edXML at the receiver
# streams it (EDXML.md: "no copy of an attachment in memory"): the receiving gateway's
# peak resident memory grows by less than the attachment's size.
async def test_the_edxml_export_of_a_large_attachment_does_not_hold_it(net: Net) -> None:
    import os

    big = os.urandom(16 * 1024 * 1024)
    doc = new_document("000.00.00.G22", "000.00.00.H41").replace(
        b64encode(b"%PDF-1.4 review 12c\n"), b64encode(big)
    )
    async with aiohttp.ClientSession() as s:
        status, body = await post_edxml(s, net, "M-PARIS", doc)
        assert status == 202, body
        item = await arrived(s, net, "M-HANOI", body["id"])
        assert item is not None
        await asyncio.sleep(2)
        before = _hwm_kib(net, "M-HANOI")
        async with s.get(
            net.url("M-HANOI", f"/v1/inbox/{body['id']}?format=edxml"), headers=net.auth("M-HANOI")
        ) as r:
            n = 0
            async for chunk in r.content.iter_chunked(1 << 20):
                n += len(chunk)
        after = _hwm_kib(net, "M-HANOI")
    assert n > len(big)
    assert after - before < 16 * 1024, f"peak RSS grew by {(after - before) // 1024} MiB"


# A wrapped ZIP whose one entry is named with a path, quotes and line breaks: the
# unzipped view serves the file under a harmless name, never a 500, and writes
# nothing outside its scratch folder.
async def test_zip_entry_names_with_paths_and_line_breaks(net: Net) -> None:
    import io
    import zipfile

    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as z:
        z.writestr('../../../tmp/rv12c"\r\nX-Evil: 1.doc', b"inner file")
    doc = (
        new_document("000.00.00.G22", "000.00.00.H41")
        .replace(b"application/pdf", b"application/zip")
        .replace(b"a.pdf", b"a.doc")
        .replace(b64encode(b"%PDF-1.4 review 12c\n"), b64encode(raw.getvalue()))
    )
    async with aiohttp.ClientSession() as s:
        status, body = await post_edxml(s, net, "M-PARIS", doc)
        assert status == 202, body
        item = await arrived(s, net, "M-HANOI", body["id"])
        assert item is not None and "unzipped" in item["parts"][0], item
        async with s.get(
            net.url("M-HANOI", item["parts"][0]["unzipped"]), headers=net.auth("M-HANOI")
        ) as r:
            assert r.status == 200, await r.text()
            assert await r.read() == b"inner file"
            assert "X-Evil" not in r.headers
            assert "\r" not in r.headers["Content-Disposition"]
    assert not Path('/tmp/rv12c"\r\nX-Evil: 1.doc').exists()


# No request an integrator can make about the edXML views answers 5xx or hangs.
async def test_no_5xx_on_odd_edxml_requests(net: Net) -> None:
    async with aiohttp.ClientSession() as s:
        status, body = await post_edxml(
            s, net, "M-PARIS", new_document("000.00.00.G22", "000.00.00.H41")
        )
        assert status == 202, body
        mid = body["id"]
        assert await arrived(s, net, "M-HANOI", mid) is not None
        paths = [
            f"/v1/inbox/{mid}?format=EDXML",
            f"/v1/inbox/{mid}?format=edxml&format=json",
            f"/v1/inbox/{mid}/parts/-1/unzipped",
            f"/v1/inbox/{mid}/parts/99999999999999999999/unzipped",
            f"/v1/inbox/{mid}/parts/1/unzipped",
            f"/v1/inbox/{mid}/parts/%30/unzipped",
            f"/v1/inbox/{mid}/parts/0/unzipped",
            "/v1/inbox/../../etc/passwd?format=edxml",
            f"/v1/inbox/{mid.upper()}?format=edxml",
            "/v1/inbox?state=all&limit=500",
        ]
        bad = []
        for p in paths:
            async with s.get(
                net.url("M-HANOI", p),
                headers={**net.auth("M-HANOI"), "Accept": "application/edxml+xml"},
            ) as r:
                await r.read()
                if r.status >= 500:
                    bad.append((p, r.status))
        for accept in (
            "application/edxml+xml;q=0",
            "*/*, application/edxml+xml",
            "application/edxml+xml, application/json",
        ):
            async with s.get(
                net.url("M-HANOI", f"/v1/inbox/{mid}"),
                headers={**net.auth("M-HANOI"), "Accept": accept},
            ) as r:
                await r.read()
                if r.status >= 500:
                    bad.append((accept, r.status))
    assert not bad, bad
