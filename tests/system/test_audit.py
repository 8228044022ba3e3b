"""The audit log against both stores: every state change is chained in its own
transaction, and verify finds rows edited, deleted or reordered in the database."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from crypto.keys import SigningKey
from crypto.random import FixedRandom
from crypto.tsa import TimeStampAuthority
from crypto.tsa_verify import verify_token
from crypto.x509 import SiteCA, issue_tsa_certificate
from gateway.proof.audit import AuditError, checkpoint_now, pending, record, verify_store
from gateway.proof.audit_verify import Report
from gateway.store.audit_chain import AuditCheckpoint
from gateway.store.base import EnvelopeRecord, Store
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.support.cli import valise
from tests.support.pg import PG_DSN

T0 = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)
HERE = "M-ROME"
PEER = "HQ"
KEY = SigningKey.from_seed(bytes(range(32)))
KEYS = {KEY.key_id: KEY.public}


def envelope(n: int) -> EnvelopeRecord:
    return EnvelopeRecord(
        message_id=f"msg-{n:04d}",
        origin=HERE,
        destinations=("M-PARIS",),
        digest=bytes([n % 256]) * 32,
        created=T0,
        expires=T0 + timedelta(days=1),
        priority="routine",
        received_from=None,
        data=b"ciphertext %d" % n,
    )


async def raw(store: Store, sql: str, *args: Any) -> None:
    """Run ``sql`` (``?`` parameters) on the store's database behind its back."""
    if isinstance(store, SqliteStore):
        conn = sqlite3.connect(store.path)
        try:
            with conn:
                conn.execute(sql, args)
        finally:
            conn.close()
        return
    assert isinstance(store, PostgresStore)
    n = iter(range(1, 100))
    pg_sql = re.sub(r"\?", lambda _: f"${next(n)}", sql)
    c = await asyncpg.connect(PG_DSN, server_settings={"search_path": store.schema or "public"})
    try:
        await c.execute(pg_sql, *args)
    finally:
        await c.close()


async def traffic(store: Store) -> None:
    """Real store operations: accept, claim, forward, defer, hold, release, receipt."""
    await store.audit_identify(HERE)
    await store.accept_many([(envelope(i), [PEER], False, None) for i in range(6)], now=T0)
    claimed = await store.claim(peer=PEER, owner="o", limit=4, lease_seconds=60, now=T0)
    await store.forwarded([(c.message_id, PEER) for c in claimed[:3]], owner="o", now=T0)
    await store.defer(
        claimed[3].message_id, PEER, owner="o", reason="busy", next_attempt=T0, now=T0
    )
    await store.hold(envelope(4).message_id, now=T0, reason="operator: held")
    await store.release(envelope(4).message_id, now=T0, reason="operator: released")
    await store.delivered(envelope(0).message_id, receipt=b"receipt", now=T0)
    await record(store, actor="operator:alice", action="cli.queue.hold", subject="msg-0004")
    await record(
        store, actor=HERE, action="key.rotate", subject="abc", detail={"from": "a", "to": "b"}
    )


async def check(store: Store) -> Report:
    return await verify_store(store, site=HERE, keys=KEYS)


async def test_every_state_change_is_chained_and_verifies(store: Store) -> None:
    await traffic(store)
    entries = await store.audit_entries(limit=1000)
    history = [t for i in range(6) for t in await store.history(envelope(i).message_id)]
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    automatic = [e for e in entries if "." not in e.action]
    assert len(automatic) == len(history)  # one entry per history row, none lost
    assert {e.actor for e in automatic} == {HERE}
    assert {e.action for e in automatic} >= {"queued", "sending", "forwarded", "deferred", "held"}
    assert {e.action for e in automatic} >= {"delivered"}
    assert json.loads(entries[0].detail) == {
        "history": json.loads(entries[0].detail)["history"],
        "peer": PEER,
        "reason": "",
    }
    assert entries[-1].action == "key.rotate" and json.loads(entries[-1].detail)["to"] == "b"
    report = await check(store)
    assert report.ok and report.entries == len(entries) and report.unchecked == (1, len(entries))


async def test_a_failed_transaction_leaves_no_entry(store: Store) -> None:
    await traffic(store)
    before = await store.audit_head()
    with pytest.raises(Exception):  # noqa: B017 - the backend's own error
        await store.fail("msg-unknown", None, reason="x", now=T0)
    assert await store.audit_head() == before


async def test_record_refuses_bad_values(store: Store) -> None:
    with pytest.raises(AuditError):
        await record(store, actor="", action="x")
    with pytest.raises(AuditError):
        await record(store, actor="a", action="x", detail={"n": 1})  # type: ignore[dict-item]
    with pytest.raises(AuditError):
        await record(store, actor="a", action="x", now=datetime(2026, 1, 1))


TAMPERING = {
    "edit": ("UPDATE audit SET actor = 'mallory' WHERE seq = 5", 5, "changed"),
    "edit-detail": ("UPDATE audit SET detail = '{}' WHERE seq = 9", 9, "changed"),
    "delete": ("DELETE FROM audit WHERE seq = 5", 5, "removed"),
    "delete-renumber": (
        "DELETE FROM audit WHERE seq = 5; UPDATE audit SET seq = seq - 1 WHERE seq > 5",
        5,
        "removed",
    ),
    "reorder": (
        "UPDATE audit SET seq = -1 WHERE seq = 5; UPDATE audit SET seq = 5 WHERE seq = 6;"
        " UPDATE audit SET seq = 6 WHERE seq = -1",
        5,
        "reordered",
    ),
}


@pytest.mark.parametrize("how", sorted(TAMPERING))
async def test_tampering_in_the_database_is_found(store: Store, how: str) -> None:
    await traffic(store)
    assert (await check(store)).ok
    statements, seq, kind = TAMPERING[how]
    for statement in statements.split(";"):
        if "seq = seq - 1" in statement:
            # Row by row from the low end: a primary key may be checked at each row.
            head = await store.audit_head()
            assert head is not None
            for s in range(6, head.seq + 1):
                await raw(store, "UPDATE audit SET seq = ? WHERE seq = ?", s - 1, s)
            continue
        await raw(store, statement.strip())
    report = await check(store)
    assert not report.ok
    assert report.first is not None and (report.first.seq, report.first.kind) == (seq, kind), (
        report.first
    )


async def test_checkpoints_sign_the_chain_and_catch_forgeries(store: Store) -> None:
    await traffic(store)
    cp = await checkpoint_now(store, site=HERE, key=KEY, now=T0)
    assert cp is not None and await pending(store) == (0, cp)
    assert await checkpoint_now(store, site=HERE, key=KEY, now=T0) is None  # nothing new
    report = await check(store)
    assert report.ok and report.last_checkpoint == cp.seq and report.checkpoints_verified == 1

    other = SigningKey.from_seed(bytes(32))
    await raw(store, "UPDATE audit_checkpoints SET signature = ?", bytes(64))
    first = (await check(store)).first
    assert first is not None and (first.seq, first.kind) == (cp.seq, "checkpoint")
    assert "signature" in first.what
    await raw(store, "UPDATE audit_checkpoints SET signer = ?", other.key_id)
    assert "unknown signer" in ((await check(store)).first or first).what

    await raw(store, "DELETE FROM audit_checkpoints")
    first = (await check(store)).first
    assert first is not None and (first.seq, first.kind) == (cp.seq, "checkpoint")


async def test_a_cut_off_tail_is_found_by_the_checkpoint(store: Store) -> None:
    await traffic(store)
    cp = await checkpoint_now(store, site=HERE, key=KEY, now=T0)
    assert cp is not None
    await raw(store, "DELETE FROM audit WHERE seq >= ?", cp.seq - 2)
    first = (await check(store)).first
    assert first is not None and (first.seq, first.kind) == (cp.seq - 2, "removed")


async def test_a_time_stamped_checkpoint_verifies(store: Store) -> None:
    ca = SiteCA.create(now=T0 - timedelta(days=1), rng=FixedRandom(b"audit-ca"))
    tsa = TimeStampAuthority(
        *issue_tsa_certificate(ca, "HQ TSA", now=T0 - timedelta(days=1), rng=FixedRandom(b"t")),
        policy="1.3.6.1.4.1.57264.1.1",
    )

    async def stamp(cp: AuditCheckpoint, message: bytes) -> bytes | None:
        return tsa.issue(hashlib.sha256(message).digest(), serial=1, now=T0)

    def token_check(token: bytes, digest: bytes) -> datetime:
        return verify_token(token, digest, ca.cert_pem).gen_time

    await traffic(store)
    cp = await checkpoint_now(store, site=HERE, key=KEY, stamp=stamp, now=T0)
    assert cp is not None and cp.token is not None
    assert (await verify_store(store, site=HERE, keys=KEYS, token_check=token_check)).ok
    # Flip a bit of the last byte (setting it to 0 left it unchanged when it was 0).
    bent = cp.token[:-1] + bytes([cp.token[-1] ^ 1])
    await raw(store, "UPDATE audit_checkpoints SET token = ?", bent)
    report = await verify_store(store, site=HERE, keys=KEYS, token_check=token_check)
    assert report.first is not None and report.first.kind == "checkpoint"
    assert "time-stamp" in report.first.what


async def test_postgres_writers_in_several_processes_make_one_chain(pg_schema: str) -> None:
    stores = [await PostgresStore.open(PG_DSN, schema=pg_schema, max_size=4) for _ in range(3)]
    try:

        async def writer(s: PostgresStore, k: int) -> None:
            for b in range(4):
                batch = [envelope(1000 * k + 10 * b + i) for i in range(10)]
                await s.accept_many([(e, [PEER], False, None) for e in batch], now=T0)
                await record(s, actor="operator:x", action="cli.test", subject=f"{k}-{b}")

        await asyncio.gather(*(writer(s, k) for k, s in enumerate(stores)))
        report = await verify_store(stores[0], site=HERE, keys=KEYS)
        assert report.ok and report.entries == 3 * 4 * 11
    finally:
        for s in stores:
            await s.close()


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_records_operator_commands_and_verifies(tmp_path: Path) -> None:
    site = tmp_path / "hq"
    made = valise("init", "--site", "HQ", "--dir", str(site), "--listen", "127.0.0.1:18443")
    assert made.returncode == 0, made.stderr
    assert valise("queue", "list", "--dir", str(site)).returncode == 0
    assert valise("queue", "hold", "nope", "--dir", str(site)).returncode == 2
    assert valise("audit", "checkpoint", "--dir", str(site)).returncode == 0

    verified = valise("audit", "verify", "--dir", str(site), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] and report["checkpoints_verified"] == 1 and report["first"] is None

    listed = json.loads(valise("audit", "list", "--dir", str(site), "--json").stdout)
    actions = [(e["action"], e["result"]) for e in listed]
    assert actions[:4] == [
        ("cli.init", "ok"),
        ("cli.queue.list", "ok"),
        ("cli.queue.hold", "error: 2"),
        ("audit.checkpoint", "ok"),
    ]
    assert listed[1]["actor"].startswith("operator:")
    assert json.loads(listed[2]["detail"]["args"]) == ["nope", "--dir", str(site)]

    db = sqlite3.connect(site / "store.sqlite")
    with db:
        db.execute("UPDATE audit SET result = 'ok' WHERE seq = 3")
    db.close()
    tampered = valise("audit", "verify", "--dir", str(site), "--json")
    assert tampered.returncode == 1
    first = json.loads(tampered.stdout)["first"]
    assert (first["seq"], first["kind"]) == (3, "changed")


def test_cli_skips_a_folder_that_is_not_a_site(tmp_path: Path) -> None:
    result = valise("queue", "list", "--dir", str(tmp_path / "nothing"))
    assert result.returncode == 3
    assert "audit" not in result.stderr
    assert not (tmp_path / "nothing").exists()
