"""A site folder is private: nothing in it is readable by others (issue 9).

HQ's folder, its inbox and its store (which holds webhook secrets) were world-readable.
Every site folder, store, inbox and delivered file must be owner-only from init, join and
delivery on; ``serve`` refuses a folder or store others can read; ``doctor`` says so.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from gateway.demo.network import Network
from tests.system.test_relay import FAST, _send, _wait_receipts

OTHERS = stat.S_IRWXG | stat.S_IRWXO


def _loose(root: Path) -> list[str]:
    """Every path under ``root`` (itself included) that others may read, write or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & OTHERS:
            found.append(f"{path.relative_to(root.parent)} {mode:04o}")
    return found


def _valise(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, check=False
    )


def test_init_join_and_delivery_leave_nothing_readable_by_others(tmp_path: Path) -> None:
    # The test process runs with the usual umask 022: the modes must come from the code.
    old = os.umask(0o022)
    try:
        with Network(tmp_path, ("M-PARIS",), env=FAST) as net:
            to_hq = asyncio.run(_send(net, "M-PARIS", "HQ", 2, "to-hq"))
            to_paris = asyncio.run(_send(net, "HQ", "M-PARIS", 2, "to-paris"))
            assert not asyncio.run(_wait_receipts(net, "M-PARIS", to_hq, 30))
            assert not asyncio.run(_wait_receipts(net, "HQ", to_paris, 30))
            hq, paris = net.sites["HQ"].directory, net.sites["M-PARIS"].directory
            assert (hq / "inbox" / to_hq[0]).is_dir()
            assert (paris / "inbox" / to_paris[0]).is_dir()
            assert (hq / "store.sqlite-wal").exists()
            # The CLI's own outputs are private too: an evidence bundle, a time-stamp export.
            exports = paris / "exports"
            exports.mkdir(mode=0o700)
            for args in (
                ("evidence", "export", to_hq[0], "--out", str(exports / "evidence")),
                ("timestamp", "export", to_hq[0], "--out", str(exports / "tokens")),
            ):
                done = _valise(*args, "--dir", str(paris))
                assert done.returncode == 0, done.stderr
            assert _loose(hq) == []
            assert _loose(paris) == []
    finally:
        os.umask(old)


def _serve(directory: Path) -> subprocess.CompletedProcess[str]:
    ready = directory / ".ready"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--dir",
            str(directory),
            "--ready-file",
            str(ready),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _hq(tmp_path: Path) -> Path:
    from gateway.demo.network import free_port
    from gateway.trust.enroll import init_hub

    hq = tmp_path / "HQ"
    init_hub(hq, site="HQ", listen=f"127.0.0.1:{free_port()}")
    return hq


def test_serve_refuses_a_site_folder_others_can_read(tmp_path: Path) -> None:
    hq = _hq(tmp_path)
    os.chmod(hq, 0o755)
    done = _serve(hq)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "readable by others" in last and "chmod 700" in last and str(hq) in last
    assert not (hq / ".ready").exists()


def test_serve_refuses_a_store_others_can_read(tmp_path: Path) -> None:
    hq = _hq(tmp_path)
    store = hq / "store.sqlite"
    store.touch()
    os.chmod(store, 0o644)
    done = _serve(hq)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "store.sqlite" in last and "chmod 600" in last
    assert stat.S_IMODE(store.stat().st_mode) == 0o644  # a refusal changes nothing


def test_doctor_reports_a_loose_site_folder_and_store(tmp_path: Path) -> None:
    hq = _hq(tmp_path)
    os.chmod(hq, 0o750)
    store = hq / "store.sqlite"
    store.touch()
    os.chmod(store, 0o640)
    done = _valise("doctor", "--dir", str(hq), "--json")
    assert done.returncode != 0
    rows = {r["check"]: r for r in json.loads(done.stdout)}
    assert rows["mode site folder"]["status"] == "fail"
    assert "0750" in rows["mode site folder"]["detail"]
    assert rows["mode store"]["status"] == "fail"
    assert "0640" in rows["mode store"]["detail"]
