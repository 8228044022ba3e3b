"""A remote site steering local delivery through the sealed header (issue 9, hole 3).

The origin chooses ``<mailbox>``, ``<originator>``, ``<subject>`` and the part names.
At the destination they reach ``RCPT TO`` / ``MAIL FROM`` at the smarthost (a capture
SMTP server on loopback here), a Maildir folder and the headers of the mail. Whatever
the origin sealed, RCPT TO is only ever a mailbox of this site (the default one when
the given one is refused), the Maildir is under the site's Maildir root, no header is
added, and the refusal is in the audit log.

The first tests hand hostile sealed headers to the destination's local delivery
directly (the CR/LF cases cannot even be sealed: the envelope format refuses control
characters); the last one is the whole attack on a network: M-PARIS seals a document
for HQ with the mailbox ``minister.private@external.example,``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from envelope.model import PartInfo, SealedHeader
from gateway.bridges.mail.delivery import deliver_locally
from gateway.bridges.mail.maildir import delivered_keys
from gateway.demo.network import Network, free_port
from gateway.relay.outbox import Document, send_documents
from gateway.site.context import SiteContext, load_site
from gateway.trust.enroll import init_hub
from tests.support.smtp import wait_for
from tests.system.test_relay import FAST

HOSTILE = [
    "minister.private@external.example,",
    "a@b",
    "x\r\nRCPT TO:<minister.private@external.example>",
    "../../etc",
    "minister%external.example",
    "r\u0435gistry",  # a Cyrillic "е"
    "ｒｅｇｉｓｔｒｙ",
    "a" * 65,
]
MID = "01a230d0-11bd-72b2-b27e-d26f981d5f{:02x}"


@dataclass
class Capture:
    """A local mail server that accepts everything and remembers every command."""

    rcpts: list[str] = field(default_factory=list)
    mails: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    got: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        self.rcpts.append(address)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.mail_from is not None and envelope.original_content is not None
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        self.got.set()
        return "250 2.0.0 Ok"


@pytest.fixture
def capture() -> Iterator[tuple[Capture, int]]:
    handler, port = Capture(), free_port()
    server = Controller(handler, hostname="127.0.0.1", port=port)
    server.start()
    try:
        yield handler, port
    finally:
        server.stop()


@pytest.fixture
async def hq(
    tmp_path: Path, capture: tuple[Capture, int], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SiteContext]:
    monkeypatch.setenv("VALISE_DELIVERY_MODE", "smtp")
    monkeypatch.setenv("VALISE_DELIVERY_MAILBOXES", "clerk=maildir")
    monkeypatch.setenv("VALISE_DELIVERY_SMARTHOST", f"127.0.0.1:{capture[1]}")
    monkeypatch.setenv("VALISE_DELIVERY_SMARTHOST_STARTTLS", "no")
    init_hub(tmp_path / "hq", site="HQ", listen=f"127.0.0.1:{free_port()}")
    ctx = await load_site(tmp_path / "hq")
    try:
        yield ctx
    finally:
        await ctx.store.close()


def _opened(ctx: SiteContext, message_id: str) -> Path:
    folder = ctx.config.directory / "inbox" / message_id
    folder.mkdir(parents=True)
    (folder / "note.txt").write_bytes(b"hello\r\n")
    meta = {"parts": [{"name": "note.txt", "media_type": "text/plain", "size": 7}]}
    (folder / ".valise.json").write_text(json.dumps(meta))
    return folder


def _sealed(mailbox: str | None, originator: str | None = None) -> SealedHeader:
    parts = (PartInfo("note.txt", "text/plain", 7),)
    return SealedHeader(parts=parts, subject="s", originator=originator, mailbox=mailbox)


async def _refusals(ctx: SiteContext) -> dict[str, dict[str, str]]:
    entries = await ctx.store.audit_entries()
    return {
        e.subject: json.loads(e.detail)
        for e in entries
        if e.action == "delivery.mailbox_refused" and e.result == "refused"
    }


async def test_a_hostile_mailbox_never_reaches_rcpt_to(
    hq: SiteContext, capture: tuple[Capture, int]
) -> None:
    server, _ = capture
    ids = [MID.format(i) for i in range(len(HOSTILE))]
    for mid, mailbox in zip(ids, HOSTILE, strict=True):
        await deliver_locally(hq, mid, _sealed(mailbox), _opened(hq, mid))
    assert server.rcpts == ["postmaster@hq.valise.local"] * len(HOSTILE)
    assert [rcpts for _, rcpts, _ in server.mails] == [["postmaster@hq.valise.local"]] * len(
        HOSTILE
    )
    for _, _, data in server.mails:
        assert message_from_bytes(data, policy=default)["To"] == "postmaster@hq.valise.local"
    refused = await _refusals(hq)
    assert set(refused) == set(ids)
    for mid, mailbox in zip(ids, HOSTILE, strict=True):
        assert refused[mid]["given"] == mailbox
        assert refused[mid]["reason"].startswith("mailbox refused: ")


async def test_a_plain_mailbox_is_delivered_and_nothing_is_recorded(
    hq: SiteContext, capture: tuple[Capture, int]
) -> None:
    server, _ = capture
    mid = MID.format(0xA0)
    await deliver_locally(hq, mid, _sealed("Registry"), _opened(hq, mid))
    assert server.rcpts == ["registry@hq.valise.local"]
    assert await _refusals(hq) == {}


async def test_a_hostile_mailbox_goes_to_the_default_maildir(
    hq: SiteContext, capture: tuple[Capture, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VALISE_DELIVERY_MODE", "maildir")
    ctx = await load_site(hq.config.directory)
    try:
        ids = [MID.format(0x40 + i) for i in range(len(HOSTILE))]
        for mid, mailbox in zip(ids, HOSTILE, strict=True):
            await deliver_locally(ctx, mid, _sealed(mailbox), _opened(ctx, mid))
        root = ctx.config.directory / "maildir"
        assert sorted(p.name for p in root.iterdir()) == ["default"]
        assert delivered_keys(root / "default") == sorted(ids)
        assert set(await _refusals(ctx)) == set(ids)
        # A refused mailbox never picks a per-mailbox mode either ("clerk=maildir" is the
        # only override; a look-alike of it is the site's default mode, here maildir).
    finally:
        await ctx.store.close()
    assert capture[0].rcpts == []


@pytest.mark.parametrize(
    "originator",
    [
        "minister.private@external.example",
        "a,b@m-paris.valise.local",
        "Organ <x@m-paris.valise.local>",
        "ambassador@hq.valise.local",
    ],
)
async def test_a_hostile_originator_reaches_neither_mail_from_nor_from(
    hq: SiteContext, capture: tuple[Capture, int], originator: str
) -> None:
    # No stored envelope here, so no known origin: every originator is refused (the
    # network test below has a real origin, whose own addresses are kept).
    server, _ = capture
    mid = MID.format(0xB0)
    await deliver_locally(hq, mid, _sealed("registry", originator), _opened(hq, mid))
    ((got_from, rcpts, data),) = server.mails
    assert (got_from, rcpts) == ("<>", ["registry@hq.valise.local"])
    assert message_from_bytes(data, policy=default)["From"] == "valise@unknown.valise.local"


def test_a_remote_site_cannot_steer_hqs_smarthost(
    tmp_path: Path, capture: tuple[Capture, int]
) -> None:
    server, port = capture
    hq_env = {
        "VALISE_DELIVERY_MODE": "smtp",
        "VALISE_DELIVERY_SMARTHOST": f"127.0.0.1:{port}",
        "VALISE_DELIVERY_SMARTHOST_STARTTLS": "no",
    }
    with Network(tmp_path / "net", env=FAST, site_env={"HQ": hq_env}) as net:
        paris = net.sites["M-PARIS"].directory

        async def attack() -> tuple[str, str]:
            ctx = await load_site(paris)
            try:
                hostile = await send_documents(
                    ctx,
                    ["HQ"],
                    [Document("a.txt", "text/plain", b"for the minister\r\n")],
                    now=datetime.now(UTC),
                    subject="=?utf-8?q?x=0D=0ABcc:_minister.private@external.example?=",
                    originator="ambassador@hq.valise.local",
                    mailbox="minister.private@external.example,",
                )
                plain = await send_documents(
                    ctx,
                    ["HQ"],
                    [Document("b.txt", "text/plain", b"for the registry\r\n")],
                    now=datetime.now(UTC),
                    subject="plain",
                    originator="Alice@M-PARIS.valise.local",
                    mailbox="Registry",
                )
                return hostile, plain
            finally:
                await ctx.store.close()

        message_id, plain_id = asyncio.run(attack())
        wait_for(lambda: len(server.mails) == 2, 60)

        async def refusals() -> dict[str, dict[str, str]]:
            ctx = await load_site(net.sites["HQ"].directory)
            try:
                return await _refusals(ctx)
            finally:
                await ctx.store.close()

        refused = asyncio.run(refusals())
    by_id = {
        message_from_bytes(d, policy=default)["X-Valise-Message-Id"]: (f, r, d)
        for f, r, d in server.mails
    }
    assert sorted(server.rcpts) == ["postmaster@hq.valise.local", "registry@hq.valise.local"]
    mail_from, rcpts, data = by_id[message_id]
    assert (mail_from, rcpts) == ("<>", ["postmaster@hq.valise.local"])
    msg = message_from_bytes(data, policy=default)
    assert "Bcc" not in msg
    assert msg["From"] == "valise@m-paris.valise.local"  # not HQ's ambassador
    assert str(msg["Subject"]) == "=?utf-8?q?x=0D=0ABcc:_minister.private@external.example?="
    assert refused[message_id]["origin"] == "M-PARIS"
    assert refused[message_id]["given"] == "minister.private@external.example,"
    # The origin's own address and a plain mailbox are kept.
    mail_from, rcpts, data = by_id[plain_id]
    assert (mail_from, rcpts) == ("alice@m-paris.valise.local", ["registry@hq.valise.local"])
    assert message_from_bytes(data, policy=default)["From"] == "alice@m-paris.valise.local"
    assert plain_id not in refused


# A mail message a hostile mission seals for HQ (review F1, net1_rfc822.py): handed on
# as it is, every header line of it would be the mission's choice at HQ's smarthost.
FORGED_MAIL = (
    b"From: Minister of Foreign Affairs <minister@hq.valise.local>\r\n"
    b"Sender: minister@hq.valise.local\r\n"
    b"To: registry@hq.valise.local\r\n"
    b"Reply-To: exfil@attacker.example\r\n"
    b"Disposition-Notification-To: exfil@attacker.example\r\n"
    b"X-Valise-Origin: HQ\r\n"
    b"X-Valise-Message-Id: 00000000-0000-7000-8000-000000000000\r\n"
    b"Subject: Instruction: forward all cables to Reply-To\r\n"
    b"\r\nbody\r\n"
)
OWN_MAIL = (
    b"From: Alice <alice@m-paris.valise.local>\r\n"
    b"To: registry@hq.valise.local\r\n"
    b"Subject: a note from Paris\r\n"
    b"\r\nbody\r\n"
)


def test_a_remote_sites_mail_message_cannot_speak_for_hq(
    tmp_path: Path, capture: tuple[Capture, int]
) -> None:
    server, port = capture
    hq_env = {
        "VALISE_DELIVERY_MODE": "smtp",
        "VALISE_DELIVERY_SMARTHOST": f"127.0.0.1:{port}",
        "VALISE_DELIVERY_SMARTHOST_STARTTLS": "no",
    }
    with Network(tmp_path / "net", env=FAST, site_env={"HQ": hq_env}) as net:

        async def send() -> list[str]:
            ctx = await load_site(net.sites["M-PARIS"].directory)
            try:
                return [
                    await send_documents(
                        ctx,
                        ["HQ"],
                        [Document("message.eml", "message/rfc822", mail)],
                        now=datetime.now(UTC),
                        subject="s",
                        originator="alice@m-paris.valise.local",
                        mailbox="registry",
                    )
                    for mail in (FORGED_MAIL, OWN_MAIL, OWN_MAIL + b"x" * 999 + b"\r\n")
                ]
            finally:
                await ctx.store.close()

        forged, own, long_line = asyncio.run(send())
        wait_for(lambda: len(server.mails) == 3, 60)
    by_id: dict[str, Any] = {}
    for _, _, data in server.mails:
        msg = message_from_bytes(data, policy=default)
        assert list(msg.keys())[:2] == ["X-Valise-Origin", "X-Valise-Message-Id"]
        assert msg.get_all("X-Valise-Origin") == ["M-PARIS"]
        by_id[msg["X-Valise-Message-Id"]] = (msg, data)
    assert sorted(by_id) == sorted([forged, own, long_line])
    for wrapped_id, original in ((forged, FORGED_MAIL), (long_line, OWN_MAIL)):
        msg, data = by_id[wrapped_id]
        assert msg["From"] == "alice@m-paris.valise.local"  # the sealed originator
        assert msg.get_all("X-Valise-Message-Id") == [wrapped_id]
        for name in ("Sender", "Reply-To", "Disposition-Notification-To"):
            assert name not in msg
        assert max(len(line) for line in data.split(b"\r\n")) <= 998
        (attachment,) = list(msg.iter_attachments())
        assert attachment.get_payload(decode=True).startswith(original)
    stamp = f"X-Valise-Origin: M-PARIS\r\nX-Valise-Message-Id: {own}\r\n".encode()
    assert by_id[own][1] == stamp + OWN_MAIL  # its own voice passes as it is
