"""The audit log anchored outside the site, and checked against trusted time.

- Hole 4: a site's tail cut together with the checkpoints covering it (and the witness
  statement it held) is found by ``valise audit verify``, which compares the chain with
  what HQ witnessed; HQ refuses the rolled-back chain's next checkpoint and
  ``valise audit witness`` at HQ shows the conflict.
- Hole 5: a log checkpointed with a revoked key fails, unless a token shows the
  checkpoint was made while the key was usable.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from crypto.random import FixedRandom
from crypto.tsa import TimeStampAuthority
from crypto.tsa_verify import verify_token
from crypto.x509 import SiteCA, issue_tsa_certificate
from gateway.demo.network import Network
from gateway.proof.audit import checkpoint_now, verify_store
from gateway.proof.audit_verify import KeyHistory
from gateway.store.audit_chain import AuditCheckpoint, Witness
from gateway.store.base import Store
from routing.directory import Directory, KeyState, SiteEntry
from tests.support.cli import valise
from tests.system.test_audit import HERE, KEY, KEYS, T0, traffic
from tests.system.test_relay import FAST

# -- hole 5: a revoked key's checkpoints -----------------------------------------------


def _directory(serial: int, issued: datetime, state: KeyState) -> Directory:
    entry = SiteEntry(HERE, "https://x", ((KEY.public, state),), (), ())
    return Directory(serial, issued, "HQ", (entry,))


REVOKED_AT = T0 + timedelta(hours=1)
HISTORY = KeyHistory(
    HERE,
    (
        _directory(1, T0 - timedelta(days=1), KeyState.ACTIVE),
        _directory(2, REVOKED_AT, KeyState.REVOKED),
    ),
)
CA = SiteCA.create(now=T0 - timedelta(days=1), rng=FixedRandom(b"audit-ca"))
TSA = TimeStampAuthority(
    *issue_tsa_certificate(CA, "HQ TSA", now=T0 - timedelta(days=1), rng=FixedRandom(b"t")),
    policy="1.3.6.1.4.1.57264.1.1",
)


def _token_check(token: bytes, digest: bytes) -> datetime:
    return verify_token(token, digest, CA.cert_pem).gen_time


def _stamp_at(moment: datetime) -> Callable[[AuditCheckpoint, bytes], object]:
    async def stamp(cp: AuditCheckpoint, message: bytes) -> bytes | None:
        return TSA.issue(hashlib.sha256(message).digest(), serial=7, now=moment)

    return stamp


async def _verify(store: Store) -> list[str]:
    report = await verify_store(
        store, site=HERE, keys=KEYS, token_check=_token_check, history=HISTORY
    )
    return [f"{f.kind}: {f.what}" for f in report.findings]


async def test_a_log_checkpointed_by_a_revoked_key_without_a_token_fails(store: Store) -> None:
    await traffic(store)
    # The thief's checkpoint claims a time before the revocation; nothing trusted says so.
    assert await checkpoint_now(store, site=HERE, key=KEY, now=T0) is not None
    findings = await _verify(store)
    assert findings and "revoked" in findings[0] and "no time-stamp token" in findings[0]


async def test_a_token_after_the_revocation_fails_one_before_it_verifies(store: Store) -> None:
    await traffic(store)
    late = _stamp_at(REVOKED_AT + timedelta(minutes=5))
    assert await checkpoint_now(store, site=HERE, key=KEY, stamp=late, now=T0) is not None  # type: ignore[arg-type]
    findings = await _verify(store)
    assert findings and "revoked" in findings[0] and "before the token's time" in findings[0]


async def test_a_token_before_the_revocation_verifies(store: Store) -> None:
    await traffic(store)
    early = _stamp_at(T0)
    assert await checkpoint_now(store, site=HERE, key=KEY, stamp=early, now=T0) is not None  # type: ignore[arg-type]
    report = await verify_store(
        store, site=HERE, keys=KEYS, token_check=_token_check, history=HISTORY
    )
    assert report.ok and not report.warnings, report.findings


async def test_an_untimed_checkpoint_is_a_warning(store: Store) -> None:
    await traffic(store)
    await checkpoint_now(store, site=HERE, key=KEY, now=T0)
    report = await verify_store(store, site=HERE, keys=KEYS)
    assert report.ok and report.warnings and "no time-stamp token" in report.warnings[0]


# -- the witness row in both stores ----------------------------------------------------


async def test_the_witness_row_only_moves_from_the_seq_it_was_read_at(store: Store) -> None:
    w = Witness(HERE, 5, b"\x05" * 32, T0, "k", b"s", "HQ", T0, "hq", b"t")
    assert await store.audit_witness(HERE) is None
    assert await store.audit_witness_save(w, expect_seq=None)
    assert not await store.audit_witness_save(w, expect_seq=None)  # a row is there
    assert await store.audit_witness(HERE) == w
    later = replace(w, seq=9, hash=b"\x09" * 32, conflict="fork", conflict_seq=5, conflict_at=T0)
    assert not await store.audit_witness_save(later, expect_seq=4)  # read at another seq
    assert await store.audit_witness(HERE) == w
    assert await store.audit_witness_save(later, expect_seq=5)
    assert await store.audit_witness(HERE) == later


# -- hole 4: a cut tail on a live network ------------------------------------------------

ENV = {**FAST, "VALISE_AUDIT_CHECKPOINT_SECONDS": "0.3"}


def _witnessed(hq: Path, site: str) -> dict[str, object] | None:
    done = valise("audit", "witness", site, "--json", "--dir", hq)
    return json.loads(done.stdout) if done.stdout.strip() else None


def _wait(what: str, test: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_cut_tail_is_found_against_what_hq_witnessed(tmp_path: Path) -> None:
    with Network(tmp_path / "net", missions=("M-PARIS",), env=ENV) as net:
        paris, hq = net.sites["M-PARIS"].directory, net.sites["HQ"].directory
        for _ in range(4):  # entries to checkpoint: each command is recorded
            assert valise("queue", "list", "--dir", paris).returncode == 0
        _wait("HQ to witness M-PARIS", lambda: (_witnessed(hq, "M-PARIS") or {}).get("seq", 0) >= 4)  # type: ignore[operator]
        seen = _witnessed(hq, "M-PARIS")
        assert seen is not None and seen["signature_ok"] and seen["conflict"] is None
        witnessed = int(str(seen["seq"]))
        ok = valise("audit", "verify", "--json", "--dir", paris)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert json.loads(ok.stdout)["witness"]["seq"] >= witnessed
        assert json.loads(ok.stdout)["warnings"] == []  # every checkpoint carries HQ's token

        # The attack: the newest entries, the checkpoints covering them and the witness
        # statement the site held, deleted behind the running site's back.
        cut = witnessed - 2
        db = sqlite3.connect(paris / "store.sqlite")
        with db:
            db.execute("DELETE FROM audit WHERE seq >= ?", (cut,))
            db.execute("DELETE FROM audit_checkpoints WHERE seq >= ?", (cut,))
            db.execute("DELETE FROM audit_witness")
        db.close()

        tampered = valise("audit", "verify", "--json", "--dir", paris)
        assert tampered.returncode == 1, tampered.stdout + tampered.stderr
        first = json.loads(tampered.stdout)["first"]
        assert first["kind"] in ("removed", "forked"), first
        # HQ's witness cannot move once the chain was cut: it names the seq HQ holds.
        witnessed = int(str((_witnessed(hq, "M-PARIS") or {})["seq"]))
        assert f"seq {witnessed}" in first["what"] or f"entry {witnessed}" in first["what"]

        # The running site's next checkpoint goes back or forks: HQ refuses and keeps it.
        # (It checkpoints once its chain has grown past what it checkpointed last: each
        # command adds an entry, as above. Without them it waited for background entries,
        # and CI once saw none come within the deadline.)
        def refused() -> bool:
            assert valise("queue", "list", "--dir", paris).returncode == 0
            return (_witnessed(hq, "M-PARIS") or {}).get("conflict") is not None

        _wait("HQ to refuse", refused)
        after = valise("audit", "witness", "M-PARIS", "--dir", hq)
        assert after.returncode == 1 and "CONFLICT" in after.stdout, after.stdout
        refused = _witnessed(hq, "M-PARIS")
        assert refused is not None and refused["seq"] == witnessed  # HQ did not go back
        assert refused["conflict"] in ("rollback", "fork")
        entries = json.loads(
            valise("audit", "list", "--json", "--limit", "10000", "--dir", hq).stdout
        )
        results = [e["result"] for e in entries if e["action"] == "audit.witness"]
        assert "ok" in results and any(r.startswith("refused: ") for r in results)
