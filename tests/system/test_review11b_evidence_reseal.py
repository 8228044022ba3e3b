"""Review 11b: the evidence bundle of a circular re-sealed for one destination.

M-PARIS sends X to [HQ, M-HANOI] while M-HANOI is down; HQ's receipt names the digest
of the copy first sent (D1). M-HANOI's key is revoked, M-PARIS re-seals X for it (a new
copy, digest D2, which M-HANOI receipts). Both destinations have a genuine receipt, the
store says delivered 2 of 2, yet the evidence bundle M-PARIS exported held only the
stored copy (D2): HQ's genuine receipt names D1 and ``evidence verify`` reported it as
"a receipt for another envelope", failing the bundle. Evidence of a delivery the store
itself verified (envelopes.superseded) could not be proven.

Fixed (valise-evidence/3): the store keeps the head of a replaced copy (schema 12) and
the bundle holds it under copies/, checked as a re-seal of the envelope by its origin.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from envelope.framing import MAGIC
from envelope.open import parse_framed_head
from gateway.cli.main import main
from gateway.demo.network import Network
from gateway.evidence.layout import FORMAT, MANIFEST
from gateway.evidence.verify import FAILED, OK, SKIPPED, Verification, verify_bundle
from gateway.store.base import Store
from tests.contract.helpers import T0, mid, record
from tests.system.test_circulars import by_site, status
from tests.system.test_key_rotation import ENV as KEYS_ENV
from tests.system.test_key_rotation import _active_enc_elsewhere, active, valise
from tests.system.test_receipt_relay import World, send, wait_until

V2_BUNDLE = Path(__file__).parents[1] / "vectors" / "evidence-v2" / "bundle"


@dataclass
class Resealed:
    x: str
    bundle: Path  # exported with the earlier copy's head kept (store schema 12)
    legacy: Path  # exported after that head was dropped (a copy replaced before 12)
    other: Path  # another message's bundle


def _export(paris: Path, message_id: str, out: Path) -> Path:
    done = CliRunner().invoke(
        main, ["evidence", "export", message_id, "--out", str(out), "--dir", str(paris)]
    )
    assert done.exit_code == 0, done.output
    return out


@pytest.fixture(scope="module")
def resealed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Resealed]:
    root = tmp_path_factory.mktemp("reseal")
    with Network(root / "net", env=KEYS_ENV) as net:
        w = World(net)
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        old_enc = active(hanoi.directory, "encryption")
        hanoi.stop()
        x = send(w, "M-PARIS", ["HQ", "M-HANOI"])
        wait_until("HQ's receipt at M-PARIS", lambda: status(w, "M-PARIS", x)["receipts"] == 1)
        valise("keys", "revoke", old_enc, "--reason", "drill: key lost", "--dir", str(hq.directory))
        wait_until(
            "HQ to hold M-HANOI's copy",
            lambda: by_site(status(w, "HQ", x))["M-HANOI"]["state"] == "held",
        )
        paris.stop()
        hanoi.start()
        wait_until(
            "M-HANOI's new encryption key at HQ",
            lambda: _active_enc_elsewhere(hq.directory, "M-HANOI") not in (None, old_enc),
        )
        shutil.copyfile(hq.directory / "directory.xml", paris.directory / "directory.xml")
        out = valise("queue", "reseal", x, "--dir", str(paris.directory))
        assert f"{x}\tresealed" in out.stdout, out.stdout
        paris.start()
        wait_until("M-HANOI's receipt", lambda: status(w, "M-PARIS", x)["receipts"] == 2)
        assert status(w, "M-PARIS", x)["delivered"] is True
        y = send(w, "M-PARIS", ["HQ"])
        wait_until("HQ's receipt of Y", lambda: status(w, "M-PARIS", y)["receipts"] == 1)
        bundle = _export(paris.directory, x, root / "bundle")
        other = _export(paris.directory, y, root / "other")
        db = sqlite3.connect(paris.directory / "store.sqlite")
        with db:
            db.execute("DELETE FROM superseded_heads WHERE message_id = ?", (x,))
        db.close()
        legacy = _export(paris.directory, x, root / "legacy")
    yield Resealed(x, bundle, legacy, other)


def _status(result: Verification) -> dict[str, tuple[str, str]]:
    return {c.name: (c.status, c.detail) for c in result.checks}


def test_evidence_of_a_circular_resealed_for_one_destination_proves_both(
    resealed: Resealed,
) -> None:
    bundle = resealed.bundle
    proved = verify_bundle(bundle)
    failed = [(c.name, c.detail) for c in proved.checks if c.status == "failed"]
    # Both receipts are genuine and the store counted both: the bundle must prove both.
    assert proved.destinations == {"HQ": "proved", "M-HANOI": "proved"}, failed
    assert proved.ok, failed
    assert json.loads((bundle / MANIFEST).read_text())["format"] == FORMAT
    envelope = parse_framed_head((bundle / "envelope.vlz").read_bytes())[0]
    (head,) = (bundle / "copies").glob("*.head")
    copy = parse_framed_head(head.read_bytes())[0]
    assert head.name == f"{copy.digest.hex()}.head" and copy.digest != envelope.digest
    digested = (bundle / "copies" / f"{copy.digest.hex()}.digested").read_bytes()
    assert digested == _digested(head)
    checks = _status(proved)
    assert checks["copies"][0] == OK and "1 earlier copy" in checks["copies"][1]
    assert f"received the earlier copy copies/{head.name}" in checks["receipt-content[HQ]"][1]
    assert checks["receipt-content[M-HANOI]"][0] == OK
    assert "HQ by its receipt of the earlier copy" in checks["delivery"][1]
    assert "earlier copy copies/" in checks["signing-time"][1]
    text = (bundle / "EXPLANATION.txt").read_text()
    assert "EARLIER COPIES OF THE ENVELOPE" in text and f"copies/{head.name}" in text


def _digested(head: Path) -> bytes:
    from envelope.digested import digested_bytes

    return digested_bytes(parse_framed_head(head.read_bytes())[0])


def _rehash(bundle: Path) -> None:
    """Rewrite MANIFEST.json to match the files, as a careful forger would."""
    manifest = json.loads((bundle / MANIFEST).read_bytes())
    manifest["files"] = {
        p.relative_to(bundle).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def _copy(bundle: Path, into: Path) -> Path:
    target = into / "bundle"
    shutil.copytree(bundle, target)
    return target


def _refused(bundle: Path, reason: str) -> Verification:
    _rehash(bundle)
    result = verify_bundle(bundle)
    checks = _status(result)
    assert not result.ok and checks["copies"][0] == FAILED, checks
    assert reason in checks["copies"][1], checks["copies"]
    return result


def test_without_the_copy_the_receipt_is_for_another_envelope(
    resealed: Resealed, tmp_path: Path
) -> None:
    bundle = _copy(resealed.bundle, tmp_path)
    shutil.rmtree(bundle / "copies")
    _rehash(bundle)
    result = verify_bundle(bundle)
    checks = _status(result)
    assert not result.ok and checks["copies"][0] == SKIPPED
    assert "it is a receipt for another envelope" in checks["receipt-content[HQ]"][1]
    assert result.destinations == {"HQ": "receipt does not verify", "M-HANOI": "proved"}


def test_a_copy_of_another_message_or_a_bent_copy_fails(resealed: Resealed, tmp_path: Path) -> None:
    # Another message's envelope head, filed as the copy HQ's receipt names.
    bundle = _copy(resealed.bundle, tmp_path / "a")
    (head,) = (bundle / "copies").glob("*.head")
    other = (resealed.other / "envelope.vlz").read_bytes()
    parsed, end = parse_framed_head(other)
    head.write_bytes(other[:end])
    result = _refused(bundle, "its digest is")
    assert result.destinations["HQ"] == "receipt does not verify"
    # Filed under its own digest, it is not a re-seal of this envelope.
    bundle = _copy(resealed.bundle, tmp_path / "b")
    (head,) = (bundle / "copies").glob("*.head")
    stem = parsed.digest.hex()
    head.unlink()
    (bundle / "copies" / f"{stem}.head").write_bytes(other[:end])
    (bundle / "copies" / f"{stem}.digested").write_bytes(
        _digested(bundle / "copies" / f"{stem}.head")
    )
    _refused(bundle, "is held with message_id")
    # The whole envelope instead of its head; the envelope itself as a copy; a bad name.
    bundle = _copy(resealed.bundle, tmp_path / "c")
    (head,) = (bundle / "copies").glob("*.head")
    head.write_bytes(head.read_bytes() + b"segments")
    _refused(bundle, "it holds more than a framed head")
    bundle = _copy(resealed.bundle, tmp_path / "d")
    envelope = (bundle / "envelope.vlz").read_bytes()
    e_parsed, e_end = parse_framed_head(envelope)
    (bundle / "copies" / f"{e_parsed.digest.hex()}.head").write_bytes(envelope[:e_end])
    (bundle / "copies" / f"{e_parsed.digest.hex()}.digested").write_bytes(
        (bundle / "envelope.digested").read_bytes()
    )
    _refused(bundle, "it is the envelope itself")
    bundle = _copy(resealed.bundle, tmp_path / "e")
    (head,) = (bundle / "copies").glob("*.head")
    head.rename(head.with_name(head.name.upper().replace(".HEAD", ".head")))
    _refused(bundle, "is not named after a digest")


def test_a_copy_whose_signature_is_bent_fails(resealed: Resealed, tmp_path: Path) -> None:
    bundle = _copy(resealed.bundle, tmp_path)
    (head,) = (bundle / "copies").glob("*.head")
    data = bytearray(head.read_bytes())
    i = data.index(b"</signature>") - 20  # inside the base64 of the origin's signature
    data[i] = ord("A") if data[i] != ord("A") else ord("B")
    bent = parse_framed_head(bytes(data))[0]
    # Filed under its new digest, with its digested range: only the signature is wrong.
    head.unlink()
    (bundle / "copies" / f"{bent.digest.hex()}.head").write_bytes(bytes(data))
    (bundle / "copies" / f"{bent.digest.hex()}.digested").write_bytes(
        _digested(bundle / "copies" / f"{bent.digest.hex()}.head")
    )
    _refused(bundle, "signature does not verify")


def test_a_copy_replaced_before_schema_12_withholds_the_receipts_content(
    resealed: Resealed,
) -> None:
    bundle = resealed.legacy
    assert not (bundle / "copies").exists()
    assert not (bundle / "receipts" / "HQ.xml").exists()
    assert not (bundle / "receipts" / "HQ.key").exists()
    assert (bundle / "receipts" / "HQ.vlz").exists()
    result = verify_bundle(bundle)
    checks = _status(result)
    assert result.ok, checks
    assert result.destinations == {
        "HQ": "receipt signed, content not disclosed",
        "M-HANOI": "proved",
    }
    text = (bundle / "EXPLANATION.txt").read_text()
    assert "this site kept no head of that copy (replaced before store schema 12)" in text


def test_a_v2_bundle_still_verifies() -> None:
    assert json.loads((V2_BUNDLE / MANIFEST).read_text())["format"] == "valise-evidence/2"
    result = verify_bundle(V2_BUNDLE)
    checks = _status(result)
    assert result.ok, checks
    assert checks["copies"][0] == SKIPPED
    assert result.destinations == {"HQ": "proved", "M-HANOI": "proved"}
    assert checks["delivery"] == (OK, "proved by receipt: HQ, M-HANOI (2 of 2)")


async def test_the_store_keeps_the_head_of_a_replaced_copy(store: Store) -> None:
    head = MAGIC + (7).to_bytes(4, "big") + b"<head/>"
    first = record(1, data=head + b"segments")
    await store.accept(first, next_hops=["HQ"], deliver_here=False, hop_ack=None, now=T0)
    assert await store.superseded_heads(mid(1)) == {}
    new = bytes([9]) * 32
    moved = await store.replace_sealed(
        mid(1),
        data=b"another copy",
        digest=new,
        chain=b"",
        hop_ack=None,
        expected_digest=first.digest,
        requeue=("queued",),
        held_for=None,
        now=T0,
        reason="re-sealed",
    )
    assert moved == 1
    assert await store.superseded_heads(mid(1)) == {first.digest: head}
    assert await store.superseded_heads(mid(2)) == {}
