"""Generate a valise-evidence/1 bundle with the exporter as it was before issue 11's v2."""

import asyncio
import sys
from pathlib import Path

from gateway.demo.network import Network
from tests.system.test_evidence import _send, _stamp, _wait_receipt, valise
from tests.system.test_relay import FAST

root = Path(sys.argv[1])
out = Path(sys.argv[2])
with Network(root / "net", env=FAST) as net:
    paris, hq = net.sites["M-PARIS"].directory, net.sites["HQ"].directory
    mid = asyncio.run(_send(paris, "M-HANOI", "Note verbale v1"))
    asyncio.run(_wait_receipt(paris, mid))
    asyncio.run(_stamp(hq, paris, mid, 5000))
    done = valise("evidence", mid, "--out", out, "--dir", paris)
    print(done.returncode, done.stdout, done.stderr)
