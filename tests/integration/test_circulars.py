"""Circulars with real processes (issue 11): delivery state and receipts per destination.

The issue's scenario: M-PARIS sends one document to HQ and M-HANOI while M-HANOI is
down. HQ's receipt arrives: ``valise status`` at M-PARIS says 1 of 2, M-HANOI
outstanding (forwarded: the origin knows no more), and at HQ M-HANOI is deferred with
the reason. M-HANOI comes back: 2 of 2, two receipts, delivered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.testnet import Network
from tests.integration.test_receipt_relay import ENV, World, send, wait_until


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    net = Network(tmp_path_factory.mktemp("circulars"), ("M-PARIS", "M-HANOI"), env=ENV)
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
    assert hq["M-HANOI"]["state"] == "deferred"
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
