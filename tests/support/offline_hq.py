"""An HQ site folder with no process running, and missions that exist only as entries
in its directory (their private keys held by the test), for CLI tests that need no
network: ``valise`` commands run in-process with click's CliRunner."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner, Result

from crypto.keys import DecryptionKey, SigningKey
from gateway.cli.main import main
from gateway.site.context import create_store
from gateway.trust.enroll import init_hub
from gateway.trust.publish import publish
from routing.directory import Directory, KeyState, SiteEntry
from routing.key_changes import enrol_site


@dataclass
class PaperMission:
    """A mission known to HQ's directory only; the test holds its private keys."""

    site: str
    signing: SigningKey
    decryption: DecryptionKey
    tls_pin: str


def make_hq(root: Path) -> Path:
    hq = root / "HQ"
    init_hub(hq, site="HQ", listen="127.0.0.1:1")
    asyncio.run(create_store(hq))
    return hq


def add_mission(
    hq: Path,
    site: str,
    *,
    encryption: KeyState = KeyState.ACTIVE,
    tls_pin: str | None = None,
) -> PaperMission:
    """Enrol ``site`` in HQ's directory (signed by HQ's directory key) with fresh keys,
    its encryption key in state ``encryption``."""
    m = PaperMission(
        site, SigningKey.generate(), DecryptionKey.generate(), tls_pin or secrets.token_hex(32)
    )
    entry = SiteEntry(
        site=site,
        endpoint="https://127.0.0.1:1",
        signing=((m.signing.public, KeyState.ACTIVE),),
        encryption=((m.decryption.public, encryption),),
        tls=((m.tls_pin, KeyState.ACTIVE),),
    )
    publish(hq, lambda d, now: enrol_site(d, entry, now=now))
    return m


def set_encryption_keys(
    hq: Path, site: str, keys: tuple[tuple[DecryptionKey, KeyState], ...]
) -> Directory:
    """Publish a new version in which ``site``'s encryption keys are ``keys``."""

    def change(d: Directory, now: datetime) -> Directory:
        sites = tuple(
            replace(e, encryption=tuple((k.public, s) for k, s in keys)) if e.site == site else e
            for e in d.sites
        )
        return Directory(d.serial + 1, d.issued, d.hub, sites)

    directory, _ = publish(hq, change)
    return directory


def valise(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)
