"""``make demo``: HQ and two missions on loopback exchange documents with receipts.

Starts three gateways (separate processes, SQLite stores, mutual TLS on free
127.0.0.1 ports) in a temporary folder: HQ is initialised, the missions are
enrolled with one-time bundles and join. Documents go mission -> HQ, HQ ->
mission and mission -> mission (relayed blind through HQ). The demo waits for
every signed receipt, checks each delivered document byte for byte at its
destination, re-verifies each receipt offline, prints a table, and ends with
``demo: N sent, N delivered, N receipts verified`` (exit 0 only when all were).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from envelope.errors import EnvelopeError
from envelope.open import open_bytes, parse_framed_head
from envelope.receipt import parse_receipt
from gateway.outbox import Document, send_documents
from gateway.site import SiteContext, load_site
from gateway.testnet import Network

WAIT_S = 60.0
PLAN = [
    ("M-PARIS", "HQ", "note-verbale-412.txt", b"Note verbale no. 412: the Embassy presents...\n"),
    ("HQ", "M-PARIS", "circular-2026-07.txt", "Circulaire n° 7 — nouveaux tarifs\n".encode()),
    ("HQ", "M-HANOI", "passport-batch.bin", bytes(i * 7 % 256 for i in range(300_000))),
    ("M-PARIS", "M-HANOI", "visa-dossier-0042.bin", bytes(range(256)) * 4096),
    ("M-HANOI", "M-PARIS", "legalisation-17.txt", b"Legalisation request 17, 3 pages.\n"),
    ("M-HANOI", "HQ", "consular-report.txt", b"Monthly consular report, November.\n"),
]


@dataclass
class Sent:
    message_id: str
    origin: str
    destination: str
    name: str
    data: bytes
    at: float
    delivered_after: float | None = None
    intact: bool = False
    receipt_ok: bool = False


async def _exchange(net: Network, root: Path) -> int:
    contexts: dict[str, SiteContext] = {}
    print(
        f"network: {', '.join(net.sites)} on 127.0.0.1 ports "
        f"{', '.join(str(s.port) for s in net.sites.values())} (folder {root})"
    )
    for site in net.sites:
        contexts[site] = await load_site(net.sites[site].directory)
    sent: list[Sent] = []
    for origin, destination, name, data in PLAN:
        mid = await send_documents(
            contexts[origin],
            [destination],
            [Document(name, "application/octet-stream", data)],
            now=datetime.now(UTC),
            subject=f"demo: {name}",
        )
        sent.append(Sent(mid, origin, destination, name, data, time.monotonic()))
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and any(s.delivered_after is None for s in sent):
        for s in sent:
            if s.delivered_after is None and await contexts[s.origin].store.receipt(s.message_id):
                s.delivered_after = time.monotonic() - s.at
        await asyncio.sleep(0.05)
    for s in sent:
        inbox_file = root / s.destination / "inbox" / s.message_id / s.name
        s.intact = inbox_file.exists() and inbox_file.read_bytes() == s.data
        s.receipt_ok = await _verify_receipt(contexts, s)
    for ctx in contexts.values():
        await ctx.store.close()
    print(
        f"\n{'message id':<38}{'from':<9}{'to':<9}{'route':<20}{'bytes':>8}  "
        f"{'delivered':<10}{'receipt':<9}{'seconds':>7}"
    )
    for s in sent:
        route = "direct" if "HQ" in (s.origin, s.destination) else "relayed via HQ"
        secs = f"{s.delivered_after:.2f}" if s.delivered_after is not None else "-"
        print(
            f"{s.message_id:<38}{s.origin:<9}{s.destination:<9}{route:<20}{len(s.data):>8}  "
            f"{'intact' if s.intact else 'NO':<10}{'verified' if s.receipt_ok else 'NO':<9}"
            f"{secs:>7}"
        )
    n = len(sent)
    delivered = sum(s.intact for s in sent)
    verified = sum(s.receipt_ok for s in sent)
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
