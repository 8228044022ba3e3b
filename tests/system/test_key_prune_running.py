"""Who deletes the private file of a key revoked by ``valise keys revoke``: the running
gateway, once it has loaded its new keys, not the CLI in another process (issue 10,
review leftover: until the gateway looked at its keys again it kept sealing escrows to
the old encryption key, whose private file the CLI had deleted already, so documents
waiting for a destination's key could no longer be sealed again). With no gateway
running, the CLI prunes as before, escrows wrapped again first."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.demo.network import Network
from gateway.site.running import gateway_running
from tests.support.cli import valise as run_valise
from tests.system.test_key_rotation import ENV, active, send_one, valise, wait_for
from tests.system.test_relay import _wait_receipts

LEFT_TO_GATEWAY = "the running gateway deletes the private files"
# check_seconds far longer than the test: the gateway takes the change up from its
# file watch (key_watch.FILES_POLL_SECONDS), not from its periodic round.
SLOW_CHECKS = {**ENV, "VALISE_KEYS_CHECK_SECONDS": "600"}


def _private(site_dir: Path, kind: str, key_id: str) -> Path:
    return site_dir / "keys" / "ring" / f"{kind}-{key_id}.key"


def _rotated(site_dir: Path) -> str:
    """A ring generation (keys/ring/) for the encryption key: its active id."""
    valise("keys", "rotate", "--kind", "encryption", "--now", "--dir", str(site_dir))
    key_id = active(site_dir, "encryption")
    assert _private(site_dir, "encryption", key_id).exists()
    return key_id


def test_a_running_gateway_prunes_what_the_cli_revoked(tmp_path: Path) -> None:
    with Network(tmp_path, missions=("M-PARIS",), env=SLOW_CHECKS) as net:
        paris = net.sites["M-PARIS"].directory
        assert gateway_running(paris)
        old = _rotated(paris)
        out = valise("keys", "revoke", old[:12], "--reason", "test", "--dir", str(paris))
        assert LEFT_TO_GATEWAY in out.stdout, out.stdout
        assert active(paris, "encryption") != old  # replaced at once
        wait_for(
            "the gateway to prune the revoked key's private file",
            lambda: not _private(paris, "encryption", old).exists(),
        )
    assert not gateway_running(paris)


def test_with_no_gateway_running_the_cli_prunes(tmp_path: Path) -> None:
    with Network(tmp_path, missions=("M-PARIS",), env=SLOW_CHECKS) as net:
        paris = net.sites["M-PARIS"].directory
        net.sites["M-PARIS"].stop()
        assert not gateway_running(paris)
        old = _rotated(paris)
        out = valise("keys", "revoke", old[:12], "--reason", "test", "--dir", str(paris))
        assert LEFT_TO_GATEWAY not in out.stdout, out.stdout
        assert not _private(paris, "encryption", old).exists()


def test_with_no_gateway_running_the_cli_keeps_a_key_an_unopened_envelope_needs(
    tmp_path: Path,
) -> None:
    """Review leftover (issue 10): M-PARIS took a document sealed to its encryption key
    and was killed before opening it; ``keys revoke`` of that key with no gateway
    running keeps the private file (else the document could never be opened), and the
    gateway, started again, opens the document with it (the copy was taken before the
    revocation: failing it would lose the message) and then deletes it."""
    crash = {"M-PARIS": {"VALISE_RELAY_CRASH_AT": "hop-after-commit"}}
    with Network(tmp_path, missions=("M-PARIS",), env=SLOW_CHECKS, site_env=crash) as net:
        site = net.sites["M-PARIS"]
        paris = site.directory
        key = _rotated(paris)  # HQ's directory has it at once (--now, posted to HQ)
        mid = asyncio.run(send_one(net.sites["HQ"].directory, "M-PARIS", "unopened"))
        wait_for("M-PARIS to die after committing the hop", lambda: not site.running)
        assert not (paris / "inbox" / mid).exists()
        assert not gateway_running(paris)
        out = valise("keys", "revoke", key[:12], "--reason", "test", "--dir", str(paris))
        assert "are not opened yet" in out.stdout, out.stdout
        assert _private(paris, "encryption", key).exists()
        assert active(paris, "encryption") != key  # revoked and replaced all the same
        doctor = run_valise("doctor", "--dir", paris).stdout  # the operator sees why
        assert "keys kept" in doctor and key in doctor, doctor
        assert "not opened yet" in doctor, doctor
        site.start()  # the crash point fires once per folder
        wait_for("the document opened", lambda: (paris / "inbox" / mid).is_dir())
        assert not asyncio.run(_wait_receipts(net, "HQ", [mid], 30))  # and receipted
        wait_for(
            "the gateway to prune the revoked key's private file",
            lambda: not _private(paris, "encryption", key).exists(),
        )
        doctor = run_valise("doctor", "--dir", paris).stdout
        assert "no private file of a revoked or retired key" in doctor, doctor
