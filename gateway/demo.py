"""``make demo``: three sites exchange sealed envelopes with the offline tool's API.

Creates HQ and two missions in a temporary folder, seals documents HQ -> both
missions, mission -> HQ and mission -> mission, opens each at its destination,
checks what came out against what went in, and prints a table. Exit 0 only when
every envelope opened intact and was refused by a site it was not addressed to.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from envelope.errors import EnvelopeError
from envelope.seal import Recipient, new_routing
from gateway.envelope_io import InputPart, inspect_file, open_to_dir, seal_to_file
from gateway.keystore import SiteKeys, generate_site_keys

SITES = ("HQ", "M-PARIS", "M-HANOI")
DOCUMENTS = [
    ("HQ", ("M-PARIS", "M-HANOI"), "circular-2026-07.txt", b"Circular 7: new consular fees.\n"),
    ("M-PARIS", ("HQ",), "note-verbale-0412.txt", "Note verbale n° 412\n".encode()),
    ("M-HANOI", ("M-PARIS",), "visa-dossier.bin", bytes(range(256)) * 2048),
    ("HQ", ("M-HANOI",), "passport-scan.bin", bytes(i * 7 % 256 for i in range(300_000))),
]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="valise-demo-") as tmp:
        root = Path(tmp)
        keys: dict[str, SiteKeys] = {s: generate_site_keys(s, root / s / "keys") for s in SITES}
        print(f"sites: {', '.join(SITES)} (keys in {root})")
        print(f"{'message id':<38}{'from':<10}{'to':<18}{'bytes':>9}  result")
        sent = opened = refused = attempts = 0
        for n, (origin, destinations, name, body) in enumerate(DOCUMENTS):
            src = root / origin / f"out-{n}" / name
            src.parent.mkdir(parents=True)
            src.write_bytes(body)
            envelope = root / origin / f"{n}.valise"
            routing = new_routing(origin=origin, destinations=destinations, now=datetime.now(UTC))
            seal_to_file(
                envelope,
                routing=routing,
                sender=keys[origin].signing,
                recipients=[Recipient(d, keys[d].decryption.public) for d in destinations],
                inputs=[InputPart(src, name)],
                subject=f"demo document {n + 1}",
            )
            sent += 1
            head = inspect_file(envelope).head
            results = []
            for site in destinations:
                out = open_to_dir(
                    envelope,
                    root / site / f"in-{n}",
                    sender=keys[origin].signing.public,
                    site=site,
                    key=keys[site].decryption,
                )
                intact = (
                    hashlib.sha256(out.files[0].read_bytes()).digest()
                    == hashlib.sha256(body).digest()
                )
                opened += intact
                results.append(f"{site}:{'opened' if intact else 'CORRUPT'}")
            for outsider in (s for s in SITES if s not in destinations and s != origin):
                attempts += 1
                try:
                    open_to_dir(
                        envelope,
                        root / outsider / f"in-{n}",
                        sender=keys[origin].signing.public,
                        site=outsider,
                        key=keys[outsider].decryption,
                    )
                    results.append(f"{outsider}:READ IT")
                except EnvelopeError:
                    refused += 1
                    results.append(f"{outsider}:refused")
            print(
                f"{head.routing.message_id:<38}{origin:<10}{','.join(destinations):<18}"
                f"{len(body):>9}  {' '.join(results)}"
            )
        expected = sum(len(d) for _, d, _, _ in DOCUMENTS)
        ok = opened == expected and refused == attempts
        print(
            f"demo: {sent} sealed, {opened} of {expected} deliveries opened intact, "
            f"{refused} of {attempts} attempts by a non-recipient refused"
        )
        print(
            "note: the network relay (HQ store-and-forward, receipts, bridges) is not built yet;"
            " this demo exercises the envelope layer only."
        )
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
