"""The key watcher takes up a change an operator made in another process (``valise
keys revoke`` writes the ring; ``valise site …`` the directory) within a second or so,
not at its next ``[keys] check_seconds`` round (review 13, adv13 finding 4: the first
document after a revoke waited 32 s for it)."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from pathlib import Path

import pytest

from gateway.relay import key_watch
from gateway.relay.key_watch import KeyWatcher
from tests.component.support import Net

WITHIN_SECONDS = 10.0  # below check_seconds (60), far above FILES_POLL_SECONDS


async def _rounds_after_touching(net: Net, monkeypatch: pytest.MonkeyPatch, path: Path) -> int:
    ctx = net.hanoi
    assert ctx.config.keys.check_seconds > 3 * WITHIN_SECONDS  # the default, 60
    watcher = KeyWatcher(ctx, None, [])
    rounds = asyncio.Queue[datetime]()

    async def counted(now: datetime) -> None:
        rounds.put_nowait(now)

    monkeypatch.setattr(watcher, "round", counted)
    task = asyncio.create_task(watcher.loop())
    try:
        await asyncio.wait_for(rounds.get(), WITHIN_SECONDS)  # the first, at start
        await asyncio.sleep(2 * key_watch.FILES_POLL_SECONDS)
        assert rounds.empty()  # nothing changed: no round before check_seconds
        if path.exists():
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        else:  # a single-generation key folder: the first ``valise keys rotate`` makes it
            path.write_text("{}")
        await asyncio.wait_for(rounds.get(), WITHIN_SECONDS)
        return 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_ring_changed_by_another_process_starts_a_round(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = net.hanoi.config.keys_dir / "ring.json"
    assert await _rounds_after_touching(net, monkeypatch, ring) == 2


async def test_a_directory_written_by_another_process_starts_a_round(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = net.hanoi.config.directory / "directory.xml"
    assert await _rounds_after_touching(net, monkeypatch, directory) == 2
