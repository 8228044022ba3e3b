"""Running ``valise`` as an operator does: ``python -m gateway`` in a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def valise(
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    check: bool = False,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``valise ARGS`` (this checkout's gateway, this interpreter) and return what it
    printed and its exit code; with ``check``, fail the test unless it exited 0."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check:
        shown = " ".join(map(str, args))
        assert done.returncode == 0, f"valise {shown}: {done.stdout}{done.stderr}"
    return done
