"""Review 10: `keys rotate --overlap` values the documented table says are usage
errors (exit 2) end on a traceback (exit 1), and an out-of-range overlap is refused
only after the new key was generated and published as next (never announced, so the
running site never activates it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _valise(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def hq(tmp_path: Path) -> Path:
    d = tmp_path / "hq"
    done = _valise("init", "--site", "HQ", "--dir", str(d), "--listen", "127.0.0.1:1")
    assert done.returncode == 0, done.stderr
    return d


@pytest.mark.parametrize("overlap", ["inf", "nan", "1e20s", "1e9d"])
def test_bad_overlap_is_a_usage_error_not_a_traceback(hq: Path, overlap: str) -> None:
    done = _valise(
        "keys", "rotate", "--kind", "signing", "--overlap", overlap, "--dry-run", "--dir", str(hq)
    )
    assert "Traceback" not in done.stderr, done.stderr[-300:]
    assert done.returncode == 2


def test_out_of_range_overlap_publishes_nothing(hq: Path) -> None:
    done = _valise("keys", "rotate", "--kind", "signing", "--overlap", "3000000d", "--dir", str(hq))
    assert done.returncode == 2
    keys = json.loads(_valise("keys", "list", "--json", "--dir", str(hq)).stdout)
    pending = [k for k in keys if k["kind"] == "signing" and k["state"] == "next"]
    assert pending == [], f"refused, yet a next key was generated and published: {pending}"
