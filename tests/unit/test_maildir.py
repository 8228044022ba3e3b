"""Maildir delivery: tmp -> new, exactly once per key, across retries after a crash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.bridges.mail import maildir


def test_delivery_goes_through_tmp_to_new(tmp_path: Path) -> None:
    box = maildir.mailbox_folder(tmp_path, "Registry")
    assert box == tmp_path / "registry"
    path = maildir.deliver(box, "01a2-id", b"message\r\n")
    assert path == box / "new" / "01a2-id.valise" and path.read_bytes() == b"message\r\n"
    assert os.listdir(box / "tmp") == [] and os.listdir(box / "cur") == []
    assert (path.stat().st_mode & 0o777) == 0o600
    assert maildir.delivered_keys(box) == ["01a2-id"]


def test_mailbox_folders_are_safe(tmp_path: Path) -> None:
    assert maildir.mailbox_folder(tmp_path, None) == tmp_path / "default"
    # Anything but one plain local dot-atom is the default mailbox, not a look-alike.
    for hostile in ("../../etc", "..", "a@b", "Registry/../x", "r\u0435gistry", "a%b", "a" * 65):
        assert maildir.mailbox_folder(tmp_path, hostile) == tmp_path / "default"
    assert maildir.mailbox_folder(tmp_path, "Registry") == tmp_path / "registry"
    with pytest.raises(ValueError):
        maildir.deliver(tmp_path / "x", "../evil", b"")


def test_a_second_delivery_of_the_same_key_is_a_no_op(tmp_path: Path) -> None:
    box = tmp_path / "box"
    maildir.deliver(box, "k", b"first")
    maildir.deliver(box, "k", b"second")
    assert (box / "new" / "k.valise").read_bytes() == b"first"
    assert maildir.delivered_keys(box) == ["k"]


def test_a_crash_after_the_link_does_not_deliver_twice(tmp_path: Path) -> None:
    box = tmp_path / "box"
    maildir.deliver(box, "k", b"first")
    # The earlier attempt died before removing tmp/NAME, and the reader moved the
    # message to cur/ with flags in the meantime.
    (box / "tmp" / "k.valise").write_bytes(b"first")
    os.rename(box / "new" / "k.valise", box / "cur" / "k.valise:2,S")
    maildir.deliver(box, "k", b"first")
    assert maildir.delivered_keys(box) == ["k"]
    assert os.listdir(box / "new") == [] and os.listdir(box / "tmp") == []


def test_a_crash_before_the_link_delivers_on_retry(tmp_path: Path) -> None:
    box = tmp_path / "box"
    for sub in ("tmp", "new", "cur"):
        (box / sub).mkdir(parents=True)
    (box / "tmp" / "k.valise").write_bytes(b"torn")
    maildir.deliver(box, "k", b"whole")
    assert (box / "new" / "k.valise").read_bytes() == b"whole"


def test_the_marker_makes_later_calls_no_ops(tmp_path: Path) -> None:
    box, marker = tmp_path / "box", tmp_path / "marker"
    maildir.deliver(box, "k", b"once", marker=marker)
    assert marker.exists()
    os.rename(box / "new" / "k.valise", box / "cur" / "k.valise:2,S")
    os.unlink(box / "cur" / "k.valise:2,S")  # read and deleted by the user
    maildir.deliver(box, "k", b"once", marker=marker)
    assert maildir.delivered_keys(box) == []
