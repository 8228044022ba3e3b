"""Our certificates and pins as OpenSSL reads them (the openssl tool, a real process):
tests/unit/test_x509.py checks the rest in process."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from crypto.random import FixedRandom
from crypto.x509 import SiteCA, certificate_pin, issue_site_certificate
from tests.conftest import NOW, require_tool


@pytest.fixture(scope="module")
def ca() -> SiteCA:
    return SiteCA.create(now=NOW, rng=FixedRandom(b"ca"))


@pytest.fixture(scope="module")
def paris(ca: SiteCA) -> tuple[bytes, bytes]:
    return issue_site_certificate(ca, "M-PARIS", now=NOW, rng=FixedRandom(b"paris"))


def test_issued_certificate_passes_openssl_strict_verify(
    ca: SiteCA, paris: tuple[bytes, bytes], tmp_path: Path
) -> None:
    require_tool("openssl")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "leaf.pem").write_bytes(paris[0])
    at = str(int((NOW + timedelta(days=1)).timestamp()))
    for purpose in ("sslclient", "sslserver"):
        out = subprocess.run(
            [
                *("openssl", "verify", "-x509_strict", "-attime", at, "-purpose", purpose),
                *("-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "leaf.pem")),
            ],
            capture_output=True,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr


def test_pin_matches_openssl(paris: tuple[bytes, bytes]) -> None:
    require_tool("openssl")
    spki = subprocess.run(
        ["openssl", "x509", "-pubkey", "-noout"], input=paris[0], capture_output=True, check=True
    ).stdout
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "DER"],
        input=spki,
        capture_output=True,
        check=True,
    ).stdout
    assert certificate_pin(paris[0]) == hashlib.sha256(der).hexdigest()
