"""HQ's time-stamping service end to end, as real processes on loopback.

A document from one mission to another through HQ gets three tokens: ``sent`` at the
origin (asked of HQ's /v1/timestamp), ``relayed`` at HQ, and ``delivered`` at HQ over
the receipt it relays back. ``valise timestamp export`` writes them out and
``openssl ts -verify`` accepts each over its data, and refuses it over other data.
Then the endpoint's negatives, and a kill -9 between HQ's commit and its stamp.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import ClientSession, TCPConnector

from crypto.tsa import TimestampError, parse_response
from crypto.tsa import request as tsa_request
from crypto.tsa_verify import verify_token
from gateway.demo.network import Network
from gateway.proof.timestamp_batch import (
    MAX_BATCH_REQUESTS,
    REQUEST_MEDIA_TYPE,
    frame,
    unframe_responses,
)
from gateway.relay.outbox import Document, send_documents
from gateway.site.context import load_site
from gateway.site.tls import client_context
from tests.conftest import require_tool
from tests.support.pg import PG_DSN, pg_admin

FAST = {
    "VALISE_RELAY_LEASE_SECONDS": "2",
    "VALISE_RELAY_RETRY_BASE_SECONDS": "0.2",
    "VALISE_RELAY_RETRY_MAX_SECONDS": "1",
    "VALISE_RELAY_REQUEST_TIMEOUT_SECONDS": "5",
    "VALISE_RELAY_DIRECTORY_POLL_SECONDS": "1",
    "VALISE_TSA_BATCH_WAIT_MS": "5",
}
WAIT_S = 40.0


async def _send(net: Network, origin: str, to: str, n: int, tag: str) -> list[str]:
    ctx = await load_site(net.sites[origin].directory)
    try:
        return [
            await send_documents(
                ctx,
                [to],
                [Document(f"{tag}-{i}.txt", "text/plain", f"{tag} {i}\n".encode())],
                now=datetime.now(UTC),
                subject=f"{tag} {i}",
            )
            for i in range(n)
        ]
    finally:
        await ctx.store.close()


async def _wait_tokens(
    net: Network, site: str, ids: Sequence[str], kinds: set[str], *, wait: float = WAIT_S
) -> dict[str, set[str]]:
    """Wait until every id has a token of every kind at ``site``; return what is missing."""
    ctx = await load_site(net.sites[site].directory)
    try:
        deadline = time.monotonic() + wait
        missing = {mid: set(kinds) for mid in ids}
        while any(missing.values()) and time.monotonic() < deadline:
            for mid, wanted in missing.items():
                wanted -= {r.kind for r in await ctx.store.timestamps(mid)}
            if any(missing.values()):
                await asyncio.sleep(0.1)
        return {mid: left for mid, left in missing.items() if left}
    finally:
        await ctx.store.close()


def _export(net: Network, site: str, message_id: str, out: Path) -> str:
    done = _export_run(net, site, message_id, out)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _export_run(
    net: Network, site: str, message_id: str, out: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "timestamp",
            "export",
            message_id,
            "--out",
            str(out),
            "--dir",
            str(net.sites[site].directory),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def _openssl_verify(folder: Path, data: str, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "ts", "-verify", "-data", data, "-in", token, "-token_in", "-CAfile", "ca.crt"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )


async def _pg_up() -> None:
    conn = await pg_admin()
    await conn.close()


def _check_folder(folder: Path, expected: dict[str, str]) -> None:
    """Every token verifies over its data file, and fails over another file."""
    readme = (folder / "README").read_text()
    (folder / "other.bin").write_bytes(b"<signed>not this envelope</signed>")
    for token, data in expected.items():
        assert f"-data {data} -in {token} -token_in -CAfile ca.crt" in readme
        ok = _openssl_verify(folder, data, token)
        assert "Verification: OK" in ok.stdout, ok.stdout + ok.stderr
        bad = _openssl_verify(folder, "other.bin", token)
        assert bad.returncode != 0 and "Verification: OK" not in bad.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_relayed_document_and_its_receipt_get_tokens_openssl_verifies(
    tmp_path: Path, backend: str
) -> None:
    require_tool("openssl")
    dsn = None
    if backend == "postgres":
        asyncio.run(_pg_up())  # skips (or fails in CI) when PostgreSQL is down
        dsn = PG_DSN
    with Network(tmp_path / "net", env=FAST, postgres_dsn=dsn) as net:
        ids = asyncio.run(_send(net, "M-PARIS", "M-HANOI", 3, "stamped"))
        assert not asyncio.run(_wait_tokens(net, "M-PARIS", ids, {"sent"}))
        assert not asyncio.run(_wait_tokens(net, "HQ", ids, {"relayed", "delivered"}))
        # The destination stamps nothing it receives (it asks only for its receipts).
        assert asyncio.run(_wait_tokens(net, "M-HANOI", ids, {"sent"}, wait=0)) == {
            mid: {"sent"} for mid in ids
        }

        origin = tmp_path / "origin"
        _export(net, "M-PARIS", ids[0], origin)
        _check_folder(origin, {"sent.tsr": "data.bin"})

        hq = tmp_path / "hq"
        _export(net, "HQ", ids[0], hq)
        _check_folder(hq, {"relayed.tsr": "data.bin", "delivered.tsr": "delivered.data.bin"})
        # The origin's and HQ's tokens stamp the same bytes: the envelope's digest range.
        assert (origin / "data.bin").read_bytes() == (hq / "data.bin").read_bytes()
        assert (hq / "delivered.data.bin").read_bytes() != (hq / "data.bin").read_bytes()

        # Review F6: a link planted in the --out folder is refused, never written through.
        victim, shared = tmp_path / "victim", tmp_path / "shared"
        victim.write_bytes(b"precious")
        shared.mkdir()
        (shared / "README").symlink_to(victim)
        refused = _export_run(net, "HQ", ids[0], shared)
        assert refused.returncode != 0 and "refusing to overwrite" in refused.stderr
        assert victim.read_bytes() == b"precious"
        assert [p.name for p in shared.iterdir()] == ["README"]

        asyncio.run(_endpoint_negatives(net))


async def _post(
    net: Network, body: bytes, content_type: str = REQUEST_MEDIA_TYPE
) -> tuple[int, bytes]:
    ctx = await load_site(net.sites["M-PARIS"].directory)
    try:
        ssl_ctx = client_context(ctx.tls.cert_pem, ctx.tls.key_pem, ctx.tls.ca_pem)
        async with (
            ClientSession(connector=TCPConnector(ssl=ssl_ctx)) as session,
            session.post(
                f"{ctx.config.site.hub_endpoint}/v1/timestamp",
                data=body,
                headers={"Content-Type": content_type},
            ) as resp,
        ):
            return resp.status, await resp.read()
    finally:
        await ctx.store.close()


def _sha1_request(digest: bytes) -> bytes:
    """A TimeStampReq for a SHA-1 imprint, as openssl makes one."""
    done = subprocess.run(
        ["openssl", "ts", "-query", "-digest", digest.hex(), "-sha1", "-cert"],
        capture_output=True,
        check=True,
    )
    return done.stdout


async def _endpoint_negatives(net: Network) -> None:
    hq = await load_site(net.sites["HQ"].directory)
    ca_pem = hq.tls.ca_pem
    await hq.store.close()
    digest = hashlib.sha256(b"a document").digest()

    # A batch with one good request, one for SHA-1 and one that is not DER: only the
    # bad ones are refused, each with its own rejection.
    good = tsa_request(digest, nonce=42)
    body = frame([good, _sha1_request(hashlib.sha1(b"x").digest()), b"\x30\x03\x02\x01"])
    status, answer = await _post(net, body)
    assert status == 200
    first, second, third = unframe_responses(answer, expected=3)
    assert verify_token(parse_response(first), digest, ca_pem, nonce=42).nonce == 42
    with pytest.raises(TimestampError) as refused:
        parse_response(second)
    assert refused.value.failure == "badAlg"
    with pytest.raises(TimestampError) as refused:
        parse_response(third)
    assert refused.value.failure == "badDataFormat"

    # The batch itself: malformed framing, too many requests, an over-large item, the
    # wrong media type.
    assert (await _post(net, b"\x00\x00\x00\x09short"))[0] == 400
    assert (await _post(net, b""))[0] == 400
    assert (await _post(net, frame([good] * MAX_BATCH_REQUESTS)))[0] == 200
    assert (await _post(net, frame([good] * (MAX_BATCH_REQUESTS + 1))))[0] == 413
    assert (await _post(net, frame([b"\x30" * (16 * 1024 + 1)])))[0] == 413
    assert (await _post(net, frame([good]), "application/json"))[0] == 415


def test_an_envelope_committed_at_hq_before_a_kill_9_is_stamped_after_restart(
    tmp_path: Path,
) -> None:
    point = "hop-after-commit"
    site_env = {"HQ": {"VALISE_RELAY_CRASH_AT": point}}
    with Network(tmp_path, env=FAST, site_env=site_env) as net:
        ids = asyncio.run(_send(net, "M-PARIS", "M-HANOI", 2, "crash"))
        hq = net.sites["HQ"]
        deadline = time.monotonic() + 30
        while hq.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not hq.running, f"HQ never reached {point}"
        assert hq.proc is not None and hq.proc.returncode == -9
        # Committed at HQ, no token yet: the envelopes are pending in the store.
        pending, tokens = asyncio.run(_hq_state(net, ids))
        assert pending == set(ids) and not tokens
        hq.start()
        assert not asyncio.run(_wait_tokens(net, "HQ", ids, {"relayed"}))
        assert not asyncio.run(_wait_tokens(net, "M-PARIS", ids, {"sent"}))


async def _hq_state(net: Network, ids: Sequence[str]) -> tuple[set[str], list[str]]:
    ctx = await load_site(net.sites["HQ"].directory)
    try:
        pending = {p.message_id for p in await ctx.store.timestamp_pending(limit=100)}
        tokens = [r.kind for mid in ids for r in await ctx.store.timestamps(mid)]
        return pending & set(ids), tokens
    finally:
        await ctx.store.close()
