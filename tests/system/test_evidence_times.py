"""Evidence signatures against trusted time (issue 9, hole 5): a bundle whose envelope
claims a ``created`` before its origin key was revoked, but whose only time-stamp token
is after the revocation, fails; so does one with no token at all; a bundle whose
tokens predate the revocation still verifies."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crypto.tsa import TimeStampAuthority
from crypto.x509 import SiteCA, issue_tsa_certificate
from envelope.open import parse_framed_head
from gateway.evidence.layout import (
    CA,
    DIRECTORIES,
    ENVELOPE,
    ENVELOPE_DIGESTED,
    KEYS,
    RECEIPTS,
    TIMESTAMPS,
    TRUST,
    involved_sites,
    public_keys,
)
from gateway.evidence.verify import FAILED, OK, verify_bundle
from gateway.site.context import load_site, read_trust
from routing.directory import KeyState, parse_directory, write_directory
from tests.system.test_evidence import POLICY, _copy, _rehash, _status, bundles

__all__ = ["bundles"]  # the module fixture: a network, two messages, their bundles


async def _revoke_origin_key(hq: Path, bundle: Path, at: datetime) -> None:
    """Add to ``bundle`` a directory version HQ signs at ``at`` revoking M-PARIS's
    signing keys (as HQ publishes a revocation), and list it in keys.json."""
    ctx = await load_site(hq)
    try:
        assert ctx.directory_key is not None
        trust = read_trust(hq / "keys")
        held = [
            parse_directory(p.read_bytes(), trust) for p in (bundle / DIRECTORIES).glob("*.xml")
        ]
        latest = max([*held, ctx.directory], key=lambda d: d.serial)
        sites = tuple(
            replace(e, signing=tuple((k, KeyState.REVOKED) for k, _ in e.signing))
            if e.site == "M-PARIS"
            else e
            for e in latest.sites
        )
        revoking = replace(latest, serial=latest.serial + 1, issued=at, sites=sites)
        raw = write_directory(revoking, ctx.directory_key)
    finally:
        await ctx.store.close()
    (bundle / DIRECTORIES / f"{revoking.serial}.xml").write_bytes(raw)
    directories = [
        parse_directory(p.read_bytes(), trust) for p in (bundle / DIRECTORIES).glob("*.xml")
    ]
    message = parse_framed_head((bundle / ENVELOPE).read_bytes())[0]
    receipt = parse_framed_head((bundle / RECEIPTS / "M-HANOI.vlz").read_bytes())[0]
    keys = public_keys(directories, involved_sites(message, receipt))
    (bundle / KEYS).write_text(json.dumps(keys))
    assert (bundle / TRUST).is_file()


def _late_token(hq: Path, bundle: Path, at: datetime) -> None:
    """Replace the envelope's tokens by one made at ``at`` (under HQ's CA)."""
    keys = hq / "keys"
    ca = SiteCA.from_pem((keys / "ca.crt").read_bytes(), (keys / "ca.key").read_bytes())
    cert, key = issue_tsa_certificate(ca, "Valise late TSA", now=at - timedelta(minutes=1))
    tsa = TimeStampAuthority(cert, key, policy=POLICY)
    for kind in ("sent", "relayed"):
        (bundle / TIMESTAMPS / f"{kind}.tsr").unlink(missing_ok=True)
    digest = hashlib.sha256((bundle / ENVELOPE_DIGESTED).read_bytes()).digest()
    (bundle / TIMESTAMPS / "sent.tsr").write_bytes(tsa.issue(digest, serial=4242, now=at))
    (bundle / "certs" / "tsa-9.crt").write_bytes(cert)
    assert (bundle / CA).is_file()


def test_a_token_after_the_revocation_fails_whatever_created_says(
    bundles: tuple[Path, Path, str], tmp_path: Path
) -> None:
    hq = bundles[0].parent / "net" / "HQ"
    bundle = _copy(bundles[0], tmp_path)
    revoked_at = datetime.now(UTC).replace(microsecond=0)
    asyncio.run(_revoke_origin_key(hq, bundle, revoked_at))
    _late_token(hq, bundle, revoked_at + timedelta(minutes=5))
    _rehash(bundle)
    result = verify_bundle(bundle)
    assert not result.ok, "a signature whose only token postdates the revocation verified"
    status = _status(result)
    assert status["origin-signature"][0] == OK  # in force at the created it claims...
    assert status["timestamp sent.tsr"][0] == OK  # ...and a good token...
    assert status["signing-time"][0] == FAILED, status  # ...made after the revocation
    assert "revoked" in status["signing-time"][1]


def test_a_revoked_key_without_a_token_fails(
    bundles: tuple[Path, Path, str], tmp_path: Path
) -> None:
    hq = bundles[0].parent / "net" / "HQ"
    bundle = _copy(bundles[0], tmp_path)
    asyncio.run(_revoke_origin_key(hq, bundle, datetime.now(UTC).replace(microsecond=0)))
    for kind in ("sent", "relayed"):
        (bundle / TIMESTAMPS / f"{kind}.tsr").unlink()
    _rehash(bundle)
    result = verify_bundle(bundle)
    assert not result.ok, "a revoked key's signature without any token verified"
    status = _status(result)
    assert status["signing-time"][0] == FAILED, status
    assert "no time-stamp token" in status["signing-time"][1]


def test_tokens_before_the_revocation_still_verify(
    bundles: tuple[Path, Path, str], tmp_path: Path
) -> None:
    hq = bundles[0].parent / "net" / "HQ"
    bundle = _copy(bundles[0], tmp_path)
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)
    asyncio.run(_revoke_origin_key(hq, bundle, later))
    _rehash(bundle)
    result = verify_bundle(bundle)
    assert result.ok, _status(result)
    assert "token time" in _status(result)["signing-time"][1]
