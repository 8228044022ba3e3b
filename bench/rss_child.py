"""Child process of :mod:`bench.rss`: seal or open one file, then report its own peak RSS.

    python -m bench.rss_child idle
    python -m bench.rss_child seal INPUT ENVELOPE
    python -m bench.rss_child open ENVELOPE OUT_DIR

Prints one JSON object: ``{"maxrss_kib": ..., "vmhwm_kib": ..., "seconds": ...}``. The keys
are derived from fixed labels, so the seal and the open children agree without passing
secrets.
"""

from __future__ import annotations

import hashlib
import json
import re
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from crypto.keys import DecryptionKey, SigningKey
from envelope.seal import Recipient, new_routing
from gateway.relay.envelope_io import InputPart, open_to_dir, seal_to_file

ORIGIN = "HQ-BENCH"
SITE = "M-001"
SENDER = SigningKey.from_seed(hashlib.sha256(b"valise-bench/rss/sender").digest())
KEY = DecryptionKey.from_seed(hashlib.shake_256(b"valise-bench/rss/key").digest(96))


def main(argv: list[str]) -> None:
    mode, *paths = argv
    start = time.perf_counter()
    if mode == "seal":
        source, envelope = map(Path, paths)
        seal_to_file(
            envelope,
            routing=new_routing(origin=ORIGIN, destinations=[SITE], now=datetime.now(UTC)),
            sender=SENDER,
            recipients=[Recipient(SITE, KEY.public)],
            inputs=[InputPart(source, "big.bin")],
            durable=False,
        )
    elif mode == "open":
        envelope, out_dir = map(Path, paths)
        open_to_dir(envelope, out_dir, sender=SENDER.public, site=SITE, key=KEY)
    elif mode != "idle":
        raise SystemExit(f"unknown mode {mode!r}")
    seconds = time.perf_counter() - start
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"maxrss_kib": maxrss, "vmhwm_kib": _vmhwm_kib(), "seconds": seconds}))


def _vmhwm_kib() -> int:
    """The peak RSS of this address space alone (Linux), to cross-check ``ru_maxrss``."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return -1
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else -1


if __name__ == "__main__":
    main(sys.argv[1:])
