"""Review 10: two `valise keys rotate` of the same kind at once (two operators, a
script, or the running site's TLS renewal meeting an operator's rotation) each
generate a next key: `rotate` looks for a pending next key outside the ring lock, and
_generate adds one without looking again. The ring then holds two next keys of the
kind, the directory accepts only one (MAX_NEXT_KEYS), and from then on every sync of
the site fails -- every later key operation of any kind (a rotation, a revocation's
replacement, the running site's retirements) is refused with "has a next signing key
already"."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from config.site import load_site_config
from gateway.site.keyring import generate_key, load_ring, ring_lock, save_ring
from gateway.trust.lifecycle import KeyOps
from gateway.trust.outcome import Outcome
from routing.directory import KeyState


def _valise(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=120
    )


def _attempt(hq: Path) -> tuple[list[tuple[str, str]], subprocess.CompletedProcess[str]]:
    assert _run("init", "--site", "HQ", "--dir", str(hq), "--listen", "127.0.0.1:1").returncode == 0
    procs = [_valise("keys", "rotate", "--kind", "signing", "--dir", str(hq)) for _ in range(6)]
    for p in procs:
        p.communicate(timeout=120)
    keys = json.loads(_run("keys", "list", "--json", "--dir", str(hq)).stdout)
    signing = [(k["id"][:12], k["state"]) for k in keys if k["kind"] == "signing"]
    return signing, _run("keys", "rotate", "--kind", "encryption", "--dir", str(hq))


def test_concurrent_rotations_do_not_wedge_the_site(tmp_path: Path) -> None:
    for i in range(6):  # a race: a few tries (it wedged on the first try by hand)
        signing, after = _attempt(tmp_path / f"hq{i}")
        assert after.returncode == 0, (
            f"try {i}: after concurrent signing rotations (ring: {signing}), an encryption"
            f" rotation fails: {after.stderr.strip()}"
        )
        assert sum(s == "next" for _, s in signing) <= 1, signing


def _two_next_keys(hq: Path) -> list[str]:
    """A ring as two rotations at once left it before the fix: two next signing keys,
    neither published yet."""
    keys = hq / "keys"
    with ring_lock(keys):
        ring = load_ring(keys)
        made = [generate_key(ring, "signing", now=datetime.now(UTC)).id for _ in range(2)]
        save_ring(ring)
    return made


def _signing(hq: Path) -> list[tuple[str, str]]:
    keys = json.loads(_run("keys", "list", "--json", "--dir", str(hq)).stdout)
    return [(k["id"], k["state"]) for k in keys if k["kind"] == "signing"]


def test_a_ring_with_two_next_keys_of_a_kind_recovers(tmp_path: Path) -> None:
    hq = tmp_path / "hq"
    assert _run("init", "--site", "HQ", "--dir", str(hq), "--listen", "127.0.0.1:1").returncode == 0
    first, second = _two_next_keys(hq)
    done = _run("keys", "rotate", "--kind", "encryption", "--dir", str(hq))
    assert done.returncode == 0, done.stderr
    pending = [i for i, s in _signing(hq) if s == "next"]
    assert len(pending) == 1 and pending[0] in (first, second), _signing(hq)
    (dropped,) = {first, second} - set(pending)
    assert not (hq / "keys" / "ring" / f"signing-{dropped}.key").exists()
    # And the kept one goes on to be published and used.
    done = _run("keys", "rotate", "--kind", "signing", "--now", "--dir", str(hq))
    assert done.returncode == 0, done.stderr
    assert (pending[0], "active") in _signing(hq)


def test_the_published_one_of_two_next_keys_is_kept(tmp_path: Path) -> None:
    hq = tmp_path / "hq"
    assert _run("init", "--site", "HQ", "--dir", str(hq), "--listen", "127.0.0.1:1").returncode == 0
    ops = KeyOps(load_site_config(hq))
    ring = load_ring(hq / "keys")
    published = generate_key(ring, "signing", now=datetime.now(UTC)).id
    save_ring(ring)
    asyncio.run(ops._sync(Outcome(), False))  # published as next, not activated
    assert ops.directory().site("HQ").states()[published][1] is KeyState.NEXT
    ring = load_ring(hq / "keys")
    extra = generate_key(ring, "signing", now=datetime.now(UTC)).id
    ring.keys.insert(0, ring.keys.pop())  # the unpublished one first in the ring
    save_ring(ring)
    assert [i for i, s in _signing(hq) if s == "next"] == [extra, published]
    out = asyncio.run(ops.rotate("signing", timedelta(0)))
    # The published one resumed (and, HQ being alone, activated); the other is gone.
    assert (published, "active") in _signing(hq), out.steps
    assert extra not in [i for i, _ in _signing(hq)], out.steps
    assert any(extra in step and "dropped" in step for step in out.steps), out.steps
