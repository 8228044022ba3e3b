"""load_keys reads the ring again when it caught another process between writing the
ring and SITE.pub.xml (KeysChanging: CI saw 'valise keys rotate' refused while the
running gateway activated a key), and still refuses a folder that stays inconsistent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.site import context
from gateway.site.keyring import KeysChanging
from gateway.site.keystore import KeyStoreError


class _Config:
    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = keys_dir
        self.key_passphrase = None


def _stubbed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fails: int) -> list[int]:
    (tmp_path / "ca.crt").write_bytes(b"CA")
    calls: list[int] = []

    def site_keys(ring: Any) -> str:
        calls.append(1)
        if len(calls) <= fails:
            raise KeysChanging("M-PARIS.pub.xml does not match the active keys of the ring")
        return "keys"

    monkeypatch.setattr(context, "load_ring", lambda folder, passphrase: object())
    monkeypatch.setattr(context, "tls_files", lambda ring: (b"cert", b"key"))
    monkeypatch.setattr(context, "ring_site_keys", site_keys)
    monkeypatch.setattr(context, "KEYS_CHANGING_PAUSE_SECONDS", 0.0)
    return calls


def test_a_ring_caught_mid_change_is_read_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = _stubbed(monkeypatch, tmp_path, fails=2)
    keys, tls = context.load_keys(_Config(tmp_path))  # type: ignore[arg-type]
    assert keys == "keys" and tls.ca_pem == b"CA" and len(calls) == 3


def test_a_folder_that_stays_inconsistent_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = _stubbed(monkeypatch, tmp_path, fails=99)
    with pytest.raises(KeysChanging, match="does not match"):
        context.load_keys(_Config(tmp_path))  # type: ignore[arg-type]
    assert len(calls) == context.KEYS_CHANGING_ATTEMPTS


def test_the_mismatch_is_a_key_store_error() -> None:
    assert issubclass(KeysChanging, KeyStoreError)  # callers that catch it still do
