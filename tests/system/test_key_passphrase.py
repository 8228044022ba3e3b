"""Private keys encrypted at rest under a passphrase (issue 9, PRODUCT.md).

The passphrase comes from VALISE_KEY_PASSPHRASE or the file ``[keys] passphrase_file``
names, never from a command-line argument. Every private key a site writes (init, join,
rotation, TLS renewal; HQ's CA, directory and TSA keys) is encrypted under it; a site
starts only with the right one; old unencrypted keys still load.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.site import ConfigError, load_site_config, read_key_passphrase
from crypto.keyfile import is_encrypted
from gateway.demo.network import Network, free_port
from gateway.site.context import load_site
from gateway.site.keyring import load_ring, ring_site_keys
from gateway.trust.enroll import init_hub
from tests.system.test_relay import FAST, _send, _wait_receipts

PASS = "a long passphrase, not on any command line"
ENV = "VALISE_KEY_PASSPHRASE"


def _key_files(site_dir: Path) -> list[Path]:
    keys = site_dir / "keys"
    return sorted(keys.glob("*.key")) + sorted((keys / "ring").glob("*.key"))


def _all_encrypted(site_dir: Path) -> None:
    files = _key_files(site_dir)
    assert files
    for path in files:
        data = path.read_bytes()
        assert is_encrypted(data), f"{path.name} is stored in the clear"
        assert b"PRIVATE KEY-----\n" not in data.replace(b"ENCRYPTED PRIVATE KEY", b"")


def _valise(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != ENV}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**base, **env},
    )


def _serve_refused(site_dir: Path, env: dict[str, str]) -> str:
    """Serve ``site_dir`` expecting a refusal; returns the last stderr line."""
    done = _valise("serve", "--dir", str(site_dir), "--ready-file", str(site_dir / ".r"), env=env)
    assert done.returncode != 0
    assert not (site_dir / ".r").exists()
    return done.stderr.strip().splitlines()[-1]


def test_hq_keys_are_encrypted_and_it_starts_only_with_the_right_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, PASS)
    hq = tmp_path / "HQ"
    init_hub(hq, site="HQ", listen=f"127.0.0.1:{free_port()}")
    _all_encrypted(hq)  # envelope keys, tls.key, ca.key, directory.key, tsa.key
    names = {p.name for p in _key_files(hq)}
    assert {"ca.key", "directory.key", "tsa.key", "tls.key", "HQ.signing.key"} <= names
    # The seed is not in the file: it opens only under the passphrase.
    ctx = asyncio.run(load_site(hq))
    asyncio.run(ctx.store.close())
    signing = (hq / "keys" / "HQ.signing.key").read_bytes()
    assert ctx.keys.signing.seed not in signing
    monkeypatch.delenv(ENV)

    wrong = _serve_refused(hq, {ENV: "not the passphrase"})
    assert "wrong key passphrase" in wrong and f"{hq}/keys/" in wrong
    assert PASS not in wrong and "not the passphrase" not in wrong
    missing = _serve_refused(hq, {})
    assert "is encrypted and no key passphrase is set" in missing

    monkeypatch.setenv(ENV, PASS)  # init and join run in this process: keys encrypted
    with Network(tmp_path / "net", ("M-PARIS",), env={**FAST, ENV: PASS}) as net:
        assert net.sites["HQ"].running and net.sites["M-PARIS"].running


def test_a_network_under_passphrases_rotates_and_renews_keys_encrypted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, PASS)  # init and join run in this process
    with Network(tmp_path, ("M-PARIS",), env={**FAST, ENV: PASS}) as net:
        hq, paris = net.sites["HQ"].directory, net.sites["M-PARIS"].directory
        _all_encrypted(hq)
        _all_encrypted(paris)  # join: envelope keys and the TLS key made at the mission
        # Without the passphrase a rotation is refused and writes no key in the clear.
        before = _key_files(paris)
        refused = _valise("keys", "rotate", "--kind", "signing", "--dir", str(paris), env={})
        assert refused.returncode != 0
        assert "passphrase" in refused.stderr.strip().splitlines()[-1]
        assert _key_files(paris) == before
        for kind in ("signing", "encryption", "tls"):
            done = _valise("keys", "rotate", "--kind", kind, "--dir", str(paris), env={ENV: PASS})
            assert done.returncode == 0, done.stderr
        done = _valise("keys", "rotate", "--kind", "tls", "--dir", str(hq), env={ENV: PASS})
        assert done.returncode == 0, done.stderr
        _all_encrypted(hq)
        _all_encrypted(paris)
        ring = load_ring(paris / "keys", PASS.encode())
        assert len([k for k in ring.keys if k.kind == "signing"]) == 2
        ring_site_keys(ring)  # every usable key opens under the passphrase
        # Mail still flows with every key encrypted.
        ids = asyncio.run(_send(net, "M-PARIS", "HQ", 1, "sealed-keys"))
        assert not asyncio.run(_wait_receipts(net, "M-PARIS", ids, 30))


def test_old_clear_keys_load_beside_encrypted_ones_and_encrypt_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    hq = tmp_path / "HQ"
    init_hub(hq, site="HQ", listen=f"127.0.0.1:{free_port()}")
    assert not any(is_encrypted(p.read_bytes()) for p in _key_files(hq))
    # A passphrase set later: a new key is written encrypted beside the clear ones.
    done = _valise("keys", "rotate", "--kind", "signing", "--dir", str(hq), env={ENV: PASS})
    assert done.returncode == 0, done.stderr
    mixed = [is_encrypted(p.read_bytes()) for p in _key_files(hq)]
    assert any(mixed) and not all(mixed)
    # The tools still read them (keys encrypt must), but serve refuses a clear key
    # while a passphrase is set: one swapped in would otherwise go unnoticed.
    refused = _serve_refused(hq, {ENV: PASS})
    assert "in the clear" in refused and "valise keys encrypt" in refused, refused
    assert f"{hq}/keys/" in refused
    monkeypatch.setenv(ENV, PASS)
    ctx = asyncio.run(load_site(hq))
    asyncio.run(ctx.store.close())
    # The wrong passphrase changes nothing; the right one encrypts the rest in place.
    snapshot = {p: p.read_bytes() for p in _key_files(hq)}
    wrong = _valise("keys", "encrypt", "--dir", str(hq), env={ENV: "wrong"})
    assert wrong.returncode != 0 and "wrong key passphrase" in wrong.stderr
    assert {p: p.read_bytes() for p in _key_files(hq)} == snapshot
    done = _valise("keys", "encrypt", "--dir", str(hq), env={ENV: PASS})
    assert done.returncode == 0, done.stderr
    _all_encrypted(hq)
    ctx = asyncio.run(load_site(hq))
    asyncio.run(ctx.store.close())
    doctor = _valise("doctor", "--dir", str(hq), env={ENV: PASS})
    assert "key encryption" in doctor.stdout and "passphrase opens them" in doctor.stdout
    doctor = _valise("doctor", "--dir", str(hq), env={})
    assert doctor.returncode != 0 and "no passphrase is set" in doctor.stdout


def test_a_passphrase_file_must_be_private_and_not_empty(tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text(PASS + "\n")
    secret.chmod(0o600)
    assert read_key_passphrase(tmp_path, "passphrase", {}) == PASS.encode()
    # The environment wins over the file.
    assert read_key_passphrase(tmp_path, "passphrase", {ENV: "x"}) == b"x"
    secret.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others"):
        read_key_passphrase(tmp_path, "passphrase", {})
    secret.write_text("\n")
    secret.chmod(0o600)
    with pytest.raises(ConfigError, match="empty"):
        read_key_passphrase(tmp_path, "passphrase", {})
    with pytest.raises(ConfigError, match="empty"):
        read_key_passphrase(tmp_path, "", {ENV: ""})
    with pytest.raises(ConfigError, match="missing-file"):
        read_key_passphrase(tmp_path, "missing-file", {})
    assert read_key_passphrase(tmp_path, "", {}) is None


def test_init_with_a_passphrase_file_serves_with_it(tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text(PASS)
    secret.chmod(0o600)
    hq = tmp_path / "HQ"
    done = _valise(
        "init",
        "--site",
        "HQ",
        "--dir",
        str(hq),
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--key-passphrase-file",
        str(secret),
        env={},
    )
    assert done.returncode == 0, done.stderr
    _all_encrypted(hq)
    config = load_site_config(hq, {})
    assert config.keys.passphrase_file == str(secret)
    assert config.key_passphrase == PASS.encode()
    assert PASS not in (hq / "valise.toml").read_text()
    secret.write_text("another")
    assert "wrong key passphrase" in _serve_refused(hq, {})
