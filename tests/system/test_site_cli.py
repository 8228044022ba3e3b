"""The operator CLI against a running network: send, status, queue, inbox, site, directory."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gateway.demo.network import Network
from tests.support.cli import valise
from tests.system.test_relay import FAST


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Network:
    with Network(tmp_path_factory.mktemp("net"), env=FAST) as network:
        yield network  # type: ignore[misc]


def _wait_delivered(paris: Path, mid: str, timeout: float = 30) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        info = json.loads(valise("status", mid, "--dir", str(paris), "--json").stdout)
        if info["delivered"] or time.monotonic() > deadline:
            return info
        time.sleep(0.2)


def test_send_status_inbox(net: Network, tmp_path: Path) -> None:
    paris, hanoi = net.sites["M-PARIS"].directory, net.sites["M-HANOI"].directory
    doc = tmp_path / "note.txt"
    doc.write_text("Note verbale 99\n")
    sent = valise("send", "--dir", str(paris), "--to", "M-HANOI", "--subject", "NV 99", str(doc))
    assert sent.returncode == 0, sent.stderr
    mid = sent.stdout.strip()
    info = _wait_delivered(paris, mid)
    assert info["delivered"], info
    assert [h["state"] for h in info["history"]][:1] == ["queued"]
    text = valise("status", mid, "--dir", str(paris)).stdout
    assert "delivered (receipt verified)" in text
    # queue list shows what is still to do: the delivered message only with --all, and
    # at HQ, which relayed it, the copy is done too: delivered once M-HANOI's receipt
    # passed HQ (issue 11: the hub marks each destination's hop delivered by its receipt).
    hq = net.sites["HQ"].directory
    for site, state in ((paris, "delivered"), (hq, "delivered")):
        todo = json.loads(valise("queue", "list", "--dir", str(site), "--json").stdout)
        assert mid not in {q["id"] for q in todo}
        every = json.loads(valise("queue", "list", "--all", "--dir", str(site), "--json").stdout)
        assert {q["state"] for q in every if q["id"] == mid} == {state}
        assert mid in valise("queue", "list", "--all", "--dir", str(site)).stdout
        assert mid not in valise("queue", "list", "--dir", str(site)).stdout
    text = valise("status", mid, "--dir", str(hanoi)).stdout
    assert text.splitlines()[0] == f"{mid}  available here"

    inbox = json.loads(valise("inbox", "list", "--dir", str(hanoi), "--json").stdout)
    row = next(r for r in inbox if r["id"] == mid)
    assert row["from"] == "M-PARIS" and row["subject"] == "NV 99" and row["state"] == "available"
    out = tmp_path / "got"
    got = valise("inbox", "get", mid, "--dir", str(hanoi), "--out-dir", str(out))
    assert got.returncode == 0 and (out / "note.txt").read_text() == "Note verbale 99\n"
    assert valise("inbox", "ack", mid, "--dir", str(hanoi)).returncode == 0
    inbox = json.loads(valise("inbox", "list", "--dir", str(hanoi), "--json").stdout)
    assert next(r for r in inbox if r["id"] == mid)["state"] == "acked"


def test_queue_hold_release_delete_shape(net: Network, tmp_path: Path) -> None:
    paris = net.sites["M-PARIS"].directory
    hq = net.sites["HQ"]
    hq.stop()
    try:
        doc = tmp_path / "a.txt"
        doc.write_text("x")
        ids = [
            valise("send", "--dir", str(paris), "--to", "M-HANOI", str(doc)).stdout.strip()
            for _ in range(3)
        ]
        queue = json.loads(valise("queue", "list", "--dir", str(paris), "--json").stdout)
        assert {q["id"] for q in queue if q["state"] != "delivered"} >= set(ids)
        assert valise("queue", "hold", ids[0], "--dir", str(paris)).returncode == 0
        shown = json.loads(valise("queue", "show", ids[0], "--dir", str(paris), "--json").stdout)
        assert shown["deliveries"][0]["state"] == "held"
        shape = json.loads(valise("queue", "shape", "--dir", str(paris), "--json").stdout)
        assert next(r for r in shape if r["peer"] == "HQ")["T"] >= 3
        refused = valise("queue", "delete", ids[1], "--dir", str(paris))
        assert refused.returncode == 2 and "--yes" in refused.stderr
        assert valise("queue", "delete", ids[1], "--yes", "--dir", str(paris)).returncode == 0
        assert valise("queue", "release", ids[0], "--dir", str(paris)).returncode == 0
        queue = json.loads(valise("queue", "list", "--dir", str(paris), "--json").stdout)
        assert ids[1] not in {q["id"] for q in queue}
        # Released: back in the delivery cycle (the courier may already have retried it).
        assert next(q for q in queue if q["id"] == ids[0])["state"] in (
            "queued",
            "sending",
            "deferred",
        )
    finally:
        hq.start()
    assert _wait_delivered(paris, ids[0])["delivered"]
    assert _wait_delivered(paris, ids[2])["delivered"]
    deleted = json.loads(valise("status", ids[1], "--dir", str(paris), "--json").stdout)
    assert not deleted["delivered"] and deleted["history"][-1]["state"] == "deleted"


def test_site_and_directory_views(net: Network) -> None:
    hq = net.sites["HQ"].directory
    listing = json.loads(valise("site", "list", "--dir", str(hq), "--json").stdout)
    assert {r["site"] for r in listing} == {"HQ", "M-PARIS", "M-HANOI"}
    show = json.loads(valise("site", "show", "M-PARIS", "--dir", str(hq), "--json").stdout)
    assert show["signing_keys"][0]["state"] == "active" and len(show["tls_pins"]) == 1
    text = valise("directory", "show", "--dir", str(net.sites["M-PARIS"].directory)).stdout
    assert text.startswith("serial 3") and "M-HANOI" in text
    unknown = valise("site", "show", "M-NOWHERE", "--dir", str(hq))
    assert unknown.returncode == 2 and "not in directory" in unknown.stderr


def test_ops_listener_livez_readyz_metrics(net: Network) -> None:
    import urllib.request

    paris = net.sites["M-PARIS"]
    base = f"http://127.0.0.1:{paris.ops_port}"
    with urllib.request.urlopen(f"{base}/livez", timeout=5) as r:
        assert json.loads(r.read()) == {"status": "ok"}
    with urllib.request.urlopen(f"{base}/readyz", timeout=5) as r:
        ready = json.loads(r.read())
    assert ready["ready"] and ready["checks"]["store"] == "ok"
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'valise_queue_depth{peer="HQ",state=' in text
    assert "valise_hop_latency_seconds_bucket" in text
    assert "valise_key_expiry_seconds" in text and "valise_directory_serial 3.0" in text
