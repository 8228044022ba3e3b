"""CLI exports never write through a planted link nor over a file (review F6).

Before: ``valise inbox get --out-dir`` copied with shutil.copy2 into an existing
folder, following a symbolic link another local user planted under a name the
remote site chose, and overwriting its target.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.site.export_dir import ExportDir, ExportRefused

MID = "01a24e0f-660a-76cd-be02-c0b7af5d9d3e"


def test_an_output_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(ExportRefused, match="symbolic link"):
        ExportDir(tmp_path / "link")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a folder to another user")
def test_another_users_folder_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 12345, 12345)
    with pytest.raises(ExportRefused, match="not a folder of yours"):
        ExportDir(theirs)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "a\0b"])
def test_a_name_is_one_path_component(tmp_path: Path, name: str) -> None:
    with ExportDir(tmp_path / "out") as out, pytest.raises(ExportRefused):
        out.write(name, b"x")


def test_a_failed_export_removes_what_it_wrote(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine").write_bytes(b"kept")
    with pytest.raises(RuntimeError), ExportDir(tmp_path / "out") as out:
        out.write("a", b"1")
        raise RuntimeError("half-way")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mine"]


def test_an_evidence_bundle_ignores_a_planted_staging_name(tmp_path: Path) -> None:
    """The bundle is staged under a fresh private name, not a guessable sibling that
    another user can plant first (a link there blocked the export, or worse)."""
    from gateway.evidence.export import _write

    victim = tmp_path / "victim"
    victim.mkdir()
    (tmp_path / ".bundle.tmp").symlink_to(victim)
    _write(tmp_path / "bundle", {"manifest.json": b"{}", "hops/ack-HQ.json": b"[]"})
    assert (tmp_path / "bundle" / "hops" / "ack-HQ.json").read_bytes() == b"[]"
    assert (tmp_path / "bundle").stat().st_mode & 0o777 == 0o700
    assert list(victim.iterdir()) == [] and (tmp_path / ".bundle.tmp").is_symlink()
