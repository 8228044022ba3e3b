"""Only a token HQ issued through its witness times an audit checkpoint (review F5).

HQ's ``/v1/timestamp`` stamps any digest for any pinned site: a thief holding a site's
signing key before its revocation, helped by any enrolled mission, could get HQ's
tokens over checkpoints it forged, which would then count after the revocation (a key
is judged at its token's time). Against a real network: M-EVIL asks ``/v1/timestamp``
for a token over a checkpoint forged with M-PARIS's key; ``audit verify``'s token
check does not let it time the checkpoint (with the key revoked later, the checkpoint
fails), while the token HQ's witness gave M-PARIS's own checkpoint counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from crypto.keys import SigningKey
from crypto.recipes import sign
from crypto.tsa import parse_response
from crypto.tsa import request as tsa_request
from gateway.demo.network import Network
from gateway.proof.audit import token_checker
from gateway.proof.audit_verify import KeyHistory, Report, check_checkpoints
from gateway.proof.timestamp_batch import REQUEST_MEDIA_TYPE, frame, unframe_responses
from gateway.site.context import load_site
from gateway.site.keystore import load_site_keys
from gateway.site.tls import client_context
from gateway.store.audit_chain import AuditCheckpoint, checkpoint_message
from routing.directory import Directory, KeyState, SiteEntry
from tests.system.test_relay import FAST

ENV = {**FAST, "VALISE_AUDIT_CHECKPOINT_SECONDS": "0.3"}
WAIT_S = 60.0
PARIS = "M-PARIS"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    with Network(tmp_path_factory.mktemp("cpnet"), ("M-PARIS", "M-EVIL"), env=ENV) as n:
        yield n


def _folder(net: Network, site: str) -> Path:
    return net.sites[site].directory


def _ca(net: Network) -> Path:
    return _folder(net, "HQ") / "keys" / "ca.crt"


def _client(net: Network, site: str) -> ssl.SSLContext:
    k = _folder(net, site) / "keys"
    return client_context(
        (k / "tls.crt").read_bytes(),
        (k / "tls.key").read_bytes(),
        _ca(net).read_bytes(),
        expect_site="HQ",
    )


async def _timestamp(net: Network, site: str, digest: bytes) -> bytes:
    """HQ's token over ``digest`` from /v1/timestamp, asked by ``site``."""
    url = f"https://127.0.0.1:{net.sites['HQ'].port}/v1/timestamp"
    body = frame([tsa_request(digest, nonce=7)])
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_client(net, site))) as s,
        s.post(
            url,
            data=body,
            headers={"Content-Type": REQUEST_MEDIA_TYPE},
        ) as r,
    ):
        status, answer = r.status, await r.read()
    await asyncio.sleep(0.25)  # let the TLS transport close before the loop ends
    assert status == 200, answer
    token: bytes = parse_response(unframe_responses(answer, expected=1)[0])
    return token


async def _stamped_checkpoints(folder: Path) -> list[AuditCheckpoint]:
    ctx = await load_site(folder)
    try:
        return [cp for cp in await ctx.store.audit_checkpoints(after=0, limit=1000) if cp.token]
    finally:
        await ctx.store.close()


def _history(key: SigningKey, revoked_at: datetime) -> KeyHistory:
    """M-PARIS's signing key active from long ago, revoked at ``revoked_at``."""

    def at(serial: int, issued: datetime, state: KeyState) -> Directory:
        entry = SiteEntry(PARIS, "https://x", ((key.public, state),), (), ())
        return Directory(serial, issued, "HQ", (entry,))

    start = revoked_at - timedelta(days=30)
    return KeyHistory(PARIS, (at(1, start, KeyState.ACTIVE), at(2, revoked_at, KeyState.REVOKED)))


def _check(net: Network, cp: AuditCheckpoint, key: SigningKey, revoked_at: datetime) -> Report:
    report = Report()
    check_checkpoints(
        [cp],
        site=PARIS,
        keys={key.key_id: key.public},
        token_check=token_checker(_ca(net)),
        report=report,
        history=_history(key, revoked_at),
    )
    return report


def test_a_token_from_the_timestamp_service_does_not_time_a_checkpoint(net: Network) -> None:
    key = load_site_keys(_folder(net, PARIS) / "keys").signing
    now = datetime.now(UTC)
    h = b"\x11" * 32
    message = checkpoint_message(PARIS, 5, h, now)
    token = asyncio.run(_timestamp(net, "M-EVIL", hashlib.sha256(message).digest()))
    forged = AuditCheckpoint(5, h, now, key.key_id, sign(key, message), token)
    # The key is revoked an hour later: the forged checkpoint must not pass as made before.
    report = _check(net, forged, key, now + timedelta(hours=1))
    assert not report.ok, "a token from /v1/timestamp timed a forged checkpoint"
    (finding,) = report.findings
    assert "revoked" in finding.what and "no time-stamp token" in finding.what, finding.what
    assert any("witness" in w for w in report.warnings), report.warnings


def test_the_witness_token_of_a_genuine_checkpoint_counts(net: Network) -> None:
    folder = _folder(net, PARIS)
    deadline = time.monotonic() + WAIT_S
    while not (stamped := asyncio.run(_stamped_checkpoints(folder))):
        assert time.monotonic() < deadline, "M-PARIS got no checkpoint token from HQ's witness"
        time.sleep(0.3)
    cp = stamped[0]
    key = load_site_keys(folder / "keys").signing
    report = _check(net, cp, key, datetime.now(UTC) + timedelta(hours=1))
    assert report.ok and not report.warnings, (report.findings, report.warnings)
