"""Fault injection for the kill -9 tests: ``[relay] crash_at`` / ``VALISE_RELAY_CRASH_AT``.

At a named point the process sends itself SIGKILL (no cleanup, no flush, exactly
what an operator's ``kill -9`` or a power cut does), once per site folder: a
marker file stops it from crashing again after the restart.

Points:
    hop-before-commit     receiver: batch validated, nothing committed yet
    hop-after-commit      receiver: committed, acknowledgement not yet sent
    courier-after-claim   sender: batch leased, not yet posted
    courier-after-post    sender: peer acknowledged, not yet marked forwarded
    deliver-after-inbox   destination: a batch's parts written, its receipts not yet queued
    deliver-after-receipt destination: the batch's receipts queued and its items made
                          available (one commit), their couriers not yet started
    receipt-before-mark   origin: a batch's receipts verified, not yet recorded
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

POINTS = frozenset(
    {
        "hop-before-commit",
        "hop-after-commit",
        "courier-after-claim",
        "courier-after-post",
        "deliver-after-inbox",
        "deliver-after-receipt",
        "receipt-before-mark",
    }
)


def crash_point(configured: str, name: str, site_dir: Path) -> None:
    """SIGKILL this process if ``name`` is the configured crash point (first time only)."""
    if configured != name:
        return
    marker = site_dir / f".crashed-{name}"
    if marker.exists():
        return
    marker.write_text("crashed here once\n")
    os.kill(os.getpid(), signal.SIGKILL)
