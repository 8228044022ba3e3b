"""Optional py-spy sampling of the gateway processes during a relay run (``--profile``).

``py-spy record --gil --format raw`` (not in pyproject: ``pip install py-spy`` into .venv)
writes collapsed stacks, one ``thread (tid): name;frame;frame;... count`` line per distinct
stack, of the samples where a thread held the GIL: Python actually running, not waiting.
(Without ``--gil``, py-spy also counts threads blocked in epoll, fsync or a socket write on
a saturated machine, which reads as CPU but is not.) C code that releases the GIL (SQLite
statements and commits, HPKE/AEAD in cryptography) is not in these samples; the /proc CPU
figures cover it. The summary gives, per process, the share of wall-clock time the GIL was
held, by thread, by kind of work, the hottest leaf functions (self time) and the hottest
functions of this project's packages including their callees.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

RATE_HZ = 100
_OURS = ("gateway/", "envelope/", "crypto/", "routing/", "config/")
# What a leaf frame's file says the process was doing (first match wins).
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SQLite call wrappers (the SQL itself runs without the GIL)", ("gateway/store/sqlite",)),
    ("PostgreSQL client (asyncpg)", ("asyncpg", "gateway/store/postgres")),
    ("XML head parse/serialise", ("envelope/xmlsafe.py", "envelope/head.py", "xml/", "expat")),
    ("crypto (HPKE, Ed25519, AEAD, hashes)", ("crypto/", "hashlib", "hmac")),
    ("other envelope code", ("envelope/",)),
    ("event loop, executor hand-offs", ("asyncio/", "selectors.py", "concurrent/", "threading")),
    ("aiohttp, HTTP, TLS", ("aiohttp", "ssl.py", "multidict", "yarl")),
    ("file system (inbox writes)", ("pathlib.py", "shutil.py", "os.py", "genericpath.py")),
    ("logging, JSON", ("logging/", "json/")),
    ("gateway code", ("gateway/", "routing/", "config/")),
)
# The frames that mean "waiting for something", however py-spy saw them.
_IDLE_LEAVES = ("select (selectors.py)", "wait (threading.py)", "_worker (concurrent")


def py_spy() -> str | None:
    found = Path(sys.executable).with_name("py-spy")
    return str(found) if found.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, out_dir: Path, pids: dict[str, int]) -> None:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed (.venv/bin/pip install py-spy)")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.files = {site: out_dir / f"{site}.raw.txt" for site in pids}
        self.procs = {
            site: subprocess.Popen(
                [
                    exe,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(RATE_HZ),
                    "--format",
                    "raw",
                    "--threads",
                    "--nolineno",
                    "--nonblocking",
                    "--gil",
                    "--output",
                    str(self.files[site]),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for site, pid in pids.items()
        }

    def stop(self, seconds: float) -> str:
        """Stop sampling (SIGINT makes py-spy write its file); return the summary."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return "\n".join(summarise(site, path, seconds) for site, path in self.files.items())


def summarise(site: str, path: Path, seconds: float, top: int = 12) -> str:
    if not path.exists():
        return f"  {site}: no py-spy output"
    by_thread: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        head, _, frames_text = stack.partition(": ")
        frames = frames_text.split(";")
        thread = frames[0].split(" (")[0] if frames else head
        leaf = frames[-1]
        if leaf.startswith(_IDLE_LEAVES):
            continue
        total += count
        by_thread[thread] += count
        leaves[leaf] += count
        kinds[_category(leaf)] += count
        for frame in set(frames[1:]):
            if any(pkg in frame for pkg in _OURS):
                inclusive[frame] += count
    wall = max(seconds, 1e-9) * RATE_HZ
    out = [f"  {site}: GIL held {total / wall:.0%} of the time (py-spy --gil, {seconds:.0f} s)"]
    out += [f"    thread {t}: {n / wall:.0%}" for t, n in by_thread.most_common(4)]
    out.append("    by what the leaf frame is doing:")
    out += [f"      {n / max(total, 1):5.1%}  {k}" for k, n in kinds.most_common()]
    out.append("    hottest leaves (self):")
    out += [f"      {n / max(total, 1):5.1%}  {f}" for f, n in leaves.most_common(top)]
    out.append("    hottest project functions (with callees):")
    out += [f"      {n / max(total, 1):5.1%}  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(out)


def _category(leaf: str) -> str:
    for name, needles in CATEGORIES:
        if any(n in leaf for n in needles):
            return name
    return "other"
