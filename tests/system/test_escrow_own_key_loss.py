"""Review 10: a document waiting for the destination's key is lost when the origin's
own encryption key (the one its escrow was made to) is revoked before the
destination's new key is published -- the drill of issue 10 (each mission's current
encryption key revoked at HQ)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.demo.network import Network
from tests.system.test_key_rotation import (
    ENV,
    active,
    directory_state,
    history_reasons,
    valise,
    wait_for,
)
from tests.system.test_relay import _wait_receipts


def test_waiting_document_survives_revocation_of_the_origins_own_key(tmp_path: Path) -> None:
    with Network(tmp_path, env=ENV) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        hanoi_enc = active(hanoi.directory, "encryption")
        paris_enc = active(paris.directory, "encryption")
        hanoi.stop()
        valise("keys", "revoke", hanoi_enc[:12], "--reason", "drill", "--dir", str(hq.directory))
        wait_for(
            "M-PARIS to see M-HANOI's key revoked",
            lambda: directory_state(paris.directory, "M-HANOI", hanoi_enc) == "revoked",
        )
        doc = tmp_path / "nv.txt"
        doc.write_text("Note verbale 414\n")
        sent = valise("send", "--dir", str(paris.directory), "--to", "M-HANOI", str(doc))
        assert "the document is queued and will be sealed" in sent.stderr
        mid = sent.stdout.strip()
        # The drill goes on: HQ revokes M-PARIS's encryption key too; M-PARIS replaces it.
        valise("keys", "revoke", paris_enc[:12], "--reason", "drill", "--dir", str(hq.directory))
        wait_for(
            "M-PARIS to replace its encryption key",
            lambda: active(paris.directory, "encryption") != paris_enc,
        )
        hanoi.start()
        wait_for(
            "M-HANOI to replace its encryption key",
            lambda: active(hanoi.directory, "encryption") != hanoi_enc,
        )
        missing = asyncio.run(_wait_receipts(net, "M-PARIS", [mid], 60))
        reasons = asyncio.run(history_reasons(paris.directory, mid))
        assert not missing, f"the waiting document was never sealed or delivered: {reasons}"


def test_waiting_document_survives_a_routine_rotation_of_the_origins_key(tmp_path: Path) -> None:
    """No revocation of the origin's key at all: M-PARIS rotates its encryption key
    (here with no overlap, so the old one retires at the next key round; with the
    default overlap of 7 days, a destination down longer than that does the same)."""
    with Network(tmp_path, env=ENV) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        hanoi_enc = active(hanoi.directory, "encryption")
        paris_enc = active(paris.directory, "encryption")
        hanoi.stop()
        valise("keys", "revoke", hanoi_enc[:12], "--reason", "drill", "--dir", str(hq.directory))
        wait_for(
            "M-PARIS to see M-HANOI's key revoked",
            lambda: directory_state(paris.directory, "M-HANOI", hanoi_enc) == "revoked",
        )
        doc = tmp_path / "nv.txt"
        doc.write_text("Note verbale 415\n")
        sent = valise("send", "--dir", str(paris.directory), "--to", "M-HANOI", str(doc))
        mid = sent.stdout.strip()
        rotate = ("keys", "rotate", "--kind", "encryption", "--now", "--overlap", "0s")
        valise(*rotate, "--dir", str(paris.directory))
        wait_for(
            "M-PARIS's old encryption key to retire",
            lambda: directory_state(hq.directory, "M-PARIS", paris_enc) in ("retired", None),
        )
        hanoi.start()
        wait_for(
            "M-HANOI to replace its encryption key",
            lambda: active(hanoi.directory, "encryption") != hanoi_enc,
        )
        missing = asyncio.run(_wait_receipts(net, "M-PARIS", [mid], 60))
        reasons = asyncio.run(history_reasons(paris.directory, mid))
        assert not missing, f"the waiting document was never sealed or delivered: {reasons}"


def test_doctor_names_a_waiting_document_that_can_no_longer_be_sealed(tmp_path: Path) -> None:
    """The same loss, as the operator sees it: `queue list` keeps saying "waiting for
    an encryption key of M-HANOI" after M-HANOI has one, and `doctor` (which reads no
    held delivery at all) warns of nothing; only the log says why, every key round."""
    import json

    with Network(tmp_path, env=ENV) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        hanoi_enc = active(hanoi.directory, "encryption")
        paris_enc = active(paris.directory, "encryption")
        hanoi.stop()
        valise("keys", "revoke", hanoi_enc[:12], "--reason", "drill", "--dir", str(hq.directory))
        wait_for(
            "M-PARIS to see M-HANOI's key revoked",
            lambda: directory_state(paris.directory, "M-HANOI", hanoi_enc) == "revoked",
        )
        doc = tmp_path / "nv.txt"
        doc.write_text("Note verbale 416\n")
        mid = valise("send", "--dir", str(paris.directory), "--to", "M-HANOI", str(doc))
        mid = mid.stdout.strip()
        valise("keys", "revoke", paris_enc[:12], "--reason", "drill", "--dir", str(hq.directory))
        wait_for(
            "M-PARIS to replace its encryption key",
            lambda: active(paris.directory, "encryption") != paris_enc,
        )
        hanoi.start()
        wait_for(
            "M-PARIS to see M-HANOI's new key",
            lambda: (
                active(hanoi.directory, "encryption") != hanoi_enc
                and directory_state(
                    paris.directory, "M-HANOI", active(hanoi.directory, "encryption")
                )
                == "active"
            ),
            timeout=60,
        )
        import time

        time.sleep(5)
        done = valise("doctor", "--json", "--dir", str(paris.directory), check=False)
        checks = json.loads(done.stdout)
        named = [c for c in checks if mid in str(c.get("detail")) or "escrow" in str(c)]
        assert named, f"doctor says nothing of {mid}: {[(c['check'], c['status']) for c in checks]}"
