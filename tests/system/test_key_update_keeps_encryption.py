"""Review 10, F2 (the deliberate half): a mission may not revoke its own active
encryption key in a /v1/keys update without activating a replacement. Mail to a site
with no active encryption key waits (gateway/relay/key_wait.py), so a hostile mission could
otherwise hold what HQ sends to it (and, in one envelope, to other missions too). HQ's
own revocation of a mission's key (a compromise) stays possible."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from config.site import load_site_config
from gateway.demo.network import Network
from gateway.trust.key_updates import KeyUpdate, KeyUpdateError, encode_update, post_update
from gateway.trust.lifecycle import KeyOps
from routing.directory import KeyState
from routing.key_changes import KeyChange
from tests.system.test_key_rotation import ENV, active, directory_state


async def _revoke_own_without_replacement(site_dir: Path) -> None:
    """What a hostile mission sends HQ: its active encryption key revoked, no new one."""
    ops = KeyOps(load_site_config(site_dir))
    ring, directory = ops.ring(), ops.directory()
    enc = ring.active("encryption").id
    change = KeyChange(ops.site, "encryption", enc, KeyState.REVOKED)
    update = KeyUpdate(ops.site, datetime.now(UTC), (change,))
    body = encode_update(update, ops._signer(ring, directory))
    async with ops.hub_session() as session:
        await post_update(session, ops.config.site.hub_endpoint, body)


def test_a_mission_cannot_revoke_its_encryption_key_without_a_replacement(
    tmp_path: Path,
) -> None:
    with Network(tmp_path, env=ENV) as net:
        hq, hanoi = net.sites["HQ"], net.sites["M-HANOI"]
        hanoi_enc = active(hanoi.directory, "encryption")
        hanoi.stop()  # the hostile mission's operator runs its own code instead
        with pytest.raises(KeyUpdateError, match="no active encryption key"):
            asyncio.run(_revoke_own_without_replacement(hanoi.directory))
        assert directory_state(hq.directory, "M-HANOI", hanoi_enc) == "active"
