"""The circular rows: one 4 KiB document from HQ to 97 missions, every receipt back.

circular.r97.seal
    env/s sealing one 4 KiB envelope to 97 recipients (the seal.4k.r97 measurement).
circular.r97.e2e
    s from submitting one circular at HQ (POST /v1/documents) until all 97 verified
    receipts are recorded at HQ (destinations.receipt_at); best of R runs.
circular.r97.p50ms, circular.r97.p99ms
    ms per destination from submission to its receipt recorded at HQ, over all runs.

HQ runs as its own process (gateway/demo/network.py); the missions run in one farm process
(bench/farm.py): each its own keys, TLS certificate, SQLite store and listener, and the
real workers and channel app, but sharing one core and GIL (pessimistic for the
missions; loopback links are optimistic for the network). Nothing is mocked: HQ posts
to each mission over mutual TLS, each mission opens its envelope and seals a signed
receipt, HQ checks, time-stamps, opens and records each receipt per destination. The
driver polls HQ's SQLite read-only.

``python -m bench.circular [--quick] [--missions N] [--runs R]`` runs it alone (no JSON);
``python -m bench --only circular`` measures it as rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import envelope4k
from bench.common import QUICK, Row
from bench.relay_stages import process_cpu, quantile
from gateway.demo.network import Network, free_port
from gateway.trust.enroll import add_site, join

HUB = "HQ"
PAYLOAD_BYTES = 4096
POLL_S = 0.02
STALL_SECONDS = 90.0  # no new receipt for this long: the run is stuck
# The farm starts its sites one by one, each unlocking its passphrase-protected keys (a
# deliberately slow KDF) on the one loop: minutes for 97 on a busy 2-core machine.
READY_TIMEOUT_S = 900.0
NET_ENV = {
    "VALISE_RELAY_RETRY_BASE_SECONDS": "0.2",
    "VALISE_RELAY_RETRY_MAX_SECONDS": "1",
    "VALISE_HTTP_ENABLED": "yes",
    "VALISE_SMTP_ENABLED": "no",
}
IDLE_SECONDS = 3.0  # the farm's CPU while nothing is sent: its background loops


@dataclass(frozen=True)
class Plan:
    missions: int
    runs: int


FULL_PLAN = Plan(missions=97, runs=5)
QUICK_PLAN = Plan(missions=8, runs=1)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def mission_ids(n: int) -> list[str]:
    return [f"M-{i:03d}" for i in range(1, n + 1)]


def crypto_rates(payload: bytes) -> dict[str, float]:
    """One quick round of the 4 KiB benches this row is read against (env/s)."""
    wanted = {"seal.4k", "open.4k", "seal.4k.r97"}
    return {b.name: b.measure() for b in envelope4k.benches(payload, QUICK) if b.name in wanted}


class _Probe:
    """HQ's store, read-only, from this process (as bench/relay.py's receipt probe)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)

    def receipts(self, message_id: str) -> dict[str, datetime]:
        rows = self.conn.execute(
            "SELECT site, receipt_at FROM destinations WHERE message_id = ?"
            " AND receipt_at IS NOT NULL",
            (message_id,),
        ).fetchall()
        return {r[0]: datetime.fromisoformat(r[1]) for r in rows}

    def failed(self, message_id: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT site, reason FROM destinations WHERE message_id = ? AND outcome = 'failed'",
            (message_id,),
        ).fetchall()
        return [f"{r[0]}: {r[1]}" for r in rows]

    def fetched(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT site, serial FROM directory_fetches").fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def history(self, message_id: str) -> list[tuple[str, str, datetime]]:
        rows = self.conn.execute(
            "SELECT coalesce(peer, ''), state, at FROM history WHERE message_id = ? ORDER BY id",
            (message_id,),
        ).fetchall()
        return [(r[0], r[1], datetime.fromisoformat(r[2])) for r in rows]

    def close(self) -> None:
        self.conn.close()


def _integrator_token(directory: Path) -> str:
    add = ["integrator", "add", "bench", "--json", "--dir", str(directory)]
    out = subprocess.run(
        [sys.executable, "-m", "gateway", *add], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"integrator add: {out.stderr.strip()}")
    token: str = json.loads(out.stdout)["token"]
    return token


async def _submit(url: str, token: str, sites: Sequence[str], payload: bytes, n: int) -> str:
    import aiohttp

    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/octet-stream",
        "Valise-To": ",".join(sites),
        "Valise-Filename": f"circular-{n}.bin",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=payload, headers=headers) as r,
    ):
        body = await r.read()
        if r.status != 202:
            raise RuntimeError(f"POST {url}: HTTP {r.status}: {body[:300]!r}")
        message_id: str = json.loads(body)["id"]
        return message_id


def _wait_all(probe: _Probe, message_id: str, sites: Sequence[str]) -> dict[str, datetime]:
    got: dict[str, datetime] = {}
    last_change = time.monotonic()
    while len(got) < len(sites):
        now = probe.receipts(message_id)
        if len(now) != len(got):
            got, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > STALL_SECONDS:
            failed = probe.failed(message_id)
            raise RuntimeError(
                f"circular {message_id}: stuck at {len(got)}/{len(sites)} receipts"
                + (f"; failed: {failed[:3]}" if failed else "")
            )
        time.sleep(POLL_S)
    return got


def _stages(probe: _Probe, message_id: str, t0: datetime, accepted: datetime) -> str:
    """When HQ forwarded the copies and recorded the receipts (s after submission)."""
    rows = probe.history(message_id)

    def span(what: list[datetime]) -> str:
        if not what:
            return "none"
        return f"{(min(what) - t0).total_seconds():.2f}..{(max(what) - t0).total_seconds():.2f} s"

    forwarded = [at for _, state, at in rows if state == "forwarded"]
    first: dict[str, datetime] = {}  # per destination (its row's, then its hop row's)
    for peer, state, at in rows:
        if state == "delivered" and peer:
            first.setdefault(peer, at)
    recorded = list(first.values())
    return (
        f"202 after {(accepted - t0).total_seconds():.2f} s; forwarded {span(forwarded)}"
        f" ({len(forwarded)}); receipts recorded {span(recorded)} ({len(recorded)})"
    )


def _enrol(net: Network, sites: Sequence[str], root: Path) -> list[Path]:
    hq = net.sites[HUB]
    folders = []
    for site in sites:
        port = free_port()
        bundle = root / f"{site}.bundle"
        folder = root / site
        add_site(hq.directory, site, f"https://127.0.0.1:{port}", bundle)
        asyncio.run(join(bundle, folder, listen=f"127.0.0.1:{port}"))
        bundle.unlink()
        folders.append(folder)
    return folders


def _start_farm(folders: Sequence[Path], root: Path) -> subprocess.Popen[bytes]:
    ready = root / "farm.ready"
    logfile = (root / "farm.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.farm", "--ready", str(ready), *map(str, folders)],
        stdout=logfile,
        stderr=logfile,
        start_new_session=True,
        env={**os.environ, **NET_ENV},
    )
    logfile.close()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"the farm exited: see {root / 'farm.log'}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the farm did not become ready: see {root / 'farm.log'}")
        time.sleep(0.1)
    return proc


def _wait_fetched(probe: _Probe, sites: Sequence[str]) -> float:
    """Until every mission fetched HQ's directory at its latest serial; seconds waited."""
    start = time.monotonic()
    while True:
        fetched = probe.fetched()
        latest = max(fetched.values(), default=0)
        if all(fetched.get(s) == latest for s in sites):
            return time.monotonic() - start
        if time.monotonic() - start > READY_TIMEOUT_S:
            behind = [s for s in sites if fetched.get(s) != latest]
            raise RuntimeError(f"{len(behind)} missions never fetched the directory: {behind[:5]}")
        time.sleep(0.2)


def run(plan: Plan, payload: bytes) -> tuple[list[float], list[float], list[str]]:
    """(e2e seconds per run, per-destination ms over all runs, notes)."""
    root = Path(tempfile.mkdtemp(prefix="valise-bench-circular-"))
    sites = mission_ids(plan.missions)
    net = Network(root / "net", missions=(), env=NET_ENV)
    farm: subprocess.Popen[bytes] | None = None
    ok = False
    try:
        net.start()
        hq = net.sites[HUB]
        t = time.monotonic()
        folders = _enrol(net, sites, root / "net")
        log(f"  enrolled {len(sites)} missions in {time.monotonic() - t:.0f} s (not timed)")
        cpu_hq0 = process_cpu(hq.proc.pid) if hq.proc else 0.0
        t = time.monotonic()
        farm = _start_farm(folders, root)
        log(f"  the farm started {len(sites)} sites in {time.monotonic() - t:.0f} s (not timed)")
        probe = _Probe(hq.directory / "store.sqlite")
        try:
            log(f"  every mission fetched the directory after {_wait_fetched(probe, sites):.1f} s")
            idle0 = process_cpu(farm.pid)
            time.sleep(IDLE_SECONDS)
            idle = (process_cpu(farm.pid) - idle0) / IDLE_SECONDS
            log(
                f"  the farm idle: {idle:.2f} CPU s/s (the background loops of"
                f" {len(sites)} sites); load average {os.getloadavg()[0]:.1f}"
            )
            token = _integrator_token(hq.directory)
            url = f"http://127.0.0.1:{hq.ports['http']}/v1/documents"
            e2e: list[float] = []
            samples: list[float] = []
            for n in range(plan.runs + 1):  # the first is the warm-up, not counted
                cpu0 = (process_cpu(hq.proc.pid) if hq.proc else 0.0, process_cpu(farm.pid))
                t0 = datetime.now(UTC)
                message_id = asyncio.run(_submit(url, token, sites, payload, n))
                accepted = datetime.now(UTC)
                got = _wait_all(probe, message_id, sites)
                cpu1 = (process_cpu(hq.proc.pid) if hq.proc else 0.0, process_cpu(farm.pid))
                per_site = [(at - t0).total_seconds() for at in got.values()]
                label = "cold (warm-up)" if n == 0 else f"run {n}/{plan.runs}"
                log(
                    f"  {label}: all {len(sites)} receipts in {max(per_site):.2f} s;"
                    f" {_stages(probe, message_id, t0, accepted)};"
                    f" CPU HQ {cpu1[0] - cpu0[0]:.2f} s, farm {cpu1[1] - cpu0[1]:.2f} s"
                )
                if n > 0:
                    e2e.append(max(per_site))
                    samples += [s * 1000 for s in per_site]
        finally:
            probe.close()
        cpu_hq = (process_cpu(hq.proc.pid) if hq.proc else 0.0) - cpu_hq0
        notes = [f"circular: HQ used {cpu_hq:.1f} CPU s over the farm's lifetime"]
        ok = True
        return e2e, samples, notes
    finally:
        if farm is not None and farm.poll() is None:
            farm.terminate()
            try:
                farm.wait(timeout=30)
            except subprocess.TimeoutExpired:
                farm.kill()
        net.close()
        if ok:
            shutil.rmtree(root, ignore_errors=True)
        else:
            log(f"  circular: kept {root} (logs: {root}/farm.log, {root}/net/*.log)")


def measure(quick: bool, *, seal: Row | None = None) -> tuple[list[Row], list[str]]:
    plan = QUICK_PLAN if quick else FULL_PLAN
    payload = os.urandom(PAYLOAD_BYTES)
    rates = crypto_rates(payload)
    seal_row = seal or Row("seal.4k.r97", rates["seal.4k.r97"], "env/s")
    e2e, samples, notes = run(plan, payload)
    n = plan.missions
    farm_floor = n * (1 / rates["open.4k"] + 1 / rates["seal.4k"])
    hq_floor = 1 / rates["seal.4k.r97"] + n / rates["open.4k"]
    best = min(e2e)
    log(
        f"  e2e best {best:.2f} s, median {quantile(e2e, 0.5):.2f} s over {len(e2e)} runs;"
        f" floors: the farm's crypto {farm_floor:.3f} s ({n} opens + {n} receipt seals on"
        f" one core), HQ's {hq_floor:.3f} s (one seal to 97, {n} receipt opens);"
        f" e2e / farm floor {best / farm_floor:.1f}x"
    )
    tag = f"r{n}"  # r97 in the full run; --quick's 8 missions are named r8
    rows = [
        Row("circular.r97.seal", seal_row.value, "env/s", seal_row.samples),
        Row(f"circular.{tag}.e2e", best, "s", tuple(e2e)),
        Row(f"circular.{tag}.p50ms", quantile(samples, 0.5), "ms"),
        Row(f"circular.{tag}.p99ms", quantile(samples, 0.99), "ms"),
    ]
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.circular", description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_PLAN.missions} missions")
    parser.add_argument("--missions", type=int, help="how many missions (default 97)")
    parser.add_argument("--runs", type=int, help="timed runs after the warm-up (default 5)")
    args = parser.parse_args()
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    plan = Plan(args.missions or plan.missions, args.runs or plan.runs)
    payload = os.urandom(PAYLOAD_BYTES)
    e2e, samples, notes = run(plan, payload)
    print(
        f"e2e best {min(e2e):.2f} s; per destination p50 {quantile(samples, 0.5):.0f} ms,"
        f" p99 {quantile(samples, 0.99):.0f} ms"
    )
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
