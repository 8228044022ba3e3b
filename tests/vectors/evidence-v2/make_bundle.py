"""Generate a valise-evidence/2 bundle with the exporter as it was before review 11b's v3:
a circular M-PARIS -> [HQ, M-HANOI], both receipts, the sent and relayed tokens and
each receipt's delivered token."""

import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from crypto.tsa import TimeStampAuthority
from crypto.x509 import SiteCA, issue_tsa_certificate
from envelope.open import parse_framed_head
from gateway.demo.network import Network
from gateway.relay.outbox import Document, send_documents
from gateway.site.context import load_site
from gateway.store.base import TimestampRecord
from tests.system.test_evidence import POLICY, valise
from tests.system.test_relay import FAST


async def send(origin: Path) -> str:
    ctx = await load_site(origin)
    try:
        doc = Document("note.txt", "text/plain", b"Circular v2")
        now = datetime.now(UTC)
        return await send_documents(ctx, ["HQ", "M-HANOI"], [doc], now=now, subject="v2")
    finally:
        await ctx.store.close()


async def receipts(origin: Path, mid: str) -> dict[str, bytes]:
    ctx = await load_site(origin)
    try:
        deadline = time.monotonic() + 60
        while True:
            got = {
                d.site: await ctx.store.destination_receipt(mid, d.site)
                for d in await ctx.store.destinations(mid)
                if d.state == "delivered"
            }
            if len(got) == 2 and all(got.values()):
                return {s: r for s, r in got.items() if r is not None}
            assert time.monotonic() < deadline, f"no receipts for {mid}"
            await asyncio.sleep(0.1)
    finally:
        await ctx.store.close()


async def stamp(hq: Path, origin: Path, mid: str, held: dict[str, bytes]) -> None:
    keys = hq / "keys"
    ca = SiteCA.from_pem((keys / "ca.crt").read_bytes(), (keys / "ca.key").read_bytes())
    now = datetime.now(UTC).replace(microsecond=0)
    cert, key = issue_tsa_certificate(ca, "Valise test TSA", now=now)
    tsa = TimeStampAuthority(cert, key, policy=POLICY)
    ctx = await load_site(origin)
    try:
        record = await ctx.store.get_envelope(mid)
        assert record is not None
        wanted = [("sent", record.digest), ("relayed", record.digest)]
        wanted += [("delivered", parse_framed_head(r)[0].digest) for r in held.values()]
        at = datetime.now(UTC)
        await ctx.store.timestamp_add(
            [
                TimestampRecord(mid, kind, d, tsa.issue(d, serial=7000 + i, now=at), at)
                for i, (kind, d) in enumerate(wanted)
            ]
        )
    finally:
        await ctx.store.close()


root = Path(sys.argv[1])
out = Path(sys.argv[2])
with Network(root / "net", env=FAST) as net:
    paris, hq = net.sites["M-PARIS"].directory, net.sites["HQ"].directory
    mid = asyncio.run(send(paris))
    held = asyncio.run(receipts(paris, mid))
    asyncio.run(stamp(hq, paris, mid, held))
    done = valise("evidence", mid, "--out", out, "--dir", paris)
    print(done.returncode, done.stdout, done.stderr)
