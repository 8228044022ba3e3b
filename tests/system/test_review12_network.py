"""Review of issue 12 (edXML) on a live loopback network: HQ, M-PARIS and M-HANOI with
their HTTP APIs and organs (the fixture of test_edxml_network). An integrator of
M-PARIS, holding a valid token, submits hostile edXML addressed by organ to
M-HANOI (000.00.00.H41). Each test fails on the code reviewed; see
/tmp/h/review12.md.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from base64 import b64encode
from pathlib import Path
from typing import Any

import aiohttp

from gateway.bridges import edxml
from tests.system import test_edxml_network as edxml_network
from tests.system.test_edxml_network import WAIT_S, Net, post_edxml
from tests.system.test_http_api import valise
from tests.unit.test_review12_edxml import zip_with_empty_entry_name

NS = edxml.NS
net = edxml_network.net  # the fixture: HQ, M-PARIS, M-HANOI and their organs


def b64(data: bytes) -> str:
    return b64encode(data).decode()


def document(manifest: str, encoded: str, subject: str = "review 12") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<edXML xmlns="{NS}"><edXML:edXMLEnvelope xmlns:edXML="{NS}">
 <edXML:edXMLHeader><edXML:MessageHeader>
  <edXML:From><edXML:OrganId>000.00.00.G22</edXML:OrganId></edXML:From>
  <edXML:To><edXML:OrganId>000.00.00.H41</edXML:OrganId></edXML:To>
  <edXML:DocumentId>000.00.00.G22,2026/01/01,1/REAL</edXML:DocumentId>
  <edXML:Subject>{subject}</edXML:Subject>
 </edXML:MessageHeader></edXML:edXMLHeader>
 <edXML:edXMLBody><edXML:edXMLManifest version="1.0">{manifest}</edXML:edXMLManifest>
 </edXML:edXMLBody></edXML:edXMLEnvelope>
<AttachmentEncoded>{encoded}</AttachmentEncoded></edXML>""".encode()


def attachment(cid: str, name: str, media: str, data: bytes) -> str:
    return (
        f"<Attachment><ContentId>{cid}</ContentId><AttachmentName>{name}</AttachmentName>"
        f"<ContentType>{media}</ContentType>"
        f'<edXML:ContentTransferEncoded xmlns:edXML="{NS}">{b64(data)}'
        "</edXML:ContentTransferEncoded></Attachment>"
    )


def delivered_folder(net: Net, mid: str) -> Path:
    """M-HANOI's inbox folder of ``mid`` once delivered (read from disk: the HTTP
    item itself may be what a finding breaks)."""
    folder = Path(net.folder("M-HANOI")) / "inbox" / mid
    deadline = time.monotonic() + WAIT_S
    while not (folder / ".valise.json").is_file():
        assert time.monotonic() < deadline, f"{mid} never reached the M-HANOI inbox"
        time.sleep(0.2)
    return folder


async def get(s: aiohttp.ClientSession, net: Net, path: str) -> tuple[int, Any]:
    async with s.get(net.url("M-HANOI", path), headers=net.auth("M-HANOI")) as r:
        body = await r.read()
        try:
            return r.status, json.loads(body)
        except ValueError:
            return r.status, body


# F1: the media type of the kept header is reserved for multipart and raw bodies
# (_refuse_reserved), but an edXML attachment's own ContentType becomes its part's
# media type unchecked. A part before the gateway's header, typed as the header, is
# what the receiver reads as "the kept header" (header_number takes the first): the
# origin integrator's raw bytes, never parsed or canonicalised by the sender.

FORGED = f"""<?xml version="1.0" encoding="UTF-8"?>
<edXML xmlns="{NS}"><edXMLEnvelope><edXMLHeader><MessageHeader>
 <From><OrganId>000.00.00.H41</OrganId></From>
 <ResponseFor><OrganId>000.00.00.H41</OrganId><DocumentId>FORGED-ID</DocumentId></ResponseFor>
 <StatusCode>15</StatusCode><Description>forged status</Description>
</MessageHeader></edXMLHeader></edXMLEnvelope></edXML>""".encode()


async def test_an_edxml_attachment_cannot_take_the_kept_header_media_type(net: Net) -> None:
    sent = document(
        "", attachment("cid:1", "note.xml", edxml.HEADER_MEDIA_TYPE, FORGED), subject="forged"
    )
    async with aiohttp.ClientSession() as s:
        status, body = await post_edxml(s, net, "M-PARIS", sent)
        if status != 202:
            assert status == 422, body  # refused, as for multipart and raw bodies
            return
        mid = body["id"]
        delivered_folder(net, mid)
        status, item = await get(s, net, f"/v1/inbox/{mid}")
        assert status == 200, item
    headers = [p for p in item["parts"] if p["media_type"] == edxml.HEADER_MEDIA_TYPE]
    assert len(headers) == 1, item["parts"]
    assert item["kind"] == "new", item["edxml_header"]
    assert item["edxml_header"]["document_id"] == "000.00.00.G22,2026/01/01,1/REAL"


# F2 + F3: the sender pairs the Attachment cid:1 with the first Reference cid:1
# (a.zip: is_wrapped_zip never opens a .zip), the receiver with the last (b.pdf, a
# Reference holding its own content). The receiver opens the part as a possible
# ZIP; its entry has an empty name, ZipInfo.is_dir() raises IndexError, read_info
# lets it through: GET /v1/inbox, GET /v1/inbox/{id}, `valise inbox list` and
# `valise queue list` fail at M-HANOI for as long as the item's folder exists.

POISON = document(
    "<edXML:Reference><edXML:ContentId>cid:1</edXML:ContentId>"
    "<edXML:AttachmentName>a.zip</edXML:AttachmentName></edXML:Reference>"
    "<edXML:Reference><edXML:ContentId>cid:1</edXML:ContentId>"
    "<edXML:AttachmentName>b.pdf</edXML:AttachmentName>"
    f"<edXML:ContentTransferEncoded>{b64(b'%PDF-1.4 plain')}</edXML:ContentTransferEncoded>"
    "</edXML:Reference>",
    "<Attachment><ContentId>cid:1</ContentId><ContentType>application/octet-stream</ContentType>"
    f'<edXML:ContentTransferEncoded xmlns:edXML="{NS}">{b64(zip_with_empty_entry_name())}'
    "</edXML:ContentTransferEncoded></Attachment>",
    subject="poison",
)


async def test_one_hostile_document_does_not_break_the_receivers_inbox_listing(net: Net) -> None:
    async with aiohttp.ClientSession() as s:
        status, body = await post_edxml(s, net, "M-PARIS", POISON)
        if status != 202:
            assert status in (400, 422), body
            return
        mid = body["id"]
        await asyncio.to_thread(delivered_folder, net, mid)
        listed_status, listed = await get(s, net, "/v1/inbox?limit=500")
        item_status, item = await get(s, net, f"/v1/inbox/{mid}")
    assert listed_status == 200, listed
    assert any(i["id"] == mid for i in listed["items"])
    assert item_status == 200, item
    cli = valise("inbox", "list", "--json", "--dir", net.folder("M-HANOI"))
    assert cli.returncode == 0, cli.stderr
    queue = valise("queue", "list", "--dir", net.folder("M-HANOI"))
    assert queue.returncode == 0, queue.stderr


# F3 at the door: the same ZIP under a name that is not .zip is opened at
# submission; the IndexError escapes the parser ("raises EdxmlError and nothing
# else") and the integrator gets 500 internal_error instead of a 400 naming it.


async def test_a_zip_entry_without_a_name_is_refused_not_a_500(net: Net) -> None:
    sent = document(
        "", attachment("cid:1", "a.pdf", "application/zip", zip_with_empty_entry_name())
    )
    async with aiohttp.ClientSession() as s:
        status, body = await post_edxml(s, net, "M-PARIS", sent)
    assert status in (202, 400, 422), body


# F2: a ZIP bomb that check_zip never sees at submission (not "zipped" by the
# sender's pairing), but that the receiver marks zipped and offers unzipped (its
# pairing adds the Reference's application/zip). Bounded at the receiver, but the
# "nothing queued" promise of the bad-input rule is broken.


def _bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.bin", b"\0" * (4 * 1024 * 1024))  # ratio ~1000 > UNZIP_MAX_RATIO
    return out.getvalue()


async def test_a_part_unzipped_at_the_receiver_was_zip_checked_at_submission(net: Net) -> None:
    sent = document(
        "<edXML:Reference><edXML:ContentId>cid:1</edXML:ContentId>"
        "<edXML:ContentType>application/zip</edXML:ContentType>"
        "<edXML:AttachmentName>cover.txt</edXML:AttachmentName>"
        f"<edXML:ContentTransferEncoded>{b64(b'cover')}</edXML:ContentTransferEncoded>"
        "</edXML:Reference>",
        attachment("cid:1", "report.pdf", "application/pdf", _bomb()),
        subject="unchecked zip",
    )
    async with aiohttp.ClientSession() as s:
        status, body = await post_edxml(s, net, "M-PARIS", sent)
        if status != 202:
            # Refused since review 12c: the Reference's own content and the Attachment
            # share cid:1 ("two attachments have ContentId"); or the ZIP bomb itself.
            assert (status, body["code"]) in ((422, "unsafe_attachment"), (400, "malformed_edxml"))
            return
        mid = body["id"]
        await asyncio.to_thread(delivered_folder, net, mid)
        status, item = await get(s, net, f"/v1/inbox/{mid}")
    assert status == 200, item
    offered = [p["name"] for p in item["parts"] if "unzipped" in p]
    assert offered == [], f"offered unzipped, never checked at submission: {offered}"
