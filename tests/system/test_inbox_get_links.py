"""``valise inbox get`` never writes through a planted link nor over a file (review F6),
run as the operator runs it (``python -m gateway``). The ExportDir rules themselves are
unit-tested in tests/unit/test_export_dir.py.

Before: ``valise inbox get --out-dir`` copied with shutil.copy2 into an existing
folder, following a symbolic link another local user planted under a name the
remote site chose, and overwriting its target.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import valise as run

MID = "01a24e0f-660a-76cd-be02-c0b7af5d9d3e"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site folder (``valise init``) holding one delivered document with parts a.txt
    and b.txt."""
    made = run("init", "--site", "HQ", "--dir", str(tmp_path / "site"), "--listen", "127.0.0.1:0")
    assert made.returncode == 0, made.stderr
    item = tmp_path / "site" / "inbox" / MID
    item.mkdir(parents=True)
    (item / "a.txt").write_bytes(b"from the remote site\n")
    (item / "b.txt").write_bytes(b"second part\n")
    (item / ".valise.json").write_text(json.dumps({"parts": []}))
    return tmp_path / "site"


def test_inbox_get_refuses_a_planted_symlink_and_writes_nothing(site: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious operator file\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "b.txt").symlink_to(victim)  # planted under a name the remote site chose
    got = run("inbox", "get", MID, "--out-dir", str(shared), "--dir", str(site))
    assert got.returncode != 0
    assert victim.read_bytes() == b"precious operator file\n"
    assert "b.txt" in got.stderr and "refusing to overwrite" in got.stderr, got.stderr
    assert got.stderr.count("\n") == 1, got.stderr
    assert sorted(p.name for p in shared.iterdir()) == ["b.txt"]  # a.txt was taken back
    assert (shared / "b.txt").is_symlink()


def test_inbox_get_refuses_a_dangling_symlink(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").symlink_to(tmp_path / "created-through-the-link")
    got = run("inbox", "get", MID, "--out-dir", str(out), "--dir", str(site))
    assert got.returncode != 0
    assert not (tmp_path / "created-through-the-link").exists()


def test_inbox_get_into_a_new_folder_is_private(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    got = run("inbox", "get", MID, "--out-dir", str(out), "--dir", str(site))
    assert got.returncode == 0, got.stderr
    assert (out / "a.txt").read_bytes() == b"from the remote site\n"
    assert out.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in out.iterdir())
    again = run("inbox", "get", MID, "--out-dir", str(out), "--dir", str(site))
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr
