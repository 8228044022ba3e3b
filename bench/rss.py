"""Peak RSS of a fresh child process sealing / opening a 1 GiB file: rss.seal.1g, rss.open.1g.

Each operation runs in its own fresh ``python -m bench.rss_child`` process, started by a
minimal launcher that reports ``RUSAGE_CHILDREN.ru_maxrss`` (the row); the child's own
``ru_maxrss`` and ``VmHWM`` are printed beside it as cross-checks. MB here are 10**6 bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import MB, MIB, Row

GIB = 1024 * MIB
MIN_FREE_BYTES = 4 * 10**9
TMP_BASE = Path("/tmp")
_ROOT = Path(__file__).resolve().parent.parent


# ru_maxrss is not per exec: Linux carries into it the high-water RSS of the process that
# spawned it (fork copies the parent's mapped pages; vfork shares the parent's memory
# until exec). A child spawned straight from this ~250 MB process would report ~250 MB
# whatever it does. So a minimal launcher (bare interpreter, ~10 MB) spawns the child and
# reports its own RUSAGE_CHILDREN, which then covers that one child only.
_LAUNCHER = (
    "import json, resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:]).returncode\n"
    "kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(json.dumps({'children_maxrss_kib': kib}))\n"
    "sys.exit(rc)\n"
)


def _child(*args: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "bench.rss_child", *args],
        cwd=_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: rss child {args[0]} failed:\n{done.stderr}")
    report: dict[str, float] = {}
    for line in done.stdout.strip().splitlines()[-2:]:
        report.update(json.loads(line))
    print(
        f"  rss child {args[0]}: RUSAGE_CHILDREN {_mb(report['children_maxrss_kib']):.1f} MB,"
        f" self ru_maxrss {_mb(report['maxrss_kib']):.1f} MB,"
        f" VmHWM {_mb(report['vmhwm_kib']):.1f} MB, {report['seconds']:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    return report


def _mb(kib: float) -> float:
    return kib * 1024 / MB


def _write_input(path: Path) -> None:
    block = os.urandom(MIB)
    with path.open("wb") as f:
        for _ in range(GIB // MIB):
            f.write(block)


def measure() -> tuple[list[Row], list[str]]:
    """The two RSS rows, or none and the reason they were skipped; plus notes."""
    free = shutil.disk_usage(TMP_BASE).free
    if free < MIN_FREE_BYTES:
        return [], [f"rss.*.1g skipped: {free / 10**9:.1f} GB free under {TMP_BASE}, need 4 GB"]
    tmp = Path(tempfile.mkdtemp(prefix="valise-bench-rss-", dir=TMP_BASE))
    try:
        source, envelope, out_dir = tmp / "big.bin", tmp / "big.valise", tmp / "opened"
        _write_input(source)
        idle = _child("idle")
        sealed = _child("seal", str(source), str(envelope))
        source.unlink()
        opened = _child("open", str(envelope), str(out_dir))
        if (out_dir / "big.bin").stat().st_size != GIB:
            raise SystemExit("bench: the 1 GiB envelope did not open to its size")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = [
        Row("rss.seal.1g", _mb(sealed["children_maxrss_kib"]), "MB"),
        Row("rss.open.1g", _mb(opened["children_maxrss_kib"]), "MB"),
    ]
    notes = [
        f"rss baseline: a child that only imports the modules peaks at"
        f" {_mb(idle['children_maxrss_kib']):.1f} MB",
        f"1 GiB through files (in the rss children): seal {GIB / MB / sealed['seconds']:.0f} MB/s,"
        f" open {GIB / MB / opened['seconds']:.0f} MB/s",
    ]
    return rows, notes
