"""`valise send` in a revocation window on a live network (issue 10): HQ revokes
M-HANOI's encryption key while M-HANOI is down, so the directory lists none for it;
M-PARIS's operator sends to M-HANOI all the same. The document is queued at M-PARIS,
held, and once M-HANOI is back, has replaced its key and HQ has published the new
one, M-PARIS's running gateway seals it to that key by itself: delivered once, with
a receipt, and never sealed to the revoked key anywhere.

HQ + two missions as processes on loopback (gateway/demo/network.py), short timings."""

from __future__ import annotations

import asyncio
from pathlib import Path

from envelope.open import parse_framed_head
from gateway.demo.network import Network
from gateway.relay.key_wait import WAITING_FOR_KEY
from gateway.site.context import load_site
from tests.system.test_key_rotation import (
    ENV,
    active,
    directory_state,
    history_reasons,
    valise,
    wait_for,
)
from tests.system.test_relay import _check_exactly_once, _wait_receipts


async def _stanzas(site_dir: Path, mid: str) -> list[tuple[str, str]] | None:
    ctx = await load_site(site_dir)
    try:
        record = await ctx.store.get_envelope(mid)
        if record is None:
            return None
        return [(s.site, s.key_id) for s in parse_framed_head(record.data)[0].head.recipients]
    finally:
        await ctx.store.close()


def test_a_document_sent_in_the_window_waits_and_is_sealed_to_the_new_key(tmp_path: Path) -> None:
    with Network(tmp_path, env=ENV) as net:
        hq, paris, hanoi = net.sites["HQ"], net.sites["M-PARIS"], net.sites["M-HANOI"]
        old_enc = active(hanoi.directory, "encryption")
        hanoi.stop()  # so that it cannot replace the key HQ now revokes
        valise("keys", "revoke", old_enc[:12], "--reason", "drill", "--dir", str(hq.directory))
        wait_for(
            "M-PARIS to see M-HANOI's key revoked",
            lambda: directory_state(paris.directory, "M-HANOI", old_enc) == "revoked",
        )
        doc = tmp_path / "nv.txt"
        doc.write_text("Note verbale 413\n")
        sent = valise("send", "--dir", str(paris.directory), "--to", "M-HANOI", str(doc))
        assert "no active encryption key for M-HANOI yet; the document is queued" in sent.stderr
        mid = sent.stdout.strip()
        held = asyncio.run(history_reasons(paris.directory, mid))
        assert f"held: {WAITING_FOR_KEY} M-HANOI" in held, held
        stanzas = asyncio.run(_stanzas(paris.directory, mid))
        assert stanzas is not None and ("M-HANOI", old_enc) not in stanzas

        hanoi.start()  # it sees the revocation, replaces its key, HQ publishes it
        wait_for(
            "M-HANOI to replace its encryption key",
            lambda: active(hanoi.directory, "encryption") != old_enc,
        )
        new_enc = active(hanoi.directory, "encryption")
        assert not asyncio.run(_wait_receipts(net, "M-PARIS", [mid], 60))
        asyncio.run(_check_exactly_once(net, "M-HANOI", [mid]))
        assert (hanoi.directory / "inbox" / mid / "nv.txt").read_text() == "Note verbale 413\n"
        # Every copy anywhere is sealed to the new key; none ever to the revoked one.
        for site in (paris, hq, hanoi):
            assert asyncio.run(_stanzas(site.directory, mid)) == [("M-HANOI", new_enc)], site
        reasons = asyncio.run(history_reasons(paris.directory, mid))
        assert any(r.startswith("queued: resealed") for r in reasons), reasons
