"""Evidence bundles on a real network: export at the origin, verify offline, refuse tampering.

A document goes M-PARIS -> HQ -> M-HANOI and its receipt comes back. The time-stamp
tokens are made here with a TSA certificate issued under HQ's site CA and stored at the
origin (store.timestamp_add), as HQ's time-stamping service does; a token that service
stored already for the same kind and digest is kept as it is.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.tsa import TimeStampAuthority
from crypto.x509 import SiteCA, issue_tsa_certificate
from envelope.open import parse_framed_head
from gateway.demo.network import Network
from gateway.evidence.layout import MANIFEST
from gateway.evidence.verify import FAILED, OK, SKIPPED, Verification, verify_bundle
from gateway.relay.outbox import Document, send_documents
from gateway.site.context import load_site
from gateway.store.base import TimestampRecord
from tests.conftest import require_tool
from tests.support.cli import valise
from tests.system.test_relay import FAST

POLICY = "1.3.6.1.4.1.61441.1.1"


async def _send(origin: Path, to: str, text: str) -> str:
    ctx = await load_site(origin)
    try:
        return await send_documents(
            ctx,
            [to],
            [Document("note.txt", "text/plain", text.encode())],
            now=datetime.now(UTC),
            subject=text,
        )
    finally:
        await ctx.store.close()


async def _wait_receipt(origin: Path, mid: str, timeout: float = 60) -> bytes:
    ctx = await load_site(origin)
    try:
        deadline = time.monotonic() + timeout
        while (receipt := await ctx.store.receipt(mid)) is None:
            assert time.monotonic() < deadline, f"no receipt for {mid}"
            await asyncio.sleep(0.1)
        return receipt
    finally:
        await ctx.store.close()


async def _stamp(hq: Path, origin: Path, mid: str, serial: int) -> None:
    """Tokens sent / relayed over the envelope digest and delivered over the receipt's."""
    keys = hq / "keys"
    ca = SiteCA.from_pem((keys / "ca.crt").read_bytes(), (keys / "ca.key").read_bytes())
    now = datetime.now(UTC).replace(microsecond=0)
    cert, key = issue_tsa_certificate(ca, "Valise test TSA", now=now)
    tsa = TimeStampAuthority(cert, key, policy=POLICY)
    ctx = await load_site(origin)
    try:
        record = await ctx.store.get_envelope(mid)
        receipt = await ctx.store.receipt(mid)
        assert record is not None and receipt is not None
        receipt_digest = parse_framed_head(receipt)[0].digest
        at = datetime.now(UTC)
        wanted = [
            ("sent", record.digest),
            ("relayed", record.digest),
            ("delivered", receipt_digest),
        ]
        await ctx.store.timestamp_add(
            [
                TimestampRecord(mid, kind, digest, tsa.issue(digest, serial=serial + i, now=at), at)
                for i, (kind, digest) in enumerate(wanted)
            ]
        )
    finally:
        await ctx.store.close()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    """Two exported bundles (two messages M-PARIS -> M-HANOI), and the first's id."""
    root = tmp_path_factory.mktemp("evidence")
    with Network(root / "net", env=FAST) as net:
        paris, hq = net.sites["M-PARIS"].directory, net.sites["HQ"].directory
        ids = [asyncio.run(_send(paris, "M-HANOI", f"Note verbale {n}")) for n in (1, 2)]
        for n, mid in enumerate(ids):
            asyncio.run(_wait_receipt(paris, mid))
            asyncio.run(_stamp(hq, paris, mid, 1000 + 10 * n))
        out = []
        for n, mid in enumerate(ids):
            target = root / f"bundle-{n}"
            done = valise("evidence", mid, "--out", target, "--dir", paris)
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == str(target)
            out.append(target)
        # Refusals of the exporter, while the site is here.
        again = valise("evidence", ids[0], "--out", out[0], "--dir", paris)
        assert again.returncode == 3 and "not an empty folder" in again.stderr
        unknown = valise(
            "evidence", "0190a000-0000-7000-8000-000000000000", "--out", root / "x", "--dir", paris
        )
        assert unknown.returncode == 2 and "no envelope" in unknown.stderr
        assert not (root / "x").exists()
        # The relay's and the destination's copies, and the receipt as its sender holds it.
        receipt_id = parse_framed_head(asyncio.run(_wait_receipt(paris, ids[0])))[0]
        for name, site, mid in (
            ("at-hq", "HQ", ids[0]),
            ("at-hanoi", "M-HANOI", ids[0]),
            ("receipt-at-hanoi", "M-HANOI", receipt_id.head.routing.message_id),
        ):
            done = valise(
                "evidence", "export", mid, "--out", root / name, "--dir", net.sites[site].directory
            )
            assert done.returncode == 0, done.stderr
        yield out[0], out[1], ids[0]


def test_bundles_exported_elsewhere_verify_with_what_they_hold(
    bundles: tuple[Path, Path, str],
) -> None:
    root = bundles[0].parent
    hq, hanoi = verify_bundle(root / "at-hq"), verify_bundle(root / "at-hanoi")
    for result in (hq, hanoi):
        status = _status(result)
        assert result.ok, status
        assert status["receipt-signature"][0] == SKIPPED  # only the origin holds it
    assert "HQ at " in _status(hq)["hops"][1]
    assert "M-HANOI at " in _status(hanoi)["hops"][1]
    assert sorted(p.name for p in (root / "at-hanoi" / "hops").iterdir()) == [
        "message-01-HQ.xml",
        "message-02-M-HANOI.xml",
    ]
    # A receipt gets no receipt: the next hop's signed acknowledgement is its proof.
    receipt = verify_bundle(root / "receipt-at-hanoi")
    assert receipt.ok, _status(receipt)
    assert "acknowledged by HQ" in _status(receipt)["hops"][1]
    assert (root / "receipt-at-hanoi" / "hops" / "ack-HQ.json").is_file()


def _copy(bundle: Path, into: Path) -> Path:
    target = into / "bundle"
    shutil.copytree(bundle, target)
    return target


def _rehash(bundle: Path) -> None:
    """Rewrite MANIFEST.json to match the files, as a careful forger would."""
    try:
        manifest = json.loads((bundle / MANIFEST).read_bytes())
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict):
        manifest = {"format": "valise-evidence/1"}
    manifest["files"] = {
        p.relative_to(bundle).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _status(result: Verification) -> dict[str, tuple[str, str]]:
    return {c.name: (c.status, c.detail) for c in result.checks}


def test_exported_bundle_verifies_offline(bundles: tuple[Path, Path, str]) -> None:
    bundle, _, mid = bundles
    done = valise("evidence", "verify", bundle, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["message"] == mid
    status = {c["name"]: c["status"] for c in report["checks"]}
    for name in (
        "manifest",
        "trust-anchor",
        "directories",
        "envelope",
        "origin-signature",
        "receipt-signature[M-HANOI]",
        "receipt-content[M-HANOI]",
        "hops",
        "keys",
        "timestamp sent.tsr",
        "timestamp relayed.tsr",
        "timestamp delivered-M-HANOI.tsr",
        "certificates",
        "openssl-files",
        "delivery",
    ):
        assert status.get(name) == OK, (name, report)
    assert report["destinations"] == {"M-HANOI": "proved"}
    assert "delivery proved for M-HANOI (1 of 1)" in done.stderr
    trust = bundle / "directory" / "directory.pub"
    pinned = valise("evidence", "verify", bundle, "--trust", trust, "--ca", bundle / "certs/ca.crt")
    assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    assert "matches the one given" in pinned.stdout
    text = (bundle / "EXPLANATION.txt").read_text()
    assert mid in text and "M-PARIS" in text and "M-HANOI" in text
    assert "DELIVERY RECEIPT" in text and "envelope-sha256" in text


def test_verify_pins_refuse_another_trust_anchor(
    bundles: tuple[Path, Path, str], tmp_path: Path
) -> None:
    bundle = bundles[0]
    other = tmp_path / "other.pub"
    other.write_text("A" * 43 + "=\n")
    done = valise("evidence", "verify", bundle, "--trust", other)
    assert done.returncode == 1
    assert "trust-anchor" in done.stderr and "not the trust anchor given" in done.stderr


def test_openssl_checks_the_pieces_as_explained(bundles: tuple[Path, Path, str]) -> None:
    require_tool("openssl")
    bundle = bundles[0]
    commands = [
        line.strip().split()
        for line in (bundle / "EXPLANATION.txt").read_text().splitlines()
        if line.strip().startswith(("openssl ts ", "openssl verify ", "openssl pkeyutl "))
    ]
    kinds = {tuple(c[:2]) for c in commands}
    assert kinds == {("openssl", "ts"), ("openssl", "verify"), ("openssl", "pkeyutl")}
    assert sum(c[1] == "ts" for c in commands) == 3
    assert sum(c[1] == "pkeyutl" for c in commands) == 2
    for command in commands:
        run = subprocess.run(
            command, cwd=bundle, capture_output=True, text=True, check=False, timeout=60
        )
        said = run.stdout + run.stderr
        assert run.returncode == 0, (command, said)
        if command[1] == "ts":
            assert "Verification: OK" in said
        elif command[1] == "verify":
            assert said.strip().endswith(": OK")
        else:
            assert "Signature Verified Successfully" in said
    # And the digest the receipt names is the SHA-256 of envelope.digested.
    digest = hashlib.sha256((bundle / "envelope.digested").read_bytes()).hexdigest()
    receipt_xml = (bundle / "receipts" / "M-HANOI.xml").read_text()
    assert f"<envelope-sha256>{digest}</envelope-sha256>" in receipt_xml


def _envelope_payload_byte(b: Path) -> None:
    _flip(b / "envelope.vlz", len((b / "envelope.vlz").read_bytes()) - 1)


def _envelope_signed_field(b: Path) -> None:
    for name in ("envelope.vlz", "envelope.digested", "openssl/envelope.signed"):
        path = b / name
        data = path.read_bytes()
        assert b"<class>document</class>" in data
        path.write_bytes(data.replace(b"<class>document</class>", b"<class>documenx</class>"))


def _receipt_byte(b: Path) -> None:
    path = b / "receipts" / "M-HANOI.vlz"
    _flip(path, len(path.read_bytes()) - 5)


def _receipt_document(b: Path) -> None:
    path = b / "receipts" / "M-HANOI.xml"
    text = path.read_text()
    start = text.index("<envelope-sha256>") + len("<envelope-sha256>")
    digit = "1" if text[start] != "1" else "2"
    path.write_text(text[:start] + digit + text[start + 1 :])


def _token_byte(b: Path) -> None:
    path = b / "timestamps" / "sent.tsr"
    _flip(path, len(path.read_bytes()) // 2)


def _directory_byte(b: Path) -> None:
    path = sorted((b / "directory").glob("*.xml"))[-1]
    data = path.read_bytes()
    path.write_bytes(data.replace(b"https://127.0.0.1:", b"https://127.0.0.2:", 1))


def _hop_file(b: Path) -> None:
    path = sorted((b / "hops").glob("receipt-*.xml"))[0]
    path.write_bytes(path.read_bytes().replace(b'from="M-HANOI"', b'from="M-PARIS"'))


TAMPERS: list[tuple[str, Callable[[Path], None], str, str]] = [
    ("envelope-payload", _envelope_payload_byte, "envelope", "does not match the signed manifest"),
    ("envelope-signed", _envelope_signed_field, "origin-signature", "signature does not verify"),
    (
        "receipt-byte",
        _receipt_byte,
        "receipt-signature[M-HANOI]",
        "does not match the signed manifest",
    ),
    ("receipt-document", _receipt_document, "receipt-content[M-HANOI]", "is not the document"),
    ("token-byte", _token_byte, "timestamp sent.tsr", ""),
    ("directory-byte", _directory_byte, "directories", "does not verify"),
    ("hop-record", _hop_file, "hops", "is not the hop record"),
]


@pytest.mark.parametrize(
    ("mutate", "check", "reason"),
    [t[1:] for t in TAMPERS],
    ids=[t[0] for t in TAMPERS],
)
def test_tampering_is_refused_with_a_reason(
    bundles: tuple[Path, Path, str],
    tmp_path: Path,
    mutate: Callable[[Path], None],
    check: str,
    reason: str,
) -> None:
    bundle = _copy(bundles[0], tmp_path)
    mutate(bundle)
    # Without a new manifest, the packing list already says so.
    first = verify_bundle(bundle)
    assert _status(first)["manifest"][0] == FAILED
    # A forger who rewrites the manifest is caught by the signatures.
    _rehash(bundle)
    result = verify_bundle(bundle)
    status = _status(result)
    assert status["manifest"][0] == OK
    assert not result.ok
    assert status[check][0] == FAILED, status
    assert reason in status[check][1], status[check]
    done = valise("evidence", "verify", bundle)
    assert done.returncode == 1 and check in done.stderr


def test_a_removed_file_is_refused(bundles: tuple[Path, Path, str], tmp_path: Path) -> None:
    bundle = _copy(bundles[0], tmp_path)
    (bundle / "receipts" / "M-HANOI.vlz").unlink()
    status = _status(verify_bundle(bundle))
    assert status["manifest"] == (FAILED, "receipts/M-HANOI.vlz is listed but missing")
    # Dropped from the manifest too: delivery is then not proven, and the token over
    # the receipt can no longer be checked.
    _rehash(bundle)
    result = verify_bundle(bundle)
    status = _status(result)
    assert not result.ok
    assert status["receipt-signature"][0] == SKIPPED
    assert "delivery is not proven" in status["receipt-signature"][1]
    assert status["timestamp delivered-M-HANOI.tsr"][0] == FAILED
    assert status["delivery"][0] == SKIPPED and "no receipt: M-HANOI" in status["delivery"][1]
    assert result.destinations == {"M-HANOI": "no receipt"}


def test_another_messages_receipt_is_refused(
    bundles: tuple[Path, Path, str], tmp_path: Path
) -> None:
    bundle, other, mid = bundles
    bundle = _copy(bundle, tmp_path)
    for name in ("vlz", "digested", "xml", "key"):
        shutil.copy(other / "receipts" / f"M-HANOI.{name}", bundle / "receipts" / f"M-HANOI.{name}")
    for folder, pattern in (("hops", "receipt-*"), ("openssl", "receipt*")):
        for path in (bundle / folder).glob(pattern):
            path.unlink()
        for path in (other / folder).glob(pattern):
            shutil.copy(path, bundle / folder / path.name)
    _rehash(bundle)
    result = verify_bundle(bundle)
    status = _status(result)
    assert not result.ok
    assert status["receipt-signature[M-HANOI]"][0] == FAILED
    assert f"not {mid}" in status["receipt-signature[M-HANOI]"][1]
    assert result.destinations == {"M-HANOI": "receipt does not verify"}


def test_verify_of_a_missing_folder_is_a_usage_failure(tmp_path: Path) -> None:
    done = valise("evidence", "verify", tmp_path / "nothing")
    assert done.returncode == 3 and "not a folder" in done.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    done = valise("evidence", "verify", empty)
    assert done.returncode == 1 and "MANIFEST.json is missing" in done.stdout


GARBLE = st.one_of(
    st.binary(max_size=300),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
        max_leaves=12,
    ).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_garbled_bundles_give_a_report_never_a_crash(
    bundles: tuple[Path, Path, str], data: st.DataObject
) -> None:
    source = bundles[0]
    names = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    with tempfile.TemporaryDirectory() as tmp:
        bundle = _copy(source, Path(tmp))
        for name in data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3)):
            path = bundle / name
            how = data.draw(st.sampled_from(["replace", "flip", "truncate", "delete"]))
            content = path.read_bytes() if path.exists() else b""
            if how == "replace":
                path.write_bytes(data.draw(GARBLE))
            elif how == "flip" and content:
                _flip(path, data.draw(st.integers(0, len(content) - 1)))
            elif how == "truncate":
                path.write_bytes(content[: data.draw(st.integers(0, len(content)))])
            else:
                path.unlink(missing_ok=True)
        if data.draw(st.booleans()):
            _rehash(bundle)
        result = verify_bundle(bundle)
        assert isinstance(result, Verification)
        assert all(c.status in (OK, FAILED, SKIPPED) and c.detail for c in result.checks)
