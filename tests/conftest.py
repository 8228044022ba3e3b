"""Shared fixtures: fixed keys (from constant seeds) and an envelope factory."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from crypto.keys import DecryptionKey, SigningKey
from crypto.random import FixedRandom
from envelope.model import PartInfo, SealedHeader
from envelope.seal import Recipient, Sealing, new_routing, seal_bytes

NOW = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)


def require_tool(name: str) -> None:
    """Skip outside CI when a system tool is missing; with CI=true a missing tool fails."""
    import shutil

    if shutil.which(name) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI but is not installed")
        pytest.skip(f"{name} is not installed")


@dataclass(frozen=True)
class Site:
    site: str
    signing: SigningKey
    decryption: DecryptionKey

    @property
    def recipient(self) -> Recipient:
        return Recipient(self.site, self.decryption.public)


def make_site(site: str, n: int) -> Site:
    return Site(
        site,
        SigningKey.from_seed(bytes([n]) * 32),
        DecryptionKey.from_seed(bytes([n + 100]) * 96),
    )


@pytest.fixture(scope="session")
def hq() -> Site:
    return make_site("HQ", 1)


@pytest.fixture(scope="session")
def paris() -> Site:
    return make_site("M-PARIS", 2)


@pytest.fixture(scope="session")
def hanoi() -> Site:
    return make_site("M-HANOI", 3)


SealFn = Callable[..., bytes]


def seal_envelope(
    sender: Site,
    recipients: Sequence[Site],
    parts: Sequence[bytes],
    *,
    names: Sequence[str] | None = None,
    subject: str | None = "Note verbale",
    seed: bytes = b"test",
) -> bytes:
    rng = FixedRandom(seed)
    routing = new_routing(
        origin=sender.site, destinations=[r.site for r in recipients], now=NOW, rng=rng
    )
    names = names or [f"part{i}.bin" for i in range(len(parts))]
    sealed = SealedHeader(
        parts=tuple(
            PartInfo(n, "application/octet-stream", len(p))
            for n, p in zip(names, parts, strict=True)
        ),
        subject=subject,
    )
    sealing = Sealing(
        routing=routing,
        sender=sender.signing,
        recipients=[r.recipient for r in recipients],
        sealed=sealed,
        rng=rng,
    )
    return seal_bytes(sealing, parts)
