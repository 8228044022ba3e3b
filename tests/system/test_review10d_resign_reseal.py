"""Review 10d (adversarial re-check of 4a5af2a), D1; failed before reseal.py counted the
stale wraps of the destinations a re-signed copy takes back. The F3 fix
(resign_refused) re-signed a failed message but did not re-seal it when its stanza
went to a revoked key.

reseal_message computes the stale stanzas only among *open* destinations; the
destination of a message failed for its signature is closed (failed), so ``stale`` is
empty and only ``_resign_message`` runs: the re-signed copy keeps the stanza to the
revoked encryption key. It goes to HQ, which holds it (M-PARIS refuses it: sealed to
its revoked key). The origin shows it forwarded; reseal_revoked, which would fix it,
runs only when the directory (or our key) changes next. In a quiet network: stuck.

Deterministic path to the F3 state: the operator holds the message at the origin while
both keys change and releases it after (the live drill reached the same state with the
copy being *sent* during the round the new signing key appeared).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.demo.network import Network
from tests.support.cli import valise as raw_valise
from tests.support.drill import published
from tests.system.test_key_rotation import ENV, active, send_one, valise, wait_for
from tests.system.test_relay import _check_exactly_once, _wait_receipts
from tests.system.test_revocation_losses import queue_rows


def test_released_after_both_keys_changed_is_delivered(tmp_path: Path) -> None:
    with Network(tmp_path, missions=("M-PARIS", "M-HANOI"), env=ENV) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        signing = active(hanoi.directory, "signing")
        enc = active(paris.directory, "encryption")
        hanoi.stop()
        mid = asyncio.run(send_one(hanoi.directory, "M-PARIS", "held-over-both-revocations"))
        valise("queue", "hold", mid, "--dir", str(hanoi.directory))
        hanoi.start()
        valise("keys", "revoke", signing, "--reason", "adv10d", "--dir", str(hq.directory))
        valise("keys", "revoke", enc, "--reason", "adv10d", "--dir", str(hq.directory))

        def both_replaced() -> bool:
            return bool(
                published(hanoi.directory, "M-HANOI", "signing") - {signing}
                and published(hanoi.directory, "M-PARIS", "encryption") - {enc}
            )

        wait_for("both replacements published and seen at M-HANOI", both_replaced, 60)
        time.sleep(3)  # a few key-watcher rounds with nothing changing
        valise("queue", "release", mid, "--dir", str(hanoi.directory))
        missing = asyncio.run(_wait_receipts(net, "M-HANOI", [mid], 60))
        shown = {
            s: raw_valise("queue", "show", mid, "--dir", str(net.sites[s].directory)).stdout
            for s in net.sites
        }
        rows = {
            s: [r for r in queue_rows(net.sites[s].directory) if r["id"] == mid] for s in net.sites
        }
        print(rows, *shown.values(), sep="\n")
        assert not missing, f"no receipt at M-HANOI: {rows}\n" + "\n".join(shown.values())
        asyncio.run(_check_exactly_once(net, "M-PARIS", [mid]))
