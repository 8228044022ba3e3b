"""Large payloads: seal.64m and open.64m through files, limit.aead.64m and peer.age.64m in memory.

The files live in a temporary folder (the page cache absorbs them: ``durable=False``, so no
fsync). Outputs are deleted between rounds. MB/s counts 10**6 bytes of plaintext.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from bench.common import MIB, Bench, mb_per_second
from bench.peers import age_bench
from crypto.keys import DecryptionKey, SigningKey
from crypto.recipes import CHUNK_BYTES, StreamSealer, new_content_key
from envelope.seal import Recipient, new_routing
from gateway.relay.envelope_io import InputPart, open_to_dir, seal_to_file

PAYLOAD_BYTES = 64 * MIB
ORIGIN = "HQ-BENCH"
SITE = "M-001"
PART_NAME = "payload.bin"


def aead_only(data: bytes) -> None:
    """STREAM-seal ``data`` in CHUNK_BYTES chunks: one thread, no hashing, no I/O."""
    sealer = StreamSealer(new_content_key())
    view = memoryview(data)
    n = max(1, -(-len(data) // CHUNK_BYTES))
    for i in range(n):
        sealer.seal(view[i * CHUNK_BYTES : (i + 1) * CHUNK_BYTES], last=i == n - 1)


@contextmanager
def benches() -> Iterator[list[Bench]]:
    data = os.urandom(PAYLOAD_BYTES)
    sender = SigningKey.generate()
    key = DecryptionKey.generate()
    recipients = [Recipient(SITE, key.public)]
    tmp = Path(tempfile.mkdtemp(prefix="valise-bench-64m-"))
    try:
        source = tmp / "input.bin"
        source.write_bytes(data)
        inputs = [InputPart(source, PART_NAME)]
        sealed_out = tmp / "sealed.valise"
        to_open = tmp / "to-open.valise"
        opened = tmp / "opened"

        def seal(out: Path) -> None:
            routing = new_routing(origin=ORIGIN, destinations=[SITE], now=datetime.now(UTC))
            seal_to_file(
                out,
                routing=routing,
                sender=sender,
                recipients=recipients,
                inputs=inputs,
                durable=False,
            )

        def open_() -> None:
            open_to_dir(to_open, opened, sender=sender.public, site=SITE, key=key)

        # Correctness once, outside the timings.
        seal(to_open)
        open_()
        if (opened / PART_NAME).read_bytes() != data:
            raise SystemExit("bench: the 64 MiB envelope did not open to its payload")

        def measure_seal() -> float:
            sealed_out.unlink(missing_ok=True)
            return mb_per_second(lambda: seal(sealed_out), PAYLOAD_BYTES)

        def measure_open() -> float:
            shutil.rmtree(opened, ignore_errors=True)
            return mb_per_second(open_, PAYLOAD_BYTES)

        yield [
            Bench(
                "limit.aead.64m", "MB/s", lambda: mb_per_second(lambda: aead_only(data), len(data))
            ),
            Bench("seal.64m", "MB/s", measure_seal),
            Bench("open.64m", "MB/s", measure_open),
            age_bench(data),
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
