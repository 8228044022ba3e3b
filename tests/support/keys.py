"""A site's keys as ``valise keys list --json`` prints them, read in this process.

The system tests look at a site's keys many times (to find the active one, to wait
for a state), and each ``valise`` start costs about 0.7 s of CPU in imports: a
rotation test spent half its CPU there. The rows come from the same function the
command prints (gateway/trust/key_report.py key_rows); the command itself is tested
as a process in test_keys_prefix_cli.py and test_cli_exit_codes.py."""

from __future__ import annotations

from pathlib import Path

from config.site import load_site_config
from gateway.site.keyring import load_ring
from gateway.trust.key_report import key_rows


def keys_of(site_dir: Path) -> list[dict[str, str]]:
    """``valise keys list --json --dir site_dir``, parsed."""
    config = load_site_config(site_dir)
    return key_rows(load_ring(config.keys_dir, config.key_passphrase), config)


def active(site_dir: Path, kind: str) -> str:
    """The id of the site's active key of ``kind`` (signing, encryption, tls)."""
    return next(k["id"] for k in keys_of(site_dir) if k["kind"] == kind and k["state"] == "active")
