"""crypto.tsa and crypto.tsa_verify against the real tool: `openssl ts` verifies our tokens.

The certificates start a day before the real clock, so that ``openssl ts -verify`` (which
checks validity at the current time unless told ``-attime``) and ``openssl ts -reply``
(which stamps the current time) both work on any day within the TSA certificate's life.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crypto.random import FixedRandom
from crypto.tsa import (
    TimeStampAuthority,
    TimestampError,
    parse_request,
    response,
)
from crypto.tsa_verify import verify_token
from crypto.x509 import SiteCA, issue_tsa_certificate
from tests.conftest import require_tool

POLICY = "1.3.6.1.4.1.61441.1.1"
DATA = b"<Envelope>a relayed envelope, as stored</Envelope>\n"
START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
AT = START + timedelta(hours=20, microseconds=250_000)


@dataclass(frozen=True)
class Pki:
    ca: SiteCA
    tsa: TimeStampAuthority
    tsa_key: bytes
    dir: Path

    def write(self, name: str, content: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(content)
        return path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    require_tool("openssl")
    ca = SiteCA.create(now=START, rng=FixedRandom(b"openssl-ca"))
    cert, key = issue_tsa_certificate(ca, "Valise HQ TSA", now=START, rng=FixedRandom(b"t"))
    tsa = TimeStampAuthority(
        cert,
        key,
        policy=POLICY,
        accuracy=timedelta(seconds=1),
        fraction_digits=3,
        include_tsa_name=True,
    )
    pki = Pki(ca, tsa, key, tmp_path)
    pki.write("ca.pem", ca.cert_pem)
    pki.write("tsa.pem", tsa.cert_pem)
    pki.write("tsa.key", key)
    pki.write("data.xml", DATA)
    pki.write("other.xml", DATA + b"tampered")
    return pki


def _openssl(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        timeout=60,
    )


def _verify(
    pki: Pki, *args: str | Path, data: str = "data.xml"
) -> subprocess.CompletedProcess[str]:
    return _openssl("ts", "-verify", "-data", data, *args, "-CAfile", "ca.pem", cwd=pki.dir)


def _ok(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode == 0 and "Verification: OK" in result.stdout


def test_openssl_version_is_known(pki: Pki) -> None:
    result = _openssl("version", cwd=pki.dir)
    assert result.returncode == 0 and result.stdout.startswith("OpenSSL "), result.stderr


def test_openssl_verifies_a_response(pki: Pki) -> None:
    token = pki.tsa.issue(hashlib.sha256(DATA).digest(), serial=1001, now=AT, nonce=42)
    pki.write("resp.tsr", response(token))
    result = _verify(pki, "-in", "resp.tsr")
    assert _ok(result), result.stdout + result.stderr
    # At genTime too (how an archived token is checked after its certificate expired).
    result = _verify(pki, "-in", "resp.tsr", "-attime", str(int(AT.timestamp())))
    assert _ok(result), result.stdout + result.stderr


def test_openssl_verifies_a_raw_token(pki: Pki) -> None:
    """The token as stored with the message, without the TimeStampResp around it."""
    token = pki.tsa.issue(hashlib.sha256(DATA).digest(), serial=1002, now=AT)
    pki.write("token.der", token)
    result = _verify(pki, "-in", "token.der", "-token_in")
    assert _ok(result), result.stdout + result.stderr


def test_openssl_refuses_other_data(pki: Pki) -> None:
    token = pki.tsa.issue(hashlib.sha256(DATA).digest(), serial=1003, now=AT)
    pki.write("resp.tsr", response(token))
    pki.write("token.der", token)
    for args in (("-in", "resp.tsr"), ("-in", "token.der", "-token_in")):
        result = _verify(pki, *args, data="other.xml")
        assert result.returncode != 0 and "Verification: FAILED" in result.stdout, result.stdout
        assert "message imprint mismatch" in result.stderr


def test_openssl_refuses_another_ca(pki: Pki) -> None:
    rogue_ca = SiteCA.create(now=START, rng=FixedRandom(b"rogue"))
    cert, key = issue_tsa_certificate(rogue_ca, "Valise HQ TSA", now=START)
    rogue = TimeStampAuthority(cert, key, policy=POLICY)
    pki.write("rogue.tsr", response(rogue.issue(hashlib.sha256(DATA).digest(), serial=1, now=AT)))
    result = _verify(pki, "-in", "rogue.tsr")
    assert result.returncode != 0 and "Verification: FAILED" in result.stdout, result.stdout


def test_openssl_verifies_a_token_without_certificate_given_the_tsa_cert(pki: Pki) -> None:
    token = pki.tsa.issue(hashlib.sha256(DATA).digest(), serial=1004, now=AT, cert_req=False)
    pki.write("token.der", token)
    result = _verify(pki, "-in", "token.der", "-token_in", "-untrusted", "tsa.pem")
    assert _ok(result), result.stdout + result.stderr
    result = _verify(pki, "-in", "token.der", "-token_in")
    assert not _ok(result)


def test_openssl_prints_the_response(pki: Pki) -> None:
    token = pki.tsa.issue(hashlib.sha256(DATA).digest(), serial=0x1005, now=AT, nonce=0xBEEF)
    pki.write("resp.tsr", response(token))
    result = _openssl("ts", "-reply", "-in", "resp.tsr", "-text", cwd=pki.dir)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "Status: Granted." in text
    assert f"Policy OID: {POLICY}" in text
    assert "Hash Algorithm: sha256" in text
    assert "Serial number: 0x1005" in text
    assert "Nonce: 0xBEEF" in text
    assert "Accuracy: 0x01 seconds" in text
    assert f"Time stamp: {AT:%b} {AT.day:2d} {AT:%H:%M:%S}.25 {AT.year} GMT" in text
    assert "TSA: DirName:/CN=Valise HQ TSA" in text
    # And the token alone, as a PKCS#7 file.
    pki.write("token.der", token)
    result = _openssl("ts", "-reply", "-in", "token.der", "-token_in", "-text", cwd=pki.dir)
    assert result.returncode == 0 and "Serial number: 0x1005" in result.stdout, result.stderr


def test_answering_an_openssl_query(pki: Pki) -> None:
    """openssl's request -> parse_request -> issue -> response -> openssl checks the nonce."""
    result = _openssl(
        "ts", "-query", "-data", "data.xml", "-sha256", "-cert", "-out", "req.tsq", cwd=pki.dir
    )
    assert result.returncode == 0, result.stderr
    request = parse_request((pki.dir / "req.tsq").read_bytes(), policy=POLICY)
    assert request.imprint == hashlib.sha256(DATA).digest()
    assert request.nonce is not None and request.cert_req
    token = pki.tsa.issue(
        request.imprint, serial=1006, now=AT, nonce=request.nonce, cert_req=request.cert_req
    )
    pki.write("resp.tsr", response(token))
    result = _openssl(
        "ts", "-verify", "-queryfile", "req.tsq", "-in", "resp.tsr", "-CAfile", "ca.pem",
        cwd=pki.dir,
    )  # fmt: skip
    assert _ok(result), result.stdout + result.stderr
    # Another nonce: openssl notices.
    token = pki.tsa.issue(request.imprint, serial=1007, now=AT, nonce=request.nonce + 1)
    pki.write("resp2.tsr", response(token))
    result = _openssl(
        "ts", "-verify", "-queryfile", "req.tsq", "-in", "resp2.tsr", "-CAfile", "ca.pem",
        cwd=pki.dir,
    )  # fmt: skip
    assert not _ok(result) and "nonce mismatch" in result.stderr


def _openssl_tsa_config(pki: Pki, ess_cert_id_alg: str) -> Path:
    (pki.dir / "serial").write_text("0100\n")
    return pki.write(
        "tsa.cnf",
        f"""
[ tsa ]
default_tsa = valise
[ valise ]
serial = {pki.dir / "serial"}
signer_cert = {pki.dir / "tsa.pem"}
signer_key = {pki.dir / "tsa.key"}
signer_digest = sha256
default_policy = {POLICY}
other_policies = 1.3.6.1.4.1.61441.1.2
digests = sha256
accuracy = secs:1, millisecs:500, microsecs:100
clock_precision_digits = 3
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = {ess_cert_id_alg}
""".encode(),
    )


def test_we_verify_openssl_tokens(pki: Pki) -> None:
    """OpenSSL as the TSA (with our TSA certificate and key); verify_token accepts its token."""
    _openssl_tsa_config(pki, "sha256")  # signingCertificateV2, as RFC 5816 wants
    steps = [
        ("ts", "-query", "-data", "data.xml", "-sha256", "-cert", "-out", "req.tsq"),
        ("ts", "-reply", "-queryfile", "req.tsq", "-config", "tsa.cnf", "-out", "resp.tsr"),
        ("ts", "-reply", "-in", "resp.tsr", "-token_out", "-out", "token.der"),
    ]
    for step in steps:
        result = _openssl(*step, cwd=pki.dir)
        assert result.returncode == 0, result.stderr
    request = parse_request((pki.dir / "req.tsq").read_bytes())
    token = (pki.dir / "token.der").read_bytes()
    before = datetime.now(UTC)
    info = verify_token(token, hashlib.sha256(DATA).digest(), pki.ca.cert_pem, nonce=request.nonce)
    assert info.serial == 0x101 and info.policy == POLICY  # openssl counts up, then stamps
    assert info.accuracy == timedelta(seconds=1, milliseconds=500, microseconds=100)
    assert abs(info.gen_time - before) < timedelta(minutes=5)
    assert info.tsa_name == "CN=Valise HQ TSA"
    with pytest.raises(TimestampError, match="digest"):
        verify_token(token, hashlib.sha256(b"other").digest(), pki.ca.cert_pem)


def test_openssl_tokens_with_only_ess_cert_id_v1_are_refused(pki: Pki) -> None:
    """openssl's default (SHA-1 ESSCertID) is not what we accept: RFC 5816's v2 only."""
    _openssl_tsa_config(pki, "sha1")
    for step in (
        ("ts", "-query", "-data", "data.xml", "-sha256", "-cert", "-out", "req.tsq"),
        ("ts", "-reply", "-queryfile", "req.tsq", "-config", "tsa.cnf", "-token_out",
         "-out", "token.der"),
    ):  # fmt: skip
        result = _openssl(*step, cwd=pki.dir)
        assert result.returncode == 0, result.stderr
    token = (pki.dir / "token.der").read_bytes()
    with pytest.raises(TimestampError, match="signingCertificateV2"):
        verify_token(token, hashlib.sha256(DATA).digest(), pki.ca.cert_pem)
