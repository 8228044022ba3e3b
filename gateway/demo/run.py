"""``make demo``: HQ and two missions on loopback exchange documents through both
bridges and the operator CLI, and every delivery is proven by a verified receipt.

Three gateways run as separate processes (SQLite stores, mutual TLS 1.3 on free
127.0.0.1 ports) in a temporary folder: HQ is initialised, the missions enrol
with one-time bundles. Then:

- an integrator at M-PARIS submits over the HTTP API (multipart and raw body),
  to HQ and to M-HANOI (relayed blind through HQ);
- a mail client at M-HANOI sends over the SMTP bridge to M-PARIS and to HQ (STARTTLS,
  then AUTH as integrator ``consul``, which sends as consul@m-hanoi.valise.local);
- an operator at HQ sends with ``valise send`` to both missions.

The demo waits for every signed receipt, checks each document byte for byte in
its destination's inbox, re-verifies each receipt offline, prints a table, and
ends with ``demo: N sent, N delivered, N receipts verified`` (exit 0 only when
all were).
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import aiohttp

from envelope.errors import EnvelopeError
from envelope.open import open_bytes, parse_framed_head
from envelope.receipt import parse_receipt
from gateway.demo.network import Network
from gateway.site.context import SiteContext, load_site

WAIT_S = 90.0
SMTP_DOMAIN = "valise.local"


@dataclass
class Sent:
    via: str
    message_id: str
    origin: str
    destination: str
    name: str
    data: bytes
    at: float
    delivered_after: float | None = None
    intact: bool = False
    receipt_ok: bool = False


def valise(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


async def via_http(net: Network, token: str) -> list[Sent]:
    """An integrator at M-PARIS: one multipart and one raw-body submission."""
    base = f"http://127.0.0.1:{net.sites['M-PARIS'].ports['http']}"
    auth = {"Authorization": f"Bearer {token}"}
    out = []
    note = b"%PDF-1.4\n% Note verbale no. 412 (demo)\n" + bytes(range(256)) * 40
    async with aiohttp.ClientSession() as s:
        form = aiohttp.FormData()
        form.add_field(
            "metadata",
            json.dumps(
                {
                    "to": ["HQ"],
                    "class": "note-verbale",
                    "subject": "Note verbale 412",
                    "priority": "immediate",
                }
            ),
            content_type="application/json",
        )
        form.add_field(
            "file", note, filename="note-verbale-412.pdf", content_type="application/pdf"
        )
        async with s.post(f"{base}/v1/documents", data=form, headers=auth) as r:
            assert r.status == 202, await r.text()
            out.append(
                Sent(
                    "http",
                    (await r.json())["id"],
                    "M-PARIS",
                    "HQ",
                    "note-verbale-412.pdf",
                    note,
                    time.monotonic(),
                )
            )
        dossier = bytes(i * 13 % 256 for i in range(1_000_000))
        async with s.post(
            f"{base}/v1/documents",
            data=dossier,
            headers={
                **auth,
                "Content-Type": "application/octet-stream",
                "Content-Disposition": 'attachment; filename="visa-dossier-0042.bin"',
                "Valise-To": "M-HANOI",
                "Valise-Subject": "Visa dossier 0042",
                "Idempotency-Key": "visa-0042",
            },
        ) as r:
            assert r.status == 202, await r.text()
            out.append(
                Sent(
                    "http",
                    (await r.json())["id"],
                    "M-PARIS",
                    "M-HANOI",
                    "visa-dossier-0042.bin",
                    dossier,
                    time.monotonic(),
                )
            )
    return out


def _bridge_tls(site_dir: Path) -> ssl.SSLContext:
    """What a mail client of the site trusts: the site CA (DIR/keys/ca.crt). Site
    certificates name the site (a URI), not a host, so the host name is not checked
    (as between sites: gateway/site/tls.py)."""
    tls = ssl.create_default_context(cafile=str(site_dir / "keys" / "ca.crt"))
    tls.check_hostname = False
    return tls


def via_smtp(net: Network, login: tuple[str, str]) -> list[Sent]:
    """A mail client at M-HANOI: two messages through the SMTP bridge, logged in as an
    integrator over STARTTLS (the bridge requires AUTH by default)."""
    out = []
    port = net.sites["M-HANOI"].ports["smtp"]
    tls = _bridge_tls(net.sites["M-HANOI"].directory)
    for destination, mailbox, subject in (
        ("M-PARIS", "registry", "Legalisation request 17"),
        ("HQ", "consular", "Monthly consular report"),
    ):
        msg = EmailMessage(policy=SMTP_POLICY)
        msg["From"] = "consul@m-hanoi.valise.local"
        msg["To"] = f"{mailbox}@{destination.lower()}.{SMTP_DOMAIN}"
        msg["Subject"] = subject
        msg.set_content(f"{subject}.\nThree pages attached in the original.\n")
        raw = msg.as_bytes()
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.ehlo("demo-client")
            smtp.starttls(context=tls)
            smtp.ehlo("demo-client")
            smtp.login(*login)
            smtp.mail("consul@m-hanoi.valise.local")
            smtp.rcpt(msg["To"])
            code, reply = smtp.data(raw)
        assert code == 250, reply
        message_id = reply.decode().rsplit(" ", 1)[-1]
        out.append(
            Sent("smtp", message_id, "M-HANOI", destination, "message.eml", raw, time.monotonic())
        )
    return out


def via_cli(net: Network, tmp: Path) -> list[Sent]:
    """An operator at HQ: ``valise send`` to both missions."""
    out = []
    for destination, name, body in (
        ("M-PARIS", "circular-2026-07.txt", "Circulaire n° 7 — nouveaux tarifs\n".encode()),
        ("M-HANOI", "passport-batch.bin", bytes(i * 7 % 256 for i in range(300_000))),
    ):
        path = tmp / name
        path.write_bytes(body)
        mid = valise(
            "send",
            "--dir",
            str(net.sites["HQ"].directory),
            "--to",
            destination,
            "--subject",
            name,
            str(path),
        )
        out.append(Sent("cli", mid, "HQ", destination, name, body, time.monotonic()))
    return out


async def _exchange(net: Network, root: Path) -> int:
    print(
        f"network: {', '.join(net.sites)} on 127.0.0.1 ports "
        f"{', '.join(str(s.port) for s in net.sites.values())} (folder {root})"
    )
    token = valise(
        "integrator", "add", "demo-dms", "--dir", str(net.sites["M-PARIS"].directory)
    ).splitlines()[0]
    mail_token = valise(
        "integrator", "add", "consul", "--dir", str(net.sites["M-HANOI"].directory)
    ).splitlines()[0]
    sent = await via_http(net, token) + via_smtp(net, ("consul", mail_token)) + via_cli(net, root)
    contexts: dict[str, SiteContext] = {
        s: await load_site(net.sites[s].directory) for s in net.sites
    }
    try:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and any(s.delivered_after is None for s in sent):
            for s in sent:
                if s.delivered_after is None and await contexts[s.origin].store.receipt(
                    s.message_id
                ):
                    s.delivered_after = time.monotonic() - s.at
            await asyncio.sleep(0.05)
        for s in sent:
            inbox_file = root / s.destination / "inbox" / s.message_id / s.name
            s.intact = inbox_file.exists() and inbox_file.read_bytes() == s.data
            s.receipt_ok = await _verify_receipt(contexts, s)
    finally:
        for ctx in contexts.values():
            await ctx.store.close()
    print(
        f"\n{'via':<6}{'message id':<38}{'from':<9}{'to':<9}{'route':<16}{'bytes':>9}  "
        f"{'delivered':<10}{'receipt':<9}{'seconds':>7}"
    )
    for s in sent:
        route = "direct" if "HQ" in (s.origin, s.destination) else "relayed via HQ"
        secs = f"{s.delivered_after:.2f}" if s.delivered_after is not None else "-"
        print(
            f"{s.via:<6}{s.message_id:<38}{s.origin:<9}{s.destination:<9}{route:<16}"
            f"{len(s.data):>9}  {'intact' if s.intact else 'NO':<10}"
            f"{'verified' if s.receipt_ok else 'NO':<9}{secs:>7}"
        )
    n, delivered, verified = len(sent), sum(s.intact for s in sent), sum(s.receipt_ok for s in sent)
    print(f"\ndemo: {n} sent, {delivered} delivered, {verified} receipts verified")
    return 0 if delivered == verified == n else 1


async def _verify_receipt(contexts: dict[str, SiteContext], s: Sent) -> bool:
    """Check the receipt offline: signed by the destination, over our envelope's digest."""
    origin = contexts[s.origin]
    receipt_envelope = await origin.store.receipt(s.message_id)
    original = await origin.store.get_envelope(s.message_id)
    if receipt_envelope is None or original is None:
        return False
    destination = contexts[s.destination]
    try:
        parsed, _ = parse_framed_head(receipt_envelope)
        _, _, parts = open_bytes(
            receipt_envelope,
            sender=destination.keys.signing.public,
            site=s.origin,
            key=origin.keys.decryption,
        )
        receipt = parse_receipt(parts[0])
    except EnvelopeError:
        return False
    return (
        parsed.head.routing.origin == s.destination
        and receipt.message_id == s.message_id
        and receipt.envelope_digest == original.digest
        and receipt.site == s.destination
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="valise-demo-") as tmp, Network(Path(tmp)) as net:
        return asyncio.run(_exchange(net, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
