"""Review 10c (adversarial, live network), F1 and F2; both failed before 4a5af2a.

F2: a document taken at its destination (hop committed) before its
origin's signing key was revoked is failed there when it is opened ('origin signature
refused: signing key ... is revoked') -- the same loss c035a1d fixed for the
destination's own encryption key, on the other key. The origin re-signs it, but the
re-signed copy is a duplicate at the destination: the document is lost, the origin
shows it 'forwarded' for ever, no receipt.

Seen first in the reviewer's live drill (a variant of test_key_drill: both missions paused,
both revoked at HQ; 3 documents M-HANOI -> M-PARIS and 1 receipt lost). Made
deterministic here with the kill -9 point hop-after-commit at M-PARIS."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from gateway.demo.network import Network
from routing.directory import KeyState
from tests.support.drill import published
from tests.system.test_key_rotation import ENV, active, send_one, valise, wait_for
from tests.system.test_relay import _check_exactly_once, _wait_receipts
from tests.system.test_revocation_losses import queue_rows


def _new_signing_key(net: Network) -> str:
    """M-HANOI's signing key rotated now (a ring generation of its own), once HQ lists it."""
    hq, hanoi = net.sites["HQ"].directory, net.sites["M-HANOI"].directory
    valise("keys", "rotate", "--kind", "signing", "--now", "--dir", str(hanoi))
    signing = active(hanoi, "signing")
    wait_for(
        "HQ to list M-HANOI's new signing key",
        lambda: signing in published(hq, "M-HANOI", "signing"),
    )
    return signing


@contextlib.contextmanager
def _taken_then_revoked(tmp_path: Path) -> Iterator[tuple[Network, str, str]]:
    """M-PARIS commits the hop of a document from M-HANOI and is killed right after
    (hop-after-commit); then HQ revokes the signing key M-HANOI signed it with. Yields
    the network, the message id and that key."""
    crash = {"M-PARIS": {"VALISE_RELAY_CRASH_AT": "hop-after-commit"}}
    with Network(tmp_path, missions=("M-PARIS", "M-HANOI"), env=ENV, site_env=crash) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        signing = _new_signing_key(net)
        mid = asyncio.run(send_one(hanoi.directory, "M-PARIS", "taken-then-revoked"))
        wait_for("M-PARIS to die after committing the hop", lambda: not paris.running)
        valise("keys", "revoke", signing, "--reason", "adv10c", "--dir", str(hq.directory))
        yield net, mid, signing


def test_a_document_taken_before_its_origins_signing_key_was_revoked_is_delivered(
    tmp_path: Path,
) -> None:
    with _taken_then_revoked(tmp_path) as (net, mid, signing):
        hq, paris = net.sites["HQ"], net.sites["M-PARIS"]
        wait_for(
            "M-HANOI's signing key replaced",
            lambda: (
                published(hq.directory, "M-HANOI", "signing") - {signing} != set()
                and signing in published(hq.directory, "M-HANOI", "signing", KeyState.REVOKED)
            ),
        )
        paris.start()
        missing = asyncio.run(_wait_receipts(net, "M-HANOI", [mid], 60))
        rows = {
            s: [r for r in queue_rows(net.sites[s].directory) if r["id"] == mid] for s in net.sites
        }
        history = valise("queue", "show", mid, "--dir", str(paris.directory)).stdout
        print(rows, history, sep="\n")
        assert "undeliverable" not in history, history
        assert not missing, f"no receipt at M-HANOI; M-PARIS: {history}"
        asyncio.run(_check_exactly_once(net, "M-PARIS", [mid]))


def test_paused_destination_resumed_after_its_peers_signing_key_was_revoked(
    tmp_path: Path,
) -> None:
    """The drill's shape: M-PARIS paused (SIGSTOP) while HQ forwards documents from
    M-HANOI to it; HQ revokes M-HANOI's signing key; M-PARIS resumed before HQ's
    request times out. Expected: every document delivered once with a receipt."""
    import signal
    import time

    from tests.support.drill import signal_site

    with Network(tmp_path, missions=("M-PARIS", "M-HANOI"), env=ENV) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        signing = _new_signing_key(net)
        signal_site(paris, signal.SIGSTOP)
        try:
            ids = [
                asyncio.run(send_one(hanoi.directory, "M-PARIS", f"paused-{i}")) for i in range(4)
            ]
            time.sleep(1.0)  # HQ takes them and posts them to the paused M-PARIS
            valise("keys", "revoke", signing, "--reason", "adv10c", "--dir", str(hq.directory))
            time.sleep(1.0)
        finally:
            signal_site(paris, signal.SIGCONT)
        missing = asyncio.run(_wait_receipts(net, "M-HANOI", ids, 60))
        failed_hq = [
            r for r in queue_rows(hq.directory) if r["id"] in ids and r["state"] == "failed"
        ]
        shown = valise("queue", "show", ids[0], "--dir", str(hq.directory)).stdout
        print(shown)
        assert not failed_hq, (
            f"{len(failed_hq)} of {len(ids)} failed at HQ, origin not told:\n{shown}"
        )
        assert not missing, f"{len(missing)} of {len(ids)} without receipt at M-HANOI"
        asyncio.run(_check_exactly_once(net, "M-PARIS", ids))


def test_taken_before_the_revocation_opened_after_the_directory_shows_it(
    tmp_path: Path,
) -> None:
    """The drill's other loss, made deterministic: M-PARIS commits the hop of a document
    from M-HANOI (kill -9 right after: hop-after-commit), HQ revokes M-HANOI's signing
    key, M-PARIS's directory shows the revocation before the document is opened (here:
    the new directory.xml put in place before the restart; in the drill the directory
    poll on SIGCONT won the race against local delivery by 18 ms). Expected: delivered
    once with a receipt (the copy was taken while the key was good, or the origin's
    re-signed copy is taken in its place). Seen: failed 'acked undeliverable: origin
    signature refused', no receipt, the origin shows 'forwarded' for ever."""
    import shutil

    with _taken_then_revoked(tmp_path) as (net, mid, signing):
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        wait_for(
            "M-HANOI's signing key replaced at HQ",
            lambda: published(hq.directory, "M-HANOI", "signing") - {signing} != set(),
        )
        time.sleep(2)
        shutil.copy(hq.directory / "directory.xml", paris.directory / "directory.xml")
        paris.start()
        missing = asyncio.run(_wait_receipts(net, "M-HANOI", [mid], 45))
        history = valise("queue", "show", mid, "--dir", str(paris.directory)).stdout
        at_hq = valise("queue", "show", mid, "--dir", str(hq.directory)).stdout
        at_origin = valise("queue", "show", mid, "--dir", str(hanoi.directory)).stdout
        print(history, at_hq, at_origin, sep="\n")
        assert not missing, (
            f"no receipt at M-HANOI\nM-PARIS: {history}\nHQ: {at_hq}\nM-HANOI: {at_origin}"
        )
        asyncio.run(_check_exactly_once(net, "M-PARIS", [mid]))
