"""What an operator sees of a circular (issue 11), on real processes and real stores:
``valise status`` (table and --json), ``queue list/show/shape`` counting destinations,
and evidence bundles with one receipt per destination.

M-PARIS sends one document to HQ and M-HANOI while M-HANOI is down, and one to M-ROME.
With HQ's receipt in, every view says 1 of 2 and names M-HANOI; a bundle exported then
proves HQ's delivery and says M-HANOI has no receipt. M-HANOI comes back: the bundle
holds both receipts and proves both. Then the attacks on a bundle: a receipt from a
site that is not a destination (M-ROME's, for the other message), a receipt filed
twice, receipts swapped between destinations, and a receipt signed by M-HANOI's real
key naming another envelope digest: each fails, saying why, and none is counted as a
proven delivery. A valise-evidence/1 bundle (tests/vectors/evidence-v1) still verifies.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.tsa import TimeStampAuthority
from crypto.x509 import SiteCA, issue_tsa_certificate
from envelope.digested import digested_bytes
from envelope.open import parse_framed_head
from gateway.cli.main import main
from gateway.demo.network import Network
from gateway.evidence.export import _open_receipt
from gateway.evidence.layout import FORMAT, FORMAT_V1, MANIFEST
from gateway.evidence.verify import FAILED, OK, SKIPPED, Verification, verify_bundle
from gateway.service.doctor_checks import Status
from gateway.service.doctor_queue import queue_checks
from gateway.store.base import TimestampRecord
from tests.conftest import require_tool
from tests.system.test_evidence import POLICY
from tests.system.test_receipt_relay import ENV, World, forged_receipt, on_site, send
from tests.system.test_receipt_relay import wait_until as _wait_until

V1_BUNDLE = Path(__file__).parents[1] / "vectors" / "evidence-v1" / "bundle"


def cli(*args: str | Path) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(*args: str | Path) -> str:
    out = cli(*args)
    assert out.exit_code == 0, out.output
    text: str = out.stdout
    return text


def as_json(*args: str | Path) -> Any:
    return json.loads(ok(*args, "--json"))


@dataclass
class Seen:
    """What the views said at 1 of 2, and the bundles."""

    x: str  # the circular M-PARIS -> HQ, M-HANOI
    y: str  # M-PARIS -> M-ROME
    root: Path
    partial: dict[str, Any] = field(default_factory=dict)
    bundles: dict[str, Path] = field(default_factory=dict)
    forged: bytes = b""


def wait_until(what: str, test: Any) -> None:
    _wait_until(what, test)


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seen]:
    root = tmp_path_factory.mktemp("circularviews")
    net = Network(root / "net", ("M-PARIS", "M-HANOI", "M-ROME"), env=ENV)
    try:
        net.start()
        world = World(net)
        paris, hq = world.folder("M-PARIS"), world.folder("HQ")
        net.sites["M-HANOI"].stop()
        x = send(world, "M-PARIS", ["HQ", "M-HANOI"])
        y = send(world, "M-PARIS", ["M-ROME"])
        wait_until("HQ's receipt", lambda: as_json("status", x, "--dir", paris)["receipts"] == 1)
        wait_until("M-ROME's receipt", lambda: as_json("status", y, "--dir", paris)["delivered"])
        wait_until(
            "HQ to defer M-HANOI",
            lambda: (
                {
                    d["site"]: d["state"] for d in as_json("status", x, "--dir", hq)["destinations"]
                }.get("M-HANOI")
                == "deferred"
            ),
        )
        s = Seen(x, y, root)
        p = s.partial
        p["status"] = ok("status", x, "--dir", paris)
        p["status_json"] = as_json("status", x, "--dir", paris)
        for site, folder in (("paris", paris), ("hq", hq)):
            p[f"list_{site}"] = as_json("queue", "list", "--dir", folder)
            p[f"list_{site}_text"] = ok("queue", "list", "--dir", folder)
            p[f"show_{site}"] = as_json("queue", "show", x, "--dir", folder)
            p[f"show_{site}_text"] = ok("queue", "show", x, "--dir", folder)
            p[f"shape_{site}"] = as_json("queue", "shape", "--dir", folder)
            p[f"shape_{site}_messages"] = as_json("queue", "shape", "--messages", "--dir", folder)
        p["doctor"] = on_site(
            world,
            "M-PARIS",
            lambda ctx: queue_checks(
                ctx.store, ctx.config, ctx.directory, datetime.now(UTC) + timedelta(hours=2)
            ),
        )
        ok("evidence", "export", x, "--out", root / "partial", "--dir", paris)
        s.bundles["partial"] = root / "partial"

        net.sites["M-HANOI"].start()
        wait_until(
            "M-HANOI's receipt", lambda: as_json("status", x, "--dir", paris)["receipts"] == 2
        )
        on_site(world, "M-PARIS", lambda ctx: _stamp(hq, ctx, x))
        for name, mid in (("full", x), ("rome", y)):
            ok("evidence", "export", mid, "--out", root / name, "--dir", paris)
            s.bundles[name] = root / name
        ok("evidence", "export", x, "--out", root / "at-hq", "--dir", hq)
        s.bundles["at-hq"] = root / "at-hq"
        # A receipt M-HANOI signs with its real key, for x, naming another digest; and
        # what M-PARIS's key opens of it (the exporter's own opener).
        _, s.forged = forged_receipt(world, origin="M-HANOI", to=["M-PARIS"], in_reply_to=x)
        parsed = parse_framed_head(s.forged)[0]
        key, doc, _ = on_site(
            world,
            "M-PARIS",
            lambda ctx: _opened(s.forged, parsed, ctx),
        )
        s.partial["forged_key"], s.partial["forged_doc"] = key, doc
        yield s
    finally:
        net.close()


async def _stamp(hq: Path, ctx: Any, mid: str) -> None:
    """Tokens sent and relayed over the envelope's digest, and delivered over each
    destination's receipt, under HQ's CA (as test_evidence stamps one receipt)."""
    keys = hq / "keys"
    ca = SiteCA.from_pem((keys / "ca.crt").read_bytes(), (keys / "ca.key").read_bytes())
    now = datetime.now(UTC).replace(microsecond=0)
    cert, key = issue_tsa_certificate(ca, "Valise test TSA", now=now)
    tsa = TimeStampAuthority(cert, key, policy=POLICY)
    record = await ctx.store.get_envelope(mid)
    wanted = [("sent", record.digest), ("relayed", record.digest)]
    for d in await ctx.store.destinations(mid):
        data = await ctx.store.destination_receipt(mid, d.site)
        wanted.append(("delivered", parse_framed_head(data)[0].digest))
    at = datetime.now(UTC)
    await ctx.store.timestamp_add(
        [
            TimestampRecord(mid, kind, digest, tsa.issue(digest, serial=7000 + i, now=at), at)
            for i, (kind, digest) in enumerate(wanted)
        ]
    )


async def _opened(data: bytes, parsed: Any, ctx: Any) -> Any:
    return _open_receipt(data, parsed, "M-PARIS", ctx.keys.decryption)


def _by_site(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["site"]: d for d in info["destinations"]}


# -- status and queue at 1 of 2 --------------------------------------------------------


def test_status_shows_each_destination_with_its_receipt(seen: Seen) -> None:
    info = seen.partial["status_json"]
    assert (info["status"], info["receipts"], info["of"], info["delivered"]) == (
        "partially delivered",
        1,
        2,
        False,
    )
    assert info["outstanding"] == ["M-HANOI"]
    sites = _by_site(info)
    hq_receipt = sites["HQ"]["receipt"]
    assert sites["HQ"]["state"] == "delivered" and len(hq_receipt["sha256"]) == 64
    assert hq_receipt["at"] and sites["M-HANOI"]["receipt"] is None
    lines = seen.partial["status"].splitlines()
    assert lines[0] == f"{seen.x}  partially delivered (1 of 2); outstanding: M-HANOI (forwarded)"
    header = lines[1].split()
    assert header[:4] == ["SITE", "STATE", "VIA", "TRIES"] and "SHA-256" in header
    rows = {line.split()[0]: line for line in lines[2:4]}
    assert f"{hq_receipt['sha256'][:16]}…" in rows["HQ"]
    assert hq_receipt["at"] in rows["HQ"]
    assert rows["M-HANOI"].split()[1:3] == ["forwarded", "HQ"]


def test_queue_list_counts_the_destinations_through_each_hop(seen: Seen) -> None:
    p = seen.partial
    paris = {q["id"]: q for q in p["list_paris"]}
    assert paris[seen.x]["state"] == "forwarded" and paris[seen.x]["dests"] == "1/2"
    assert seen.y not in paris  # delivered: done
    assert "DESTS" in p["list_paris_text"].splitlines()[0]
    hq = {(q["id"], q["peer"]): q for q in p["list_hq"]}
    assert hq[(seen.x, "M-HANOI")]["state"] == "deferred"
    assert hq[(seen.x, "M-HANOI")]["dests"] == "1/1"


def test_queue_show_has_a_line_per_destination(seen: Seen) -> None:
    p = seen.partial
    show = _by_site(p["show_paris"])
    assert show["HQ"]["state"] == "delivered" and show["HQ"]["receipt"]["sha256"]
    assert show["M-HANOI"]["state"] == "forwarded" and show["M-HANOI"]["via"] == "HQ"
    text = p["show_paris_text"].splitlines()
    assert text[0] == f"{seen.x}  partially delivered (1 of 2); outstanding: M-HANOI (forwarded)"
    dest = {line.split()[1]: line for line in text if line.strip().startswith("dest ")}
    assert set(dest) == {"HQ", "M-HANOI"}
    assert show["HQ"]["receipt"]["sha256"][:16] in dest["HQ"]
    assert "receipt -" in dest["M-HANOI"] and "via HQ" in dest["M-HANOI"]
    at_hq = _by_site(p["show_hq"])
    assert at_hq["M-HANOI"]["state"] == "deferred" and at_hq["M-HANOI"]["reason"]
    assert any(line.strip().startswith("dest M-HANOI") for line in p["show_hq_text"].splitlines())


def test_queue_shape_counts_outstanding_destinations(seen: Seen) -> None:
    p = seen.partial
    # At M-PARIS the hop to HQ is forwarded but M-HANOI, through it, is still out.
    assert [(r["peer"], r["T"]) for r in p["shape_paris"]] == [("HQ", 1)]
    assert p["shape_paris_messages"] == []  # no undelivered delivery: as before circulars
    assert [(r["peer"], r["T"]) for r in p["shape_hq"]] == [("M-HANOI", 1)]
    assert [(r["peer"], r["T"]) for r in p["shape_hq_messages"]] == [("M-HANOI", 1)]


def test_the_doctor_names_the_destination_awaiting_its_receipt(seen: Seen) -> None:
    awaited = {c.name: c for c in seen.partial["doctor"]}["receipts awaited"]
    assert awaited.status is Status.WARN
    assert "1 message (1 destination) forwarded with no receipt" in awaited.detail
    assert f"oldest {seen.x} to M-HANOI via HQ" in awaited.detail


# -- evidence --------------------------------------------------------------------------


def _status(result: Verification) -> dict[str, tuple[str, str]]:
    return {c.name: (c.status, c.detail) for c in result.checks}


def test_a_partial_bundle_proves_what_it_holds_and_names_the_rest(seen: Seen) -> None:
    bundle = seen.bundles["partial"]
    assert json.loads((bundle / MANIFEST).read_text())["format"] == FORMAT
    assert sorted(p.name for p in (bundle / "receipts").glob("*.vlz")) == ["HQ.vlz"]
    result = verify_bundle(bundle)
    status = _status(result)
    assert result.ok, status
    assert result.destinations == {"HQ": "proved", "M-HANOI": "no receipt"}
    assert status["delivery"] == (OK, "proved by receipt: HQ; no receipt: M-HANOI (1 of 2)")
    done = cli("evidence", "verify", bundle)
    assert done.exit_code == 0
    assert "delivery proved for HQ; not proved for M-HANOI (no receipt) (1 of 2)" in done.stderr
    states = json.loads((bundle / "destinations.json").read_text())
    assert states["HQ"]["state"] == "delivered" and states["M-HANOI"]["state"] == "forwarded"
    text = (bundle / "EXPLANATION.txt").read_text()
    assert "DELIVERY RECEIPTS (1 of 2 destinations)" in text
    assert "No receipt in this bundle from: M-HANOI." in text


def test_a_circulars_bundle_holds_every_receipt_and_verify_names_the_proved_destinations(
    seen: Seen,
) -> None:
    bundle = seen.bundles["full"]
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    for site in ("HQ", "M-HANOI"):
        for ext in ("vlz", "digested", "xml", "key"):
            assert f"receipts/{site}.{ext}" in files
        assert f"openssl/receipt-{site}.signed" in files
    assert "receipt.vlz" not in files
    # M-HANOI's receipt came back through HQ: its hop records, filed under M-HANOI.
    assert any(f.startswith("hops/receipt-M-HANOI.01-HQ") for f in files)
    status = json.loads((bundle / "destinations.json").read_text())
    for site in ("HQ", "M-HANOI"):
        digest = parse_framed_head((bundle / "receipts" / f"{site}.vlz").read_bytes())[0].digest
        assert status[site]["receipt_sha256"] == digest.hex()
    result = verify_bundle(bundle)
    checks = _status(result)
    assert result.ok, checks
    for site in ("HQ", "M-HANOI"):
        assert checks[f"receipt-signature[{site}]"][0] == OK
        assert checks[f"receipt-content[{site}]"][0] == OK
    assert result.destinations == {"HQ": "proved", "M-HANOI": "proved"}
    assert checks["delivery"] == (OK, "proved by receipt: HQ, M-HANOI (2 of 2)")
    for site in ("HQ", "M-HANOI"):  # each receipt's own delivered token, over its range
        token = checks[f"timestamp delivered-{site}.tsr"]
        assert token[0] == OK and f"over receipts/{site}.digested" in token[1]
        assert f"{site}'s receipt signature: key" in checks["signing-time"][1]
    assert "M-HANOI's receipt: HQ at" in checks["hops"][1]
    done = cli("evidence", "verify", bundle, "--json")
    assert done.exit_code == 0
    assert json.loads(done.stdout)["destinations"] == {"HQ": "proved", "M-HANOI": "proved"}
    assert "delivery proved for HQ, M-HANOI (2 of 2)" in done.stderr


def test_the_hubs_bundle_says_the_receipts_passed_sealed(seen: Seen) -> None:
    bundle = seen.bundles["at-hq"]
    result = verify_bundle(bundle)
    checks = _status(result)
    assert result.ok, checks
    assert checks["receipt-signature"][0] == SKIPPED
    assert not (bundle / "receipts").exists()
    assert "only the origin's bundle holds them" in (bundle / "EXPLANATION.txt").read_text()


def test_a_v1_bundle_still_verifies() -> None:
    assert json.loads((V1_BUNDLE / MANIFEST).read_text())["format"] == FORMAT_V1
    result = verify_bundle(V1_BUNDLE)
    checks = _status(result)
    assert result.ok, checks
    assert checks["receipt-signature"][0] == OK and checks["receipt-content"][0] == OK
    assert checks["timestamp delivered.tsr"][0] == OK
    assert result.destinations == {"M-HANOI": "proved"}
    assert checks["delivery"] == (OK, "proved by receipt: M-HANOI (1 of 1)")


# -- attacks on a bundle ---------------------------------------------------------------


def _copy(bundle: Path, into: Path) -> Path:
    target = into / "bundle"
    shutil.copytree(bundle, target)
    return target


def _rehash(bundle: Path) -> None:
    """Rewrite MANIFEST.json to match the files, as a careful forger would."""
    manifest = json.loads((bundle / MANIFEST).read_bytes())
    manifest["files"] = {
        p.relative_to(bundle).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def _receipt_paths(bundle: Path, site: str) -> list[Path]:
    """Every file of ``site``'s receipt in ``bundle``."""
    return [
        *(bundle / "receipts").glob(f"{site}.*"),
        *(bundle / "hops").glob(f"receipt-{site}.*"),
        *(bundle / "openssl").glob(f"receipt-{site}.*"),
        *(bundle / "openssl").glob(f"receipt-{site}-signer.pem"),
        *(bundle / "timestamps").glob(f"delivered-{site}.*"),
    ]


def _file_as(source: Path, site: str, bundle: Path, as_site: str) -> None:
    """Copy ``site``'s receipt files from ``source`` into ``bundle`` as ``as_site``'s."""
    for path in _receipt_paths(source, site):
        rel = path.relative_to(source).as_posix()
        target = bundle / rel.replace(site, as_site, 1)
        target.parent.mkdir(exist_ok=True)
        shutil.copy(path, target)


def _drop(bundle: Path, site: str) -> None:
    for path in _receipt_paths(bundle, site):
        path.unlink()


def _refused(bundle: Path, check: str, reason: str) -> Verification:
    _rehash(bundle)
    result = verify_bundle(bundle)
    status = _status(result)
    assert not result.ok, status
    assert status[check][0] == FAILED, status
    assert reason in status[check][1], status[check]
    done = cli("evidence", "verify", bundle)
    assert done.exit_code == 1 and "does NOT verify" in done.stderr
    return result


def test_a_receipt_from_a_site_that_is_not_a_destination_fails(seen: Seen, tmp_path: Path) -> None:
    bundle = _copy(seen.bundles["partial"], tmp_path)
    _file_as(seen.bundles["rome"], "M-ROME", bundle, "M-ROME")
    result = _refused(
        bundle, "receipt-signature[M-ROME]", "signed by M-ROME, not a destination of the message"
    )
    assert "M-ROME" not in result.destinations
    assert result.destinations == {"HQ": "proved", "M-HANOI": "no receipt"}
    # Filed as M-HANOI's, it fails too: filed under one site, signed by another.
    bundle2 = _copy(seen.bundles["partial"], tmp_path / "two")
    _file_as(seen.bundles["rome"], "M-ROME", bundle2, "M-HANOI")
    result = _refused(
        bundle2, "receipt-signature[M-HANOI]", "filed under M-HANOI but signed by M-ROME"
    )
    assert result.destinations == {"HQ": "proved", "M-HANOI": "receipt does not verify"}


def test_a_receipt_filed_twice_proves_one_destination_only(seen: Seen, tmp_path: Path) -> None:
    # HQ's receipt from the partial bundle copied in as M-HANOI's: 2 of 2 claimed.
    bundle = _copy(seen.bundles["partial"], tmp_path)
    _file_as(bundle, "HQ", bundle, "M-HANOI")
    result = _refused(bundle, "receipt-signature[M-HANOI]", "filed under M-HANOI but signed by HQ")
    assert result.destinations == {"HQ": "proved", "M-HANOI": "receipt does not verify"}
    assert _status(result)["delivery"] == (
        OK,
        "proved by receipt: HQ; receipt does not verify: M-HANOI (1 of 2)",
    )


def test_receipts_swapped_between_destinations_fail(seen: Seen, tmp_path: Path) -> None:
    full = seen.bundles["full"]
    bundle = _copy(full, tmp_path)
    _drop(bundle, "HQ")
    _drop(bundle, "M-HANOI")
    _file_as(full, "HQ", bundle, "M-HANOI")
    _file_as(full, "M-HANOI", bundle, "HQ")
    result = _refused(bundle, "receipt-signature[HQ]", "filed under HQ but signed by M-HANOI")
    status = _status(result)
    assert status["receipt-signature[M-HANOI]"][0] == FAILED
    assert "filed under M-HANOI but signed by HQ" in status["receipt-signature[M-HANOI]"][1]
    assert result.destinations == {
        "HQ": "receipt does not verify",
        "M-HANOI": "receipt does not verify",
    }
    assert status["delivery"][0] == SKIPPED  # nothing proven


def test_a_receipt_for_another_digest_fails(seen: Seen, tmp_path: Path) -> None:
    """A receipt M-HANOI really signed, for this message, naming another envelope's
    digest: its signature verifies; its content does not prove this envelope."""
    bundle = _copy(seen.bundles["full"], tmp_path)
    _drop(bundle, "M-HANOI")
    parsed = parse_framed_head(seen.forged)[0]
    receipts = bundle / "receipts"
    (receipts / "M-HANOI.vlz").write_bytes(seen.forged)
    (receipts / "M-HANOI.digested").write_bytes(digested_bytes(parsed))
    (receipts / "M-HANOI.xml").write_bytes(seen.partial["forged_doc"])
    (receipts / "M-HANOI.key").write_text(seen.partial["forged_key"].hex() + "\n")
    result = _refused(bundle, "receipt-content[M-HANOI]", "it is a receipt for another envelope")
    assert _status(result)["receipt-signature[M-HANOI]"][0] == OK
    assert result.destinations == {"HQ": "proved", "M-HANOI": "receipt does not verify"}


def test_the_explained_openssl_commands_check_every_receipt(seen: Seen) -> None:
    require_tool("openssl")
    bundle = seen.bundles["full"]
    commands = [
        line.strip().split()
        for line in (bundle / "EXPLANATION.txt").read_text().splitlines()
        if line.strip().startswith(("openssl ts ", "openssl pkeyutl "))
    ]
    # the envelope and each receipt's signature; sent, relayed and one token per receipt
    assert sum(c[1] == "pkeyutl" for c in commands) == 3
    assert sum(c[1] == "ts" for c in commands) == 4
    assert any("receipts/M-HANOI.digested" in c for c in commands)
    for command in commands:
        run = subprocess.run(
            command, cwd=bundle, capture_output=True, text=True, check=False, timeout=60
        )
        assert run.returncode == 0, (command, run.stdout + run.stderr)


GROUPS = ("HQ", "M-HANOI", "M-ROME")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_refiling_of_receipts_proves_a_destination_it_does_not_hold(
    seen: Seen, data: st.DataObject
) -> None:
    """Whatever receipts a forger files under whatever names (a destination's own, another
    destination's, a non-destination's, twice, or none), with the manifest rewritten,
    verify proves a destination only from that destination's own genuine receipt, and
    fails whenever a receipt is filed under another site than its signer."""
    sources = {"HQ": seen.bundles["full"], "M-HANOI": seen.bundles["full"]}
    sources["M-ROME"] = seen.bundles["rome"]
    filing = data.draw(
        st.dictionaries(st.sampled_from(GROUPS), st.sampled_from(GROUPS), max_size=3)
    )  # filed-as site -> whose receipt
    with tempfile.TemporaryDirectory() as tmp:
        bundle = _copy(seen.bundles["full"], Path(tmp))
        _drop(bundle, "HQ")
        _drop(bundle, "M-HANOI")
        for as_site, signer in filing.items():
            _file_as(sources[signer], signer, bundle, as_site)
        _rehash(bundle)
        result = verify_bundle(bundle)
        proved = {d for d, v in result.destinations.items() if v == "proved"}
        genuine = {a for a, signer in filing.items() if a == signer and a != "M-ROME"}
        assert proved == genuine, (filing, _status(result))
        misfiled = any(a != signer for a, signer in filing.items())
        stranger = "M-ROME" in filing
        assert result.ok == (not misfiled and not stranger), (filing, _status(result))
