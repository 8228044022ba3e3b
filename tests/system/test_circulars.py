"""Circulars with real processes (issue 11): delivery state and receipts per destination.

The issue's scenario: M-PARIS sends one document to HQ and M-HANOI while M-HANOI is
down. HQ's receipt arrives: ``valise status`` at M-PARIS says 1 of 2, M-HANOI
outstanding (forwarded: the origin knows no more), and at HQ M-HANOI is deferred with
the reason. M-HANOI comes back: 2 of 2, two receipts, delivered.

Expiry fails only the destination still outstanding; a revoked key of one destination
holds only it at HQ, and its origin re-seals the circular although HQ's receipt is in.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.cli.main import main
from gateway.demo.network import Network
from gateway.evidence.verify import verify_bundle
from gateway.relay.outbox import Document, send_documents
from tests.support.pg import PG_DSN, pg_admin
from tests.system.test_key_rotation import ENV as KEYS_ENV
from tests.system.test_key_rotation import _active_enc_elsewhere, active, valise
from tests.system.test_receipt_relay import ENV, World, on_site, send, wait_until


async def _pg_up() -> None:
    conn = await pg_admin()
    await conn.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    dsn = None
    if request.param == "postgres":
        asyncio.run(_pg_up())  # skips (or fails in CI) when PostgreSQL is down
        dsn = PG_DSN
    root = tmp_path_factory.mktemp("circulars")
    net = Network(root, ("M-PARIS", "M-HANOI"), env=ENV, postgres_dsn=dsn)
    try:
        net.start()
        yield World(net)
    finally:
        net.close()


def status(world: World, site: str, message_id: str) -> dict[str, Any]:
    folder = str(world.folder(site))
    out = CliRunner().invoke(main, ["status", message_id, "--dir", folder, "--json"])
    assert out.exit_code == 0, out.output
    info: dict[str, Any] = json.loads(out.stdout)
    return info


def text_status(world: World, site: str, message_id: str) -> str:
    out = CliRunner().invoke(main, ["status", message_id, "--dir", str(world.folder(site))])
    assert out.exit_code == 0, out.output
    return out.stdout


def by_site(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["site"]: d for d in info["destinations"]}


def test_two_destinations_one_down(world: World) -> None:
    hanoi = world.net.sites["M-HANOI"]
    hanoi.stop()
    x = send(world, "M-PARIS", ["HQ", "M-HANOI"])
    wait_until("HQ's receipt at M-PARIS", lambda: status(world, "M-PARIS", x)["receipts"] == 1)
    wait_until(
        "HQ to defer M-HANOI",
        lambda: by_site(status(world, "HQ", x))["M-HANOI"]["state"] == "deferred",
    )

    paris = status(world, "M-PARIS", x)
    assert (paris["status"], paris["receipts"], paris["of"]) == ("partially delivered", 1, 2)
    assert paris["delivered"] is False
    assert paris["outstanding"] == ["M-HANOI"]
    sites = by_site(paris)
    assert sites["M-HANOI"]["state"] == "forwarded"
    assert sites["M-HANOI"]["via"] == "HQ"
    assert sites["M-HANOI"]["receipt"] is None
    assert sites["HQ"]["state"] == "delivered"
    assert len(sites["HQ"]["receipt"]["sha256"]) == 64
    line = text_status(world, "M-PARIS", x).splitlines()[0]
    assert line == f"{x}  partially delivered (1 of 2); outstanding: M-HANOI (forwarded)"

    hq = by_site(status(world, "HQ", x))
    # Still not delivered, and why: HQ's courier may be between two tries by now
    # (deferred, queued again when its time comes, sending: CI saw 'queued' under load).
    assert hq["M-HANOI"]["state"] in ("deferred", "queued", "sending")
    assert hq["M-HANOI"]["reason"], "HQ says why M-HANOI is deferred"
    assert hq["HQ"]["state"] == "delivered"

    hanoi.start()
    wait_until("M-HANOI's receipt at M-PARIS", lambda: status(world, "M-PARIS", x)["receipts"] == 2)
    done = status(world, "M-PARIS", x)
    assert (done["status"], done["receipts"], done["of"], done["delivered"]) == (
        "delivered",
        2,
        2,
        True,
    )
    assert done["outstanding"] == [] and done["failed"] == []
    digests = {d["site"]: d["receipt"]["sha256"] for d in done["destinations"]}
    assert set(digests) == {"HQ", "M-HANOI"} and len(set(digests.values())) == 2
    # one history row per destination's receipt, each naming its digest
    receipted = [h for h in done["history"] if h["state"] == "delivered" and h["peer"] != "HQ"]
    assert [h["peer"] for h in receipted] == ["M-HANOI"]
    assert digests["M-HANOI"][:16] in receipted[0]["reason"]
    line = text_status(world, "M-PARIS", x).splitlines()[0]
    assert line == f"{x}  delivered (2 of 2, receipts verified)"
    wait_until(
        "HQ to relay M-HANOI's receipt",
        lambda: by_site(status(world, "HQ", x))["M-HANOI"]["state"] == "delivered",
    )
    assert text_status(world, "HQ", x).splitlines()[0] == (
        f"{x}  available here; delivered (2 of 2, receipts relayed)"
    )
    # Prometheus: receipts per destination, verified at the origin and relayed at HQ
    paris_metrics, hq_metrics = metrics(world, "M-PARIS"), metrics(world, "HQ")
    for site in ("HQ", "M-HANOI"):
        assert f'valise_destination_receipts_total{{role="verified",site="{site}"}}' in (
            paris_metrics
        )
    assert 'valise_destination_receipts_total{role="relayed",site="M-HANOI"}' in hq_metrics
    assert 'valise_destinations{site="",state="delivered"}' in paris_metrics


def metrics(world: World, site: str) -> str:
    port = world.net.sites[site].ops_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text: str = r.read().decode()
    return text


def test_expiry_fails_only_the_outstanding_destination(world: World) -> None:
    hanoi = world.net.sites["M-HANOI"]
    hanoi.stop()
    try:
        doc = Document("short.txt", "text/plain", b"short-lived\n")
        expires = datetime.now(UTC) + timedelta(seconds=12)
        x: str = on_site(
            world,
            "M-PARIS",
            lambda ctx: send_documents(
                ctx, ["HQ", "M-HANOI"], [doc], now=datetime.now(UTC), expires=expires
            ),
        )
        wait_until("HQ's receipt", lambda: status(world, "M-PARIS", x)["receipts"] == 1)
        wait_until("expiry at M-PARIS", lambda: status(world, "M-PARIS", x)["failed"] != [])
    finally:
        hanoi.start()
    info = status(world, "M-PARIS", x)
    assert (info["status"], info["receipts"], info["of"]) == ("partially delivered", 1, 2)
    assert info["failed"] == ["M-HANOI"] and info["outstanding"] == []
    sites = by_site(info)
    assert (sites["M-HANOI"]["state"], sites["M-HANOI"]["reason"]) == ("failed", "expired")
    assert sites["HQ"]["state"] == "delivered" and sites["HQ"]["receipt"] is not None
    assert text_status(world, "M-PARIS", x).splitlines()[0] == (
        f"{x}  partially delivered (1 of 2); failed: M-HANOI (failed: expired)"
    )


def test_a_revoked_key_of_one_destination_holds_and_reseals_only_for_it(tmp_path: Path) -> None:
    with Network(tmp_path, env=KEYS_ENV) as net:
        w = World(net)
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        old_enc = active(hanoi.directory, "encryption")
        hanoi.stop()  # the circular waits at HQ for M-HANOI, sealed to old_enc
        x = send(w, "M-PARIS", ["HQ", "M-HANOI"])
        wait_until("HQ's receipt at M-PARIS", lambda: status(w, "M-PARIS", x)["receipts"] == 1)
        hq_receipt = by_site(status(w, "M-PARIS", x))["HQ"]["receipt"]["sha256"]
        valise("keys", "revoke", old_enc, "--reason", "drill: key lost", "--dir", str(hq.directory))
        wait_until(
            "HQ to hold M-HANOI's copy",
            lambda: by_site(status(w, "HQ", x))["M-HANOI"]["state"] == "held",
        )
        at_hq = by_site(status(w, "HQ", x))
        assert at_hq["HQ"]["state"] == "delivered", "HQ's own delivery is not held"
        assert "sealed to revoked encryption key" in at_hq["M-HANOI"]["reason"]
        # M-PARIS is stopped before it sees the replacement, so that the operator's
        # command does the re-seal (a running gateway does it by itself, issue 10:
        # gateway/relay/reseal_sweeps.py reseal_revoked, which the same per-destination
        # rules bound).
        paris.stop()
        hanoi.start()  # it sees its key revoked and publishes a replacement
        wait_until(
            "M-HANOI's new encryption key at HQ",
            lambda: _active_enc_elsewhere(hq.directory, "M-HANOI") not in (None, old_enc),
        )
        shutil.copyfile(hq.directory / "directory.xml", paris.directory / "directory.xml")
        # Re-sealed although HQ's receipt is in: only M-HANOI is still open.
        out = valise("queue", "reseal", x, "--dir", str(paris.directory))
        assert f"{x}\tresealed" in out.stdout, out.stdout
        paris.start()
        wait_until("M-HANOI's receipt", lambda: status(w, "M-PARIS", x)["receipts"] == 2)
        done = status(w, "M-PARIS", x)
        assert done["delivered"] is True
        assert by_site(done)["HQ"]["receipt"]["sha256"] == hq_receipt, "HQ's receipt stands"
        # HQ took the re-sealed copy in place of its held one and sent it to M-HANOI
        # alone: it did not deliver the circular to itself a second time.
        hq_history = status(w, "HQ", x)["history"]
        assert sum(h["state"] == "available" for h in hq_history) == 1
        assert (hanoi.directory / "inbox" / x).is_dir()
        again = valise("queue", "reseal", x, "--dir", str(paris.directory), check=False)
        assert again.returncode != 0 and "nothing to do" in again.stdout


FIVE = ("M-1", "M-2", "M-3", "M-4", "M-5")


def test_hq_and_five_missions_two_down_then_back(tmp_path: Path) -> None:
    """HQ sends one circular to five missions while two are down: 3 of 5, the two
    listed deferred at HQ with the reason; they come back: 5 of 5, five receipts."""
    with Network(tmp_path, FIVE, env=ENV) as net:
        w = World(net)
        net.sites["M-4"].stop()
        net.sites["M-5"].stop()
        x = send(w, "HQ", list(FIVE))
        wait_until("three receipts at HQ", lambda: status(w, "HQ", x)["receipts"] == 3)
        wait_until(
            "HQ to defer M-4 and M-5",
            lambda: (
                [d["state"] for d in status(w, "HQ", x)["destinations"][3:]]
                == ["deferred", "deferred"]
            ),
        )
        info = status(w, "HQ", x)
        assert (info["status"], info["receipts"], info["of"]) == ("partially delivered", 3, 5)
        assert info["outstanding"] == ["M-4", "M-5"]
        sites = by_site(info)
        for site in ("M-4", "M-5"):
            assert (sites[site]["via"], sites[site]["receipt"]) == (site, None)
            assert "unreachable" in sites[site]["reason"], sites[site]["reason"]
        line = text_status(w, "HQ", x).splitlines()[0]
        assert line.startswith(f"{x}  partially delivered (3 of 5); outstanding: M-4 (deferred:")
        net.sites["M-4"].start()
        net.sites["M-5"].start()
        wait_until("five receipts at HQ", lambda: status(w, "HQ", x)["receipts"] == 5)
        done = status(w, "HQ", x)
        assert (done["status"], done["delivered"], done["outstanding"]) == ("delivered", True, [])
        digests = [d["receipt"]["sha256"] for d in done["destinations"]]
        assert len(set(digests)) == 5
        for site in FIVE:
            assert (net.sites[site].directory / "inbox" / x).is_dir()
        # The origin's evidence bundle proves all five, one receipt each (design §4 WP-C).
        out = tmp_path / "bundle"
        exported = CliRunner().invoke(
            main, ["evidence", "export", x, "--out", str(out), "--dir", str(w.folder("HQ"))]
        )
        assert exported.exit_code == 0, exported.output
        proved = verify_bundle(out)
        assert proved.ok, proved
        assert proved.destinations == dict.fromkeys(FIVE, "proved")


def test_a_destination_with_its_receipt_is_not_resealed_for(tmp_path: Path) -> None:
    """M-HANOI has its receipt when its key is revoked; M-LIMA (down, key good) has not.
    Nothing is re-sealed: the stale wrap is a delivered destination's, and the one still
    open opens the copy it will get."""
    with Network(tmp_path, ("M-PARIS", "M-HANOI", "M-LIMA"), env=KEYS_ENV) as net:
        w = World(net)
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        lima = net.sites["M-LIMA"]
        old_enc = active(hanoi.directory, "encryption")
        lima.stop()
        x = send(w, "M-PARIS", ["M-HANOI", "M-LIMA"])
        wait_until("M-HANOI's receipt", lambda: status(w, "M-PARIS", x)["receipts"] == 1)
        valise("keys", "revoke", old_enc, "--reason", "drill: key lost", "--dir", str(hq.directory))
        wait_until(
            "M-HANOI's new encryption key at M-PARIS",
            lambda: _active_enc_elsewhere(paris.directory, "M-HANOI") not in (None, old_enc),
        )
        dry = valise("queue", "reseal", "--all", "--dry-run", "--dir", str(paris.directory))
        assert dry.stdout.splitlines()[0] == "would re-seal 0", dry.stdout
        out = valise("queue", "reseal", x, "--dir", str(paris.directory), check=False)
        assert out.returncode == 2, out.stdout + out.stderr
        assert (
            f"{x}\tskipped\tevery destination sealed to a stale key has its receipt:"
            " nothing to do" in out.stdout
        )
        lima.start()
        wait_until("M-LIMA's receipt", lambda: status(w, "M-PARIS", x)["receipts"] == 2)
        assert status(w, "M-PARIS", x)["delivered"] is True
