"""Review 10: HQ records a directory fetch for any certificate its CA issued to a
site, pinned or not (/v1/directory admits them as PUBLIC, and channel.directory
records the fetch whatever the standing). So whoever holds a TLS key HQ *revoked*
(a stolen one: the reason it was revoked) makes HQ believe the real site fetched
the announcement: rotations activate early while the real site is down."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from crypto.x509 import certificate_pin
from gateway.demo.network import Network
from gateway.site.keyring import load_ring, tls_files
from tests.system.test_key_announce import (
    _as,
    _get,
    announced_in,
    fetched,
    next_key,
    state_in_ring,
)
from tests.system.test_key_rotation import ENV, active, directory_state, valise, wait_for


def test_a_revoked_tls_key_cannot_fetch_on_behalf_of_its_site(tmp_path: Path) -> None:
    with Network(tmp_path, env=ENV) as net:
        hq, hanoi = net.sites["HQ"], net.sites["M-HANOI"]
        stolen_cert, stolen_key = tls_files(load_ring(hanoi.directory / "keys"))
        stolen_pin = certificate_pin(stolen_cert)
        # HQ revokes M-HANOI's TLS key (compromised); M-HANOI replaces it itself.
        valise("keys", "revoke", stolen_pin[:12], "--reason", "stolen", "--dir", str(hq.directory))
        wait_for(
            "M-HANOI to replace its TLS key",
            lambda: active(hanoi.directory, "tls") != stolen_pin,
            timeout=60,
        )
        assert directory_state(hq.directory, "M-HANOI", stolen_pin) == "revoked"
        hanoi.stop()  # the real M-HANOI is down (or cut off)

        out = valise("keys", "rotate", "--kind", "signing", "--dir", str(hq.directory))
        serial, _ = announced_in(out.stdout)
        new = next_key(hq.directory, "signing")
        wait_for(
            "M-PARIS to fetch the announcement",
            lambda: (fetched(hq.directory)["M-PARIS"] or 0) >= serial,
        )
        assert (fetched(hq.directory)["M-HANOI"] or 0) < serial

        # The thief fetches the directory with the revoked certificate.
        thief = _as(hanoi.directory, stolen_cert, stolen_key)
        status, _ = asyncio.run(_get(hq.port, thief, path="/v1/directory"))
        print("thief's fetch:", status)
        recorded = fetched(hq.directory)["M-HANOI"] or 0
        time.sleep(3)  # several key rounds at HQ
        assert recorded < serial, (
            f"HQ recorded M-HANOI as having fetched {recorded} from a revoked certificate;"
            f" HQ's key {new} is now {state_in_ring(hq.directory, new)} while M-HANOI is down"
        )
