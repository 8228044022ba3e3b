"""What the key drill (test_key_drill.py) and the tests of what it found
(test_drill_findings.py) share: the sites' drill configuration, polling, and reading a
site's keys, directory and store from outside its process."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

from config.site import SiteConfig, load_site_config
from envelope.errors import EnvelopeError
from envelope.open import parse_framed_head
from gateway.demo.network import SiteProcess
from gateway.site.context import open_store, read_trust
from gateway.site.keyring import load_ring
from gateway.site.keystore import KeyStoreError
from gateway.trust.key_report import describe
from routing.directory import KeyState, parse_directory

SITES = ("HQ", "M-PARIS", "M-HANOI")
MISSIONS = SITES[1:]
PATIENCE_S = 120.0  # for anything to happen on a shared, slow machine


def drill_config(config: SiteConfig) -> SiteConfig:
    """Short intervals, as an operator would set them in valise.toml for a drill: the
    directory polled twice a second, keys checked as often, retries within a second, a
    rotated key active once every site has fetched it (or after 10 s at the latest)."""
    relay = replace(
        config.relay,
        directory_poll_seconds=0.5,
        retry_base_seconds=0.2,
        retry_max_seconds=1.0,
        lease_seconds=10.0,
        request_timeout_seconds=5.0,
    )
    announce = {"announce_seconds": 10.0} if _has(config.keys, "announce_seconds") else {}
    keys = replace(config.keys, check_seconds=0.5, overlap_seconds=3600.0, **announce)
    return replace(config, relay=relay, keys=keys)


def _has(section: object, name: str) -> bool:
    return any(f.name == name for f in fields(section))  # type: ignore[arg-type]


_T0 = time.monotonic()


def note(what: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {what}", flush=True)


def poll(what: str, test: Callable[[], bool], timeout: float = PATIENCE_S) -> None:
    """Wait until ``test()``; fail naming ``what`` after ``timeout`` (no timing claim:
    the deadline is only there so that a stuck drill ends)."""
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    note(what)


def own_keys(site_dir: Path, kind: str, state: str | None = "active") -> set[str]:
    """The ids of the site's own ``kind`` keys in ``state`` (None: any), as ``keys list``
    shows them (read in this process; the ring may be mid-write: read again)."""
    config = load_site_config(site_dir)
    for _ in range(50):
        try:
            rows = describe(load_ring(config.keys_dir, config.key_passphrase))
            return {r["id"] for r in rows if r["kind"] == kind and state in (None, r["state"])}
        except KeyStoreError:
            time.sleep(0.05)
    raise AssertionError(f"{site_dir.name}: the key ring did not load")


def published(site_dir: Path, site: str, kind: str, state: KeyState = KeyState.ACTIVE) -> set[str]:
    """The ids of ``site``'s ``kind`` keys in ``state`` in the directory at ``site_dir``."""
    d = parse_directory((site_dir / "directory.xml").read_bytes(), read_trust(site_dir / "keys"))
    return {key_id for key_id, (k, s) in d.site(site).states().items() if k == kind and s is state}


def signal_site(site: SiteProcess, sig: signal.Signals) -> None:
    assert site.proc is not None
    os.killpg(site.proc.pid, sig)


@dataclass
class SiteView:
    """What a site's store and inbox say, read from outside its process."""

    receipts: dict[str, tuple[str, str | None]]  # message id -> (receipt's origin, answers)
    received: Counter[str]  # message id -> times recorded received here
    inbox: set[str]  # folders in DIR/inbox
    deliveries: list[tuple[str, str, str, int, str]]  # id, peer, state, attempts, reason
    history: dict[str, list[str]]  # message id -> "state peer: reason", oldest first


async def view(site_dir: Path, ids: list[str]) -> SiteView:
    store = await open_store(load_site_config(site_dir))
    try:
        receipts: dict[str, tuple[str, str | None]] = {}
        received: Counter[str] = Counter()
        history: dict[str, list[str]] = {}
        for mid in ids:
            data = await store.receipt(mid)
            if data is not None:
                try:
                    routing = parse_framed_head(data)[0].head.routing
                    receipts[mid] = (routing.origin, routing.in_reply_to)
                except EnvelopeError:  # a receipt's proof is its next hop's ack
                    receipts[mid] = ("hop ack", None)
            steps = await store.history(mid)
            received[mid] = sum(1 for t in steps if t.state == "received")
            history[mid] = [f"{t.state} {t.peer or ''}: {t.reason}" for t in steps]
        deliveries = [
            (q.message_id, q.peer, q.state, q.attempts, q.last_reason) for q in await store.queue()
        ]
    finally:
        await store.close()
    folders = {p.name for p in (site_dir / "inbox").glob("*") if not p.name.startswith(".")}
    return SiteView(receipts, received, folders, deliveries, history)


def look(site: SiteProcess, ids: list[str] | None = None) -> SiteView:
    return asyncio.run(view(site.directory, ids or []))


def delivery_states(site: SiteProcess, mid: str) -> dict[str, str]:
    """peer -> state of each delivery of ``mid`` at ``site``."""
    return {peer: state for m, peer, state, _, _ in look(site).deliveries if m == mid}
