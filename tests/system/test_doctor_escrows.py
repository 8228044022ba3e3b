"""``valise doctor`` on held mail (review 10, F1): deliveries held longer than
``[relay] warn_deferred_seconds`` are a warning naming why; held mail sealed here whose
escrow no key of this site opens (its private key deleted: it can never be re-sealed)
is a failure naming it. Both stores."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from config.site import load_site_config
from crypto.keys import DecryptionKey, EncryptionKey
from crypto.recipes import wrap
from envelope.seal import escrow_info
from gateway.service.doctor_checks import Status
from gateway.service.doctor_escrow import escrow_check
from gateway.service.doctor_queue import queue_checks
from gateway.site.keyring import decryption_key, load_ring
from gateway.store.base import Store
from tests.contract.helpers import HQ, T0, mid, record

WAITING = "waiting for an encryption key of M-HANOI"
LISTEN = ("--listen", "127.0.0.1:1")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("doctor") / "hq"
    subprocess.run(
        [sys.executable, "-m", "gateway", "init", "--site", "HQ", "--dir", str(d), *LISTEN],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return d


def _escrow(n: int, key: EncryptionKey) -> bytes:
    return wrap(bytes(32), key, escrow_info(mid(n), key.key_id))


async def _held(store: Store, n: int, escrow: bytes | None) -> None:
    await store.accept(
        dataclasses.replace(record(n), escrow=escrow),
        next_hops=[HQ],
        deliver_here=False,
        hop_ack=None,
        now=T0,
        held=WAITING,
    )


async def test_an_escrow_no_key_here_opens_fails_naming_its_message(
    store: Store, site: Path
) -> None:
    config = load_site_config(site)
    ring = load_ring(config.keys_dir)
    ours = decryption_key(ring, ring.active("encryption")).public
    await _held(store, 1, _escrow(1, ours))
    await _held(store, 2, _escrow(2, DecryptionKey.generate().public))  # a deleted key's
    await _held(store, 3, None)  # not sealed here
    check = await escrow_check(store, config, [mid(1), mid(2), mid(3)])
    assert check.status is Status.FAIL, check
    assert mid(2) in check.detail and mid(1) not in check.detail and mid(3) not in check.detail
    ok = await escrow_check(store, config, [mid(1), mid(3)])
    assert ok.status is Status.OK and "1 held message" in ok.detail, ok


async def test_held_longer_than_the_threshold_warns_with_the_reason(
    store: Store, site: Path
) -> None:
    config = load_site_config(site)
    ring = load_ring(config.keys_dir)
    await _held(store, 4, _escrow(4, decryption_key(ring, ring.active("encryption")).public))
    soon = {c.name: c for c in await queue_checks(store, config, None, T0 + timedelta(minutes=5))}
    assert soon["queue held"].status is Status.OK, soon["queue held"]
    assert soon["queue escrows"].status is Status.OK, soon["queue escrows"]
    late = {c.name: c for c in await queue_checks(store, config, None, T0 + timedelta(days=2))}
    held = late["queue held"]
    assert held.status is Status.WARN and mid(4) in held.detail and WAITING in held.detail
