"""How long ago a mission last got its directory from HQ.

A mission cut off from HQ keeps routing on the directory it holds, so it must know how
old that knowledge is: a revoked key, a new site, a moved endpoint all arrive only with
a fresh directory.

Rules:
- Fresh means a successful fetch from HQ whose content verified (a new serial or the
  same one again), not merely a newer serial: the gateway's directory loop calls
  :func:`mark_fetched` after each such fetch, which sets the modification time of
  DIR/directory.fetched (0600). The running gateway and every CLI command read it.
- A site that has never recorded a fetch (made before this file existed) counts from
  DIR/directory.xml's modification time (join writes it from HQ's answer).
- After ``[relay] directory_max_age_seconds`` the directory is stale: /readyz fails,
  doctor fails, the metric valise_directory_age_seconds shows the age, and every CLI
  command prints a warning on stderr. Sending goes on: mail must not stop.
- HQ publishes the directory: its directory is never stale by this rule.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from config.site import SiteConfig
from gateway.site.modes import create_private_file

FETCHED = "directory.fetched"


def mark_fetched(site_dir: Path, now: datetime) -> None:
    """Record a successful, verified fetch of the directory from HQ at ``now``."""
    path = site_dir / FETCHED
    create_private_file(path)
    stamp = now.timestamp()
    os.utime(path, (stamp, stamp))


def last_fetched(site_dir: Path) -> datetime | None:
    """When the directory was last fetched from HQ (see the rules), or None."""
    for name in (FETCHED, "directory.xml"):
        try:
            return datetime.fromtimestamp((site_dir / name).stat().st_mtime, UTC)
        except FileNotFoundError:
            continue
    return None


def directory_age(config: SiteConfig, now: datetime) -> float | None:
    """Seconds since the last fetch from HQ; None at HQ. A site with no record at all
    is infinitely old."""
    if config.is_hub:
        return None
    fetched = last_fetched(config.directory)
    if fetched is None:
        return float("inf")
    return max(0.0, (now - fetched).total_seconds())


def _span(seconds: float) -> str:
    if seconds == float("inf"):
        return "an unknown time"
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds:.0f} s"


def stale_reason(config: SiteConfig, now: datetime) -> str | None:
    """One line saying the directory is stale and since when, or None while fresh."""
    age = directory_age(config, now)
    limit = config.relay.directory_max_age_seconds
    if age is None or age <= limit:
        return None
    return (
        f"directory not fetched from HQ for {_span(age)} (directory_max_age_seconds "
        f"{limit:.0f}): revocations and new keys since then are unknown here; "
        f"is HQ at {config.site.hub_endpoint} reachable?"
    )
