"""The SMTP bridge against a real network on loopback, with real clients.

M-PARIS and M-HANOI deliver to Maildirs (``[delivery] mode = maildir``), HQ keeps
documents in its HTTP inbox; M-HANOI's mailbox ``clerk`` goes to a smarthost (a
tiny aiosmtpd server started by the test, with STARTTLS). The submission limit is
small (MAX_BYTES) so that the size checks are cheap. The bridge requires AUTH by
default: clients log in as the integrator CLIENT over STARTTLS.
"""

from __future__ import annotations

import base64
import json
import smtplib
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.demo.network import Network, free_port
from tests.conftest import require_tool
from tests.support.smtp import (
    ENHANCED,
    RawSmtp,
    add_integrator,
    close_all,
    no_verify,
    queued_ids,
    revoke_integrator,
    self_signed,
    wait_file,
    wait_for,
)
from tests.system.test_relay import FAST

MAX_BYTES = 4096
MAX_RECIPIENTS = 3
IDLE_SECONDS = 4
SENDER = "alice@m-paris.valise.local"
CLIENT = "alice"  # the integrator the tests' mail clients log in as: it sends as SENDER
HANOI = "registry@m-hanoi.valise.local"
ARCHIVE = "archive@hq.valise.local"
BRIDGE_ENV = FAST

MESSAGE = (
    b"From: Alice <alice@m-paris.valise.local>\r\n"
    b"To: registry@m-hanoi.valise.local, archive@hq.valise.local\r\n"
    b"Subject: =?utf-8?q?Note_verbale_n=C2=B0_12?=\r\n"
    b"Message-ID: <nv12@m-paris.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"L'Ambassade pr\xc3\xa9sente ses compliments.\r\n"
    b".a line that starts with a dot\r\n"
    b"..and one with two\r\n"
    b"   trailing spaces   \r\n"
    b"\r\n"
)


@dataclass
class Smarthost:
    """The test's local mail server: what it received, with STARTTLS required."""

    port: int
    cert: Path
    key: Path
    received: list[tuple[str, list[str], bytes, bool]] = field(default_factory=list)
    got: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.mail_from is not None and envelope.original_content is not None
        self.received.append(
            (
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content,
                session.ssl is not None,
            )
        )
        self.got.set()
        return "250 2.0.0 Ok"


@dataclass
class Bridged:
    net: Network
    smarthost: Smarthost
    login: tuple[str, str]  # (integrator, token) at M-PARIS

    def port(self, site: str = "M-PARIS") -> int:
        return self.net.sites[site].ports["smtp"]

    def dir(self, site: str) -> Path:
        return self.net.sites[site].directory


@pytest.fixture(scope="module")
def bridged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridged]:
    root = tmp_path_factory.mktemp("smtp")
    cert, key = self_signed(root)
    smarthost = Smarthost(free_port(), cert, key)
    site_env = {
        "M-PARIS": {"VALISE_DELIVERY_MODE": "maildir"},
        "M-HANOI": {
            "VALISE_DELIVERY_MODE": "maildir",
            "VALISE_DELIVERY_MAILBOXES": "clerk=smtp",
            "VALISE_DELIVERY_SMARTHOST": f"127.0.0.1:{smarthost.port}",
            "SSL_CERT_FILE": str(cert),  # so that the smarthost's certificate verifies
        },
    }
    env = {
        **BRIDGE_ENV,
        "VALISE_SMTP_MAX_MESSAGE_BYTES": str(MAX_BYTES),
        "VALISE_SMTP_MAX_RECIPIENTS": str(MAX_RECIPIENTS),
        "VALISE_SMTP_TIMEOUT_SECONDS": str(IDLE_SECONDS),
    }
    with Network(root / "net", env=env, site_env=site_env) as net:
        token = add_integrator(net.sites["M-PARIS"].directory, CLIENT)
        yield Bridged(net, smarthost, (CLIENT, token))


@pytest.fixture(autouse=True)
def _close_raw_clients() -> Iterator[None]:
    yield
    close_all()


def maildir_file(site_dir: Path, mailbox: str, message_id: str) -> Path:
    return site_dir / "maildir" / mailbox / "new" / f"{message_id}.valise"


def submit(
    port: int,
    sender: str,
    rcpts: list[str],
    message: bytes,
    login: tuple[str, str] | None,
) -> list[str]:
    """Send one message with smtplib (logged in over STARTTLS unless ``login`` is
    None); the message ids of the 250 reply."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo()
        if login is not None:
            client.starttls(context=no_verify())
            client.login(*login)
        assert client.mail(sender)[0] == 250
        for rcpt in rcpts:
            assert client.rcpt(rcpt)[0] == 250
        code, text = client.data(message)
    assert code == 250, text
    return queued_ids(text.decode())


def _stamped(message: bytes, origin: str, message_id: str) -> bytes:
    """A received mail message as delivered: the destination's X-Valise fields on top."""
    return f"X-Valise-Origin: {origin}\r\nX-Valise-Message-Id: {message_id}\r\n".encode() + message


def plain_session(port: int) -> RawSmtp:
    """A raw session after EHLO: no TLS, no AUTH."""
    raw = RawSmtp(port)
    assert raw.cmd("EHLO client.test")[0] == 250
    return raw


def session(port: int, login: tuple[str, str]) -> RawSmtp:
    """A raw session after EHLO, STARTTLS, EHLO and AUTH PLAIN."""
    raw = plain_session(port)
    raw.starttls()
    assert raw.cmd("EHLO client.test")[0] == 250
    code, lines = raw.cmd("AUTH PLAIN " + _plain(*login))
    assert code == 235, lines
    return raw


# -- delivery ------------------------------------------------------------------------


def test_a_message_arrives_byte_identical_in_a_maildir_and_the_http_inbox(
    bridged: Bridged,
) -> None:
    with smtplib.SMTP("127.0.0.1", bridged.port(), timeout=10) as client:
        client.starttls(context=no_verify())
        client.login(*bridged.login)
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(HANOI)[0] == 250
        assert client.rcpt(ARCHIVE)[0] == 250
        code, text = client.data(MESSAGE)
    assert code == 250 and text.startswith(b"2.0.0 Ok: queued as ")
    to_hanoi, to_hq = queued_ids(text.decode())  # one envelope per site, in RCPT order
    got = wait_file(maildir_file(bridged.dir("M-HANOI"), "registry", to_hanoi))
    assert got == _stamped(MESSAGE, "M-PARIS", to_hanoi)  # it speaks for M-PARIS alone
    inbox = bridged.dir("HQ") / "inbox" / to_hq
    assert wait_file(inbox / "message.eml") == MESSAGE
    meta = json.loads((inbox / ".valise.json").read_text())
    assert meta["subject"] == "Note verbale n° 12"
    assert meta["parts"] == [
        {"name": "message.eml", "media_type": "message/rfc822", "size": len(MESSAGE)}
    ]
    # Once both receipts are back, the origin forgets the senders it kept for DSNs.
    sent = bridged.dir("M-PARIS") / "smtp-sent"
    wait_for(lambda: not (sent / f"{to_hanoi}.json").exists(), 30)
    wait_for(lambda: not (sent / f"{to_hq}.json").exists(), 30)


def test_recipients_are_grouped_by_site_and_mailbox(bridged: Bridged) -> None:
    message = f"From: {SENDER}\r\nSubject: grouped\r\n\r\nhello\r\n".encode()
    rcpts = [HANOI, "Registry@M-HANOI.valise.local", "desk@m-hanoi.valise.local"]
    registry, desk = submit(bridged.port(), SENDER, rcpts, message, bridged.login)
    got = wait_file(maildir_file(bridged.dir("M-HANOI"), "registry", registry))
    assert got == _stamped(message, "M-PARIS", registry)
    got = wait_file(maildir_file(bridged.dir("M-HANOI"), "desk", desk))
    assert got == _stamped(message, "M-PARIS", desk)


def test_swaks_submits_over_starttls_with_auth(bridged: Bridged, tmp_path: Path) -> None:
    require_tool("swaks")
    token = add_integrator(bridged.dir("M-PARIS"), "swaks-client")
    body = (
        b"From: alice@m-paris.valise.local\n"
        b"To: registry@m-hanoi.valise.local\n"
        b"Subject: sent by swaks\n"
        b"\n"
        b"Hello from swaks.\n"
        b".dotted line"
    )
    data = tmp_path / "message.txt"
    data.write_bytes(body)
    run = subprocess.run(
        [
            "swaks",
            "--server",
            f"127.0.0.1:{bridged.port()}",
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "swaks-client",
            "--auth-password",
            token,
            "--from",
            "swaks-client@m-paris.valise.local",
            "--to",
            HANOI,
            "--data",
            f"@{data}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "235 2.7.0 Authentication successful" in run.stdout
    line = next(x for x in run.stdout.splitlines() if "queued as" in x)
    (message_id,) = queued_ids(line.removeprefix("<-  ").removeprefix("<~  "))
    # swaks sends the file with CRLF line endings, then CRLF.CRLF.
    expected = body.replace(b"\n", b"\r\n") + b"\r\n"
    got = wait_file(maildir_file(bridged.dir("M-HANOI"), "registry", message_id))
    assert got == _stamped(expected, "M-PARIS", message_id)


def test_smtplib_auth_plain_and_login_with_integrator_tokens(bridged: Bridged) -> None:
    paris = bridged.dir("M-PARIS")
    token = add_integrator(paris, "dms-plain")
    with smtplib.SMTP("127.0.0.1", bridged.port(), timeout=10) as client:
        client.starttls(context=no_verify())
        assert client.login("dms-plain", token)[0] == 235  # PLAIN (smtplib's preference)
    with smtplib.SMTP("127.0.0.1", bridged.port(), timeout=10) as client:
        client.starttls(context=no_verify())
        client.ehlo()
        client.user, client.password = "dms-plain", token
        code, _ = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
        assert code == 235
    # A different first character (the last one carries only 2 bits: it may already be "A").
    wrong = ("B" if token[0] == "A" else "A") + token[1:]
    for user, password in (("dms-plain", wrong), ("other-name", token), ("x", "y")):
        with smtplib.SMTP("127.0.0.1", bridged.port(), timeout=10) as client:
            client.starttls(context=no_verify())
            with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
                client.login(user, password)
            assert refused.value.smtp_code == 535
            error = refused.value.smtp_error
            assert (error if isinstance(error, bytes) else error.encode()).startswith(b"5.7.8")
    revoke_integrator(paris, "dms-plain")
    with smtplib.SMTP("127.0.0.1", bridged.port(), timeout=10) as client:
        client.starttls(context=no_verify())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("dms-plain", token)


def test_smarthost_delivery_over_starttls_carries_the_message_unchanged(
    bridged: Bridged,
) -> None:
    smarthost = bridged.smarthost
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(smarthost.cert, smarthost.key)
    server = Controller(
        smarthost,
        hostname="127.0.0.1",
        port=smarthost.port,
        tls_context=tls,
        require_starttls=True,
    )
    server.start()
    try:
        (message_id,) = submit(
            bridged.port(), SENDER, ["clerk@m-hanoi.valise.local"], MESSAGE, bridged.login
        )
        assert smarthost.got.wait(30), "the smarthost received nothing"
        # Written once M-HANOI's client has had the 250 and said QUIT.
        wait_file(bridged.dir("M-HANOI") / "mail-delivered" / message_id)
    finally:
        server.stop()
    mail_from, rcpts, content, over_tls = smarthost.received[0]
    assert (mail_from, rcpts) == (SENDER, ["clerk@m-hanoi.valise.local"])
    assert content == _stamped(MESSAGE, "M-PARIS", message_id)
    assert over_tls


# -- refusals ------------------------------------------------------------------------


def test_every_reply_has_an_enhanced_status_code(bridged: Bridged) -> None:
    raw = RawSmtp(bridged.port())
    assert raw.greeting[0] == 220 and not ENHANCED.match(raw.greeting[1][0])
    code, ehlo = raw.cmd("EHLO client.test")
    assert code == 250
    assert {"250-ENHANCEDSTATUSCODES", f"250-SIZE {MAX_BYTES}", "250-STARTTLS"} <= set(ehlo)
    assert not any(line.startswith("250-AUTH") for line in ehlo)  # not before STARTTLS
    code, lines = raw.cmd(f"MAIL FROM:<{SENDER}>")
    assert code == 530 and lines[0].startswith("530 5.7.0"), lines  # AUTH first
    raw.starttls()
    assert raw.cmd("EHLO client.test")[0] == 250
    assert raw.cmd("AUTH PLAIN " + _plain(*bridged.login))[0] == 235
    replies = [
        raw.cmd("NOOP"),
        raw.cmd("RCPT TO:<registry@m-hanoi.valise.local>"),  # before MAIL
        raw.cmd("FROB"),
        raw.cmd("MAIL FROM:<not-an-address>"),
        raw.cmd("MAIL FROM:<alice@m-paris.valise.local> BODY=9BIT"),
        raw.cmd(f"MAIL FROM:<{SENDER}>"),
        raw.cmd(f"MAIL FROM:<{SENDER}>"),  # nested
        raw.cmd("DATA"),  # no recipients yet
        raw.cmd("RSET"),
        raw.cmd("VRFY registry"),
    ]
    for _, lines in replies:
        assert all(ENHANCED.match(line) for line in lines), lines
    assert [c for c, _ in replies][:3] == [250, 503, 500]
    code, lines = raw.cmd("QUIT")
    assert code == 221 and lines[0].startswith("221 2.0.0")


def test_rcpt_refusals(bridged: Bridged) -> None:
    raw = session(bridged.port(), bridged.login)
    assert raw.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
    code, lines = raw.cmd("RCPT TO:<registry@m-nowhere.valise.local>")
    assert code == 550 and lines[0].startswith("550 5.1.1"), lines
    code, lines = raw.cmd("RCPT TO:<registry@example.org>")
    assert code == 550 and lines[0].startswith("550 5.7.1"), lines
    code, lines = raw.cmd('RCPT TO:<"two words"@m-hanoi.valise.local>')
    assert code == 553 and lines[0].startswith("553 5.1.3"), lines
    code, lines = raw.cmd("DATA")
    assert code == 503  # no valid recipient
    raw.close()


def test_too_many_recipients(bridged: Bridged) -> None:
    raw = session(bridged.port(), bridged.login)
    raw.cmd(f"MAIL FROM:<{SENDER}>")
    for i in range(MAX_RECIPIENTS):
        assert raw.cmd(f"RCPT TO:<r{i}@m-hanoi.valise.local>")[0] == 250
    code, lines = raw.cmd("RCPT TO:<one-too-many@m-hanoi.valise.local>")
    assert code == 452 and lines[0].startswith("452 4.5.3"), lines
    assert raw.cmd("DATA")[0] == 354
    code, lines = raw.cmd(b"Subject: three\r\n\r\nx\r\n.\r\n")
    assert code == 250 and len(queued_ids(lines[0])) == MAX_RECIPIENTS
    raw.close()


def _sized(n: int) -> bytes:
    """A message of exactly ``n`` bytes, in lines of at most 900 (RFC 5321 4.5.3.1.6)."""
    head = b"Subject: size\r\n\r\n"
    left, lines = n - len(head), []
    while left > 0:
        take = min(900, left)
        if left - take == 1:
            take -= 1  # leave the last line room for its CRLF
        lines.append(b"x" * (take - 2) + b"\r\n")
        left -= take
    message = head + b"".join(lines)
    assert len(message) == n
    return message


@pytest.mark.parametrize(
    ("size", "accepted"), [(MAX_BYTES - 1, True), (MAX_BYTES, True), (MAX_BYTES + 1, False)]
)
def test_the_size_limit_in_data(bridged: Bridged, size: int, accepted: bool) -> None:
    raw = session(bridged.port(), bridged.login)
    raw.cmd(f"MAIL FROM:<{SENDER}>")
    raw.cmd(f"RCPT TO:<{HANOI}>")
    assert raw.cmd("DATA")[0] == 354
    code, lines_ = raw.cmd(_sized(size) + b".\r\n")
    if accepted:
        assert code == 250, lines_
    else:
        assert code == 552 and lines_[0].startswith("552 5.3.4"), lines_
        assert raw.cmd("NOOP")[0] == 250  # the session goes on
    raw.close()


@pytest.mark.parametrize(
    ("size", "code"), [(MAX_BYTES - 1, 250), (MAX_BYTES, 250), (MAX_BYTES + 1, 552)]
)
def test_the_size_limit_in_mail_from(bridged: Bridged, size: int, code: int) -> None:
    raw = session(bridged.port(), bridged.login)
    got, lines = raw.cmd(f"MAIL FROM:<{SENDER}> SIZE={size}")
    assert got == code, lines
    if code == 552:
        assert lines[0].startswith("552 5.3.4")
    raw.close()


SMUGGLING = {
    "LF.CRLF": b"\n.\r\n",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.CR": b"\r\n.\r",
    "bare LF": b"\n",
    "bare CR": b"\r",
}


@pytest.mark.parametrize("sequence", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_smuggling_sequences_in_data_are_refused(bridged: Bridged, sequence: bytes) -> None:
    raw = session(bridged.port(), bridged.login)
    raw.cmd(f"MAIL FROM:<{SENDER}>")
    raw.cmd(f"RCPT TO:<{HANOI}>")
    assert raw.cmd("DATA")[0] == 354
    smuggled = (
        b"Subject: innocent\r\n\r\nbefore"
        + sequence
        + b"MAIL FROM:<evil@m-paris.valise.local>\r\n"
        + b"RCPT TO:<registry@m-hanoi.valise.local>\r\n"
        + b"DATA\r\n"
        + b"Subject: smuggled\r\n\r\nsmuggled\r\n"
    )
    code, lines = raw.cmd(smuggled + b"\r\n.\r\n")
    assert code == 550 and lines[0].startswith("550 5.6.0"), lines
    # One reply for the whole DATA: nothing inside it was taken for a command.
    assert raw.cmd("NOOP")[0] == 250 and raw.buffer == b""
    raw.close()


@pytest.mark.parametrize(
    "line",
    [
        b"NOOP\nNOOP\r\n",  # and what was pipelined after it never runs
        b"EHLO a\rNOOP\r\n",
        b"MAIL FROM:<alice@m-paris.valise.local>\n",
        b"NOOP " + b"x" * 1500 + b"\nRSET\r\n",
    ],
    ids=["bare LF", "bare CR", "bare LF in MAIL", "bare LF after an overlong line"],
)
def test_bare_line_endings_in_commands_close_the_session(bridged: Bridged, line: bytes) -> None:
    raw = session(bridged.port(), bridged.login)
    code, lines = raw.cmd(line)
    assert code == 500 and lines[0].startswith("500 5.5.2"), lines
    assert raw.closed()


def test_command_line_limits(bridged: Bridged) -> None:
    raw = session(bridged.port(), bridged.login)
    code, lines = raw.cmd("NOOP " + "x" * 600)  # over 512 octets (RFC 5321 4.5.3.1.4)
    assert code == 500 and lines[0].startswith("500 5.5.2"), lines
    code, lines = raw.cmd("NOOP " + "x" * 5000)  # over the line buffer
    assert code == 500 and lines[0].startswith("500 5.5.2"), lines
    assert raw.cmd("NOOP")[0] == 250


def test_an_idle_connection_is_closed_with_421(bridged: Bridged) -> None:
    raw = session(bridged.port(), bridged.login)
    started = time.monotonic()
    raw.sock.settimeout(IDLE_SECONDS + 5)
    code, lines = raw.reply()
    assert code == 421 and lines[0].startswith("421 4.4.2"), lines
    assert time.monotonic() - started >= IDLE_SECONDS - 1
    assert raw.closed()


def test_auth_before_starttls_is_refused(bridged: Bridged) -> None:
    token = add_integrator(bridged.dir("M-PARIS"), "too-early")
    raw = plain_session(bridged.port())
    code, lines = raw.cmd("AUTH PLAIN " + _plain("too-early", token))
    assert code == 538 and lines[0].startswith("538 5.7.11"), lines
    raw.close()


def _plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def test_require_tls_and_auth(bridged: Bridged) -> None:
    paris = bridged.net.sites["M-PARIS"]
    token = add_integrator(paris.directory, "strict-client")
    saved = dict(paris.env)
    paris.stop()
    paris.env.update({"VALISE_SMTP_REQUIRE_TLS": "yes", "VALISE_SMTP_REQUIRE_AUTH": "yes"})
    paris.start()
    try:
        raw = plain_session(bridged.port())
        strict = "strict-client@m-paris.valise.local"
        code, lines = raw.cmd(f"MAIL FROM:<{strict}>")
        assert code == 530 and lines[0].startswith("530 5.7.0"), lines
        raw.starttls()
        code, ehlo = raw.cmd("EHLO client.test")
        assert "250-AUTH LOGIN PLAIN" in ehlo
        code, lines = raw.cmd(f"MAIL FROM:<{strict}>")
        assert code == 530 and lines[0].startswith("530 5.7.0 Authentication required")
        assert raw.cmd("AUTH PLAIN " + _plain("strict-client", token))[0] == 235
        assert raw.cmd(f"MAIL FROM:<{strict}>")[0] == 250
        assert raw.cmd(f"RCPT TO:<{HANOI}>")[0] == 250
        assert raw.cmd("DATA")[0] == 354
        code, lines = raw.cmd(b"Subject: strict\r\n\r\nok\r\n.\r\n")
        assert code == 250, lines
        raw.close()
    finally:
        paris.stop()
        paris.env.clear()
        paris.env.update(saved)
        paris.start()


# -- DSN -------------------------------------------------------------------------------


def test_unauthenticated_mail_is_refused_by_default(bridged: Bridged) -> None:
    raw = plain_session(bridged.port())
    for command in (f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{HANOI}>", "DATA"):
        code, lines = raw.cmd(command)
        assert code == 530 and lines[0].startswith("530 5.7.0 Authentication required"), lines
    raw.starttls()
    assert raw.cmd("EHLO client.test")[0] == 250
    code, lines = raw.cmd(f"MAIL FROM:<{SENDER}>")  # TLS alone is not enough
    assert code == 530 and lines[0].startswith("530 5.7.0"), lines
    assert raw.cmd("AUTH PLAIN " + _plain(*bridged.login))[0] == 235
    assert raw.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
    raw.close()


SHORT_LIVED = (
    b"From: alice@m-paris.valise.local\r\n"
    b"To: archive@hq.valise.local\r\n"
    b"Subject: short-lived\r\n"
    b"X-Valise-Expires: 2\r\n"
    b"\r\n"
    b"This will not arrive.\r\n"
)
OUTSIDER = "victim@external.example"


def test_a_message_that_expires_bounces_only_to_a_local_mailbox(tmp_path: Path) -> None:
    """Two messages expire: from integrator ``alice`` (the DSN goes to its mailbox; an
    integrator sends only as itself) and from an outside address submitted without
    AUTH (allowed here by ``require_auth = no``: no DSN at all, and the log says why)."""
    site_env = {"M-PARIS": {"VALISE_DELIVERY_MODE": "maildir", "VALISE_SMTP_REQUIRE_AUTH": "no"}}
    with Network(tmp_path, missions=("M-PARIS",), env=BRIDGE_ENV, site_env=site_env) as net:
        net.sites["HQ"].stop()  # M-PARIS's only next hop: the messages wait, then expire
        paris = net.sites["M-PARIS"].directory
        login = ("alice", add_integrator(paris, "alice"))
        port = net.sites["M-PARIS"].ports["smtp"]
        (local,) = submit(port, SENDER, [ARCHIVE], SHORT_LIVED, login)
        (anonymous,) = submit(port, OUTSIDER, [ARCHIVE], SHORT_LIVED, None)
        dsn = wait_file(maildir_file(paris, "alice", f"dsn-{local}"), timeout=30)
        log = net.sites["M-PARIS"].log
        wait_for(lambda: f'"id": "{anonymous}"' in _dsn_events(log, "dsn_not_deliverable"), 30)
        # The sender record goes right after the DSN is written (not in the same step).
        records = [paris / "smtp-sent" / f"{m}.json" for m in (local, anonymous)]
        wait_for(lambda: not any(r.exists() for r in records), 30)
        folders = sorted(p.name for p in (paris / "maildir").iterdir())
    assert folders == ["alice"]  # nothing for the outsider's mailbox
    assert dsn.startswith(b"Return-Path: <>\r\n")  # the null sender
    report = message_from_bytes(dsn, policy=default)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert report["X-Valise-Message-Id"] == local
    assert report["To"] == SENDER
    parts: list[Any] = list(report.iter_parts())
    status = parts[1].as_string()
    assert f"Final-Recipient: rfc822; {ARCHIVE}" in status
    assert "Action: failed" in status and "Status: 5.4.7" in status
    assert b"Subject: short-lived" in parts[2].get_payload(decode=True)
    assert "not authenticated" in _dsn_events(log, "dsn_not_deliverable")


def _dsn_events(log: Path, event: str) -> str:
    return "\n".join(line for line in log.read_text().splitlines() if f'"{event}"' in line)


# -- the sender is the integrator that logged in (review F2) ---------------------------


@pytest.mark.parametrize(
    "sender",
    [
        "bob@m-paris.valise.local",  # another integrator of this site
        "alice@m-hanoi.valise.local",  # its name at another site
        "alice@external.example",
        "alice.x@m-paris.valise.local",
        "",  # the null sender: an integrator that wants no bounce is odd
    ],
)
def test_an_authenticated_client_sends_only_as_itself(bridged: Bridged, sender: str) -> None:
    raw = session(bridged.port(), bridged.login)
    code, lines = raw.cmd(f"MAIL FROM:<{sender}>")
    assert code == 553 and lines[0].startswith("553 5.7.1"), lines
    assert raw.cmd(f"RCPT TO:<{HANOI}>")[0] == 503  # no transaction was begun
    assert raw.cmd(f"MAIL FROM:<{SENDER.upper()}>")[0] == 250  # itself, in any case
    raw.close()


def test_auth_plain_cannot_act_for_another_identity(bridged: Bridged) -> None:
    user, token = bridged.login
    raw = plain_session(bridged.port())
    raw.starttls()
    assert raw.cmd("EHLO client.test")[0] == 250
    as_bob = base64.b64encode(f"bob\0{user}\0{token}".encode()).decode()
    code, lines = raw.cmd("AUTH PLAIN " + as_bob)
    assert code == 535 and lines[0].startswith("535 5.7.8"), lines
    assert raw.cmd(f"MAIL FROM:<{SENDER}>")[0] == 530  # not authenticated
    as_itself = base64.b64encode(f"{user}\0{user}\0{token}".encode()).decode()
    assert raw.cmd("AUTH PLAIN " + as_itself)[0] == 235
    assert raw.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
    raw.close()
