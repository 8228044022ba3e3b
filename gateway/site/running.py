"""Whether a gateway is running on a site folder: ``DIR/serving.lock``, held (flock,
shared) by ``valise serve`` while its workers run, released by the kernel when the
process ends however it ends.

The admin CLI asks before doing what the running gateway must do itself: deleting the
private files of keys no longer usable. The gateway does that only once it has loaded
the new keys (so nothing it seals afterwards is wrapped to a key going) and opened what
it received sealed to them (gateway/relay/key_watch.py); the CLI, in another process,
cannot know either (issue 10, review leftover: escrows sealed to a revoked key in the
window between ``valise keys revoke`` and the gateway's next look at its keys).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from gateway.site.keystore import PRIVATE_MODE

NAME = "serving.lock"
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[None]:
    """Hold the folder's serving lock (shared: a second start on the folder is refused
    elsewhere, by its ports and journals, not here)."""
    fd = os.open(directory / NAME, _FLAGS, PRIVATE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def gateway_running(directory: Path) -> bool:
    """True while a ``valise serve`` of ``directory`` holds its serving lock."""
    try:
        fd = os.open(directory / NAME, _FLAGS, PRIVATE_MODE)
    except OSError:
        return True  # cannot tell: leave the pruning to the gateway (it is only delayed)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
