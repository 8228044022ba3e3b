"""Review 10 (config): a rotated TLS key waits as next up to [keys] announce_seconds
(at most 30 days), and it is renewed [keys] tls_renew_days before the certificate ends.
Nothing relates the two: with announce_seconds longer than tls_renew_days, a mission
that never fetches (down, decommissioned but still listed, or hostile) holds every
site's renewed TLS key back past the old certificate's end, so the site's channel
presents an expired certificate until the deadline. tls_renew_days is not checked at
all (0 or negative: renewed only after the certificate has ended)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.site import ConfigError, load_site_config


@pytest.fixture
def hq(tmp_path: Path) -> Path:
    d = tmp_path / "hq"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "init",
            "--site",
            "HQ",
            "--dir",
            str(d),
            "--listen",
            "127.0.0.1:1",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return d


@pytest.mark.parametrize(
    "env",
    [
        {"VALISE_KEYS_TLS_RENEW_DAYS": "7", "VALISE_KEYS_ANNOUNCE_SECONDS": str(30 * 86400)},
        {"VALISE_KEYS_TLS_RENEW_DAYS": "0"},
        {"VALISE_KEYS_TLS_RENEW_DAYS": "-5"},
    ],
)
def test_renewal_lead_must_cover_the_announcement(hq: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_site_config(hq, env)
