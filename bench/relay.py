"""The relay rows: whole networks on loopback (gateway.demo.network), driven from this process.

relay.e2e.4k.sqlite, relay.e2e.4k.pg
    envelopes/s delivered with verified receipts, M-PARIS -> HQ -> M-HANOI: M-PARIS's
    gateway is stopped, its queue pre-filled with send_documents (not timed), then the
    time from its start until every receipt is recorded at M-PARIS.
relay.p99ms.100, relay.p50ms.100
    ms from accept (send_documents returned) to the verified receipt at the origin, at a
    steady 100 envelopes/s offered (SQLite).
limit.pg.commit
    durable single-connection PostgreSQL commits/s: one small INSERT per transaction.

Each scenario also prints where the time went (bench/relay_stages.py): stage rates or leg
latencies from the stores' histories, queue depths over time and CPU per process; with
``python -m bench.relay --profile`` also py-spy summaries of the three gateways.

``python -m bench.relay [--count N] [--quick] [--profile DIR] [--only e2e.sqlite,...]
[--rate R --seconds S]`` runs these scenarios alone, for diagnosis (no JSON);
``python -m bench --only relay`` measures them as rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Row
from bench.relay_stages import (
    DEST,
    HUB,
    ORIGIN,
    leg_table,
    machine_cpu,
    main_thread_cpu,
    postgres_cpu,
    process_cpu,
    quantile,
    stage_table,
    timelines,
)
from gateway.demo.network import Network
from gateway.relay.outbox import Document, send_documents
from gateway.site.context import SiteContext, load_site

PG_DSN = os.environ.get("VALISE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
PAYLOAD_BYTES = 4096
MEDIA_TYPE = "application/octet-stream"
# Production relay settings (batch_envelopes 64, 60 s leases...), except that a transient
# failure is retried within a second rather than backing off for minutes.
NET_ENV = {
    "VALISE_RELAY_RETRY_BASE_SECONDS": "0.2",
    "VALISE_RELAY_RETRY_MAX_SECONDS": "1",
    # The integrators' bridges (HTTP API, SMTP) are idle listeners here: left off.
    "VALISE_HTTP_ENABLED": "no",
    "VALISE_SMTP_ENABLED": "no",
}
PREFILL_CONCURRENCY = 8  # send_documents in flight while pre-filling (sealing overlaps commits)
STALL_SECONDS = 90.0  # no new receipt for this long: the run is stuck
STAGE_SAMPLE = 1000  # messages whose histories are read for the stage table
POLL_E2E_S = 0.1  # the completion poll (depths at the origin)
SAMPLE_DEPTHS_S = 1.0  # the queue-depth timeline (depths at all three sites)
POLL_RECEIPTS_S = 0.005  # the latency scenario's receipt poll


@dataclass(frozen=True)
class Plan:
    prefill: int  # envelopes pre-filled for the e2e rows
    rate: float  # envelopes/s offered in the latency row
    send_seconds: float  # how long the latency row sends
    warmup_seconds: float  # latency samples from this first part are left out
    commit_seconds: float  # how long limit.pg.commit runs


# The brief asked for 20,000; one SQLite run of that took 305 s (66/s), so the full run
# pre-fills 5,000 to keep the relay rows within ~6 minutes (python -m bench.relay --count).
ASKED_PREFILL = 20_000
FULL_PLAN = Plan(
    prefill=ASKED_PREFILL, rate=100, send_seconds=16, warmup_seconds=1, commit_seconds=2.5
)
QUICK_PLAN = Plan(prefill=200, rate=100, send_seconds=3, warmup_seconds=0.5, commit_seconds=0.5)

SCENARIOS = ("commit", "e2e.sqlite", "e2e.pg", "latency")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- PostgreSQL -------------------------------------------------------------------------


async def _pg_reachable(dsn: str) -> str | None:
    """None if ``dsn`` answers, else why not."""
    try:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(dsn, timeout=3)
        await conn.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def _commits_per_second(conn: object, table: str, seconds: float) -> float:
    execute = conn.execute  # type: ignore[attr-defined]
    n = 0
    start = time.perf_counter()
    while True:
        await execute(f"INSERT INTO {table} (id, note) VALUES ($1, 'x')", n)  # one transaction
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


async def pg_commit_limit(dsn: str, seconds: float) -> tuple[float, list[str]]:
    """limit.pg.commit on a logged table in a scratch schema (dropped after).

    A TEMP table would not do: a transaction that wrote only temporary (unlogged) tables
    has no WAL to flush, so its commit returns without waiting for the disk. The TEMP
    figure is measured too, briefly, and returned as a note.
    """
    import asyncpg

    schema = f"valise_bench_commit_{os.getpid()}"
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        sync = await conn.fetchval("SHOW synchronous_commit")
        if sync == "off":
            await conn.execute("SET synchronous_commit = on")
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'CREATE TABLE "{schema}".t (id bigint, note text)')
        await conn.execute("CREATE TEMP TABLE t_temp (id bigint, note text)")
        await _commits_per_second(conn, f'"{schema}".t', min(0.3, seconds))  # warm up
        value = await _commits_per_second(conn, f'"{schema}".t', seconds)
        temp = await _commits_per_second(conn, "t_temp", min(1.0, seconds))
    finally:
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
    return value, [
        "limit.pg.commit: logged table, autocommit INSERT, synchronous_commit on; a TEMP"
        f" table (no WAL flush at commit) gives {temp:,.0f}/s on the same connection"
    ]


async def _pg_counters(dsn: str | None) -> dict[str, int]:
    """This database's transaction and row counters (pg_stat_database), if PostgreSQL."""
    if dsn is None:
        return {}
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        row = await conn.fetchrow(
            "SELECT xact_commit, tup_inserted, tup_updated, tup_fetched"
            " FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    return dict(row) if row is not None else {}


# -- shared -----------------------------------------------------------------------------


def _document(i: int, payload: bytes) -> Document:
    return Document(f"doc-{i:06d}.bin", MEDIA_TYPE, payload)


class Sites:
    """This process's own store handles on the three sites (for polling and analysis)."""

    def __init__(self, contexts: dict[str, SiteContext]) -> None:
        self.ctx = contexts

    @classmethod
    async def open(cls, net: Network) -> Sites:
        contexts: dict[str, SiteContext] = {}
        try:
            for name in (ORIGIN, HUB, DEST):
                contexts[name] = await load_site(net.sites[name].directory)
        except BaseException:
            for ctx in contexts.values():
                await ctx.store.close()
            raise
        return cls(contexts)

    async def close(self) -> None:
        for ctx in self.ctx.values():
            await ctx.store.close()

    async def depths(self) -> dict[str, dict[tuple[str, str], int]]:
        return {name: await ctx.store.depths() for name, ctx in self.ctx.items()}


def _count(depths: dict[tuple[str, str], int], peer: str, *states: str) -> int:
    return sum(depths.get((peer, s), 0) for s in states)


def _depth_line(t: float, d: dict[str, dict[tuple[str, str], int]]) -> str:
    o, h, n = d[ORIGIN], d[HUB], d[DEST]
    opened = sum(v for (peer, _), v in n.items() if peer == HUB)  # one receipt per opened doc
    at_dest = _count(h, DEST, "forwarded")
    verified = _count(o, HUB, "delivered")
    return (
        f"  {t:6.1f} s  origin->HQ todo {_count(o, HUB, 'queued', 'sending'):>6}"
        f"  HQ->dest todo {_count(h, DEST, 'queued', 'sending'):>6}"
        f"  dest unopened {max(0, at_dest - opened):>6}"
        f"  dest->HQ rcpt todo {_count(n, HUB, 'queued', 'sending'):>6}"
        f"  HQ->origin rcpt todo {_count(h, ORIGIN, 'queued', 'sending'):>6}"
        f"  origin rcpt unverified {max(0, _count(h, ORIGIN, 'forwarded') - verified):>6}"
        f"  verified {verified:>6}"
    )


def _failed(d: dict[str, dict[tuple[str, str], int]]) -> list[str]:
    return [
        f"{site}: {n} to {peer} {state}"
        for site, depths in d.items()
        for (peer, state), n in depths.items()
        if state in ("failed", "held", "deferred") and n
    ]


def _cpu_report(
    before: dict[str, float], after: dict[str, float], seconds: float, items: int
) -> list[str]:
    lines = []
    for name in before:
        if name.startswith(("machine", "_", "main ")):
            continue
        used = after[name] - before[name]
        per = f", {used / items * 1e6:,.0f} us/envelope" if items else ""
        main = ""
        if f"main {name}" in before:
            loop = after[f"main {name}"] - before[f"main {name}"]
            rest = (used - loop) / seconds
            main = f" (event-loop thread {loop / seconds:.0%}, other threads {rest:.0%})"
        lines.append(
            f"  cpu {name:<10} {used:7.1f} s = {used / seconds:4.0%} of one core{per}{main}"
        )
    return lines


def _cpu_snapshot(net: Network) -> dict[str, float]:
    snap = {}
    for name in (ORIGIN, HUB, DEST):
        proc = net.sites[name].proc
        snap[name] = process_cpu(proc.pid) if proc is not None else 0.0
        snap[f"main {name}"] = main_thread_cpu(proc.pid) if proc is not None else 0.0
    snap["bench"] = process_cpu(os.getpid())
    if net.postgres_dsn is not None:
        snap["postgres"] = postgres_cpu()
    busy, total = machine_cpu()
    snap["machine busy"] = busy
    snap["_machine total"] = total
    return snap


def _machine_line(before: dict[str, float], after: dict[str, float]) -> str:
    busy = after["machine busy"] - before["machine busy"]
    total = after["_machine total"] - before["_machine total"]
    ours = sum(
        after[k] - before[k]
        for k in before
        if not k.startswith(("machine", "_", "main "))  # gateways, bench, postgres
    )
    cores = os.cpu_count() or 1
    return (
        f"  machine: {busy / total:.0%} busy over {cores} cores = {ours / total:.0%} this run's"
        f" processes + {(busy - ours) / total:.0%} anything else (other users, py-spy, kernel"
        f" threads); load average {os.getloadavg()[0]:.1f}"
    )


async def _exactly_once(net: Network, sites: Sites, ids: Sequence[str]) -> None:
    """Every id in the destination's inbox exactly once, nothing else; raises RuntimeError."""
    inbox = net.sites[DEST].directory / "inbox"
    folders = [p.name for p in inbox.iterdir() if not p.name.startswith(".")]
    items = await sites.ctx[DEST].store.inbox(state=None, limit=len(ids) + 1000)
    problems = []
    if sorted(folders) != sorted(ids):
        problems.append(f"{len(folders)} inbox folders for {len(ids)} messages")
    if sorted(i.message_id for i in items) != sorted(ids):
        problems.append(f"{len(items)} inbound items for {len(ids)} messages")
    if any(i.state != "available" for i in items):
        problems.append("inbound items not all available")
    if problems:
        raise RuntimeError("exactly-once check failed: " + "; ".join(problems))


class _Scenario:
    """A fresh network in a temp folder; kept (with its logs) if the scenario fails."""

    def __init__(self, tag: str, postgres_dsn: str | None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"valise-bench-relay-{tag}-"))
        self.net = Network(self.root / "net", env=NET_ENV, postgres_dsn=postgres_dsn)

    def __enter__(self) -> Network:
        try:
            return self.net.start()
        except BaseException:
            self.net.close()
            raise

    def __exit__(self, t: object, e: object, tb: object) -> None:
        self.net.close()
        if e is None:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            log(f"  relay: kept {self.root} (site logs: {self.root / 'net'}/*.log)")


# -- relay.e2e.4k.* -----------------------------------------------------------------------


async def _prefill(directory: Path, n: int, payload: bytes) -> list[str]:
    ctx = await load_site(directory)
    gate = asyncio.Semaphore(PREFILL_CONCURRENCY)

    async def one(i: int) -> str:
        async with gate:
            return await send_documents(
                ctx, [DEST], [_document(i, payload)], now=datetime.now(UTC), subject=f"bench {i}"
            )

    try:
        return list(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        await ctx.store.close()


async def _e2e(net: Network, n: int, payload: bytes, profile: Path | None) -> float:
    origin = net.sites[ORIGIN]
    start = time.perf_counter()
    ids = await _prefill(origin.directory, n, payload)
    took = time.perf_counter() - start
    log(f"  pre-filled {n} envelopes at {ORIGIN} in {took:.1f} s ({n / took:,.0f}/s, not timed)")
    sites = await Sites.open(net)
    try:
        pg0 = await _pg_counters(net.postgres_dsn)
        cpu0 = _cpu_snapshot(net)
        wall0 = datetime.now(UTC)
        t0 = time.perf_counter()
        await asyncio.to_thread(origin.start)
        ready = time.perf_counter() - t0
        assert origin.proc is not None
        cpu0[ORIGIN] = process_cpu(origin.proc.pid)  # from ready: leave the imports out
        cpu0[f"main {ORIGIN}"] = main_thread_cpu(origin.proc.pid)
        profiler = None
        if profile is not None:
            from bench.relay_profile import Profiler

            pids = {s: net.sites[s].proc.pid for s in (ORIGIN, HUB, DEST)}  # type: ignore[union-attr]
            profiler = Profiler(profile, pids)
        timeline: list[str] = []
        last_sample = -SAMPLE_DEPTHS_S
        done, progress_at = 0, time.perf_counter()
        while True:
            now = time.perf_counter()
            if now - t0 - last_sample >= SAMPLE_DEPTHS_S:
                last_sample = now - t0
                depths = await sites.depths()
                timeline.append(_depth_line(last_sample, depths))
                if bad := _failed(depths):
                    raise RuntimeError("relay: deliveries not flowing: " + ", ".join(bad))
            count = _count(await sites.ctx[ORIGIN].store.depths(), HUB, "delivered")
            if count >= n:
                break
            if count > done:
                done, progress_at = count, time.perf_counter()
            elif time.perf_counter() - progress_at > STALL_SECONDS:
                raise RuntimeError(f"relay: stuck at {done}/{n} receipts")
            await asyncio.sleep(POLL_E2E_S)
        elapsed = time.perf_counter() - t0
        cpu1 = _cpu_snapshot(net)
        pg1 = await _pg_counters(net.postgres_dsn)
        profile_text = profiler.stop(elapsed - ready) if profiler is not None else ""
        timeline.append(_depth_line(elapsed, await sites.depths()))
        await _exactly_once(net, sites, ids)
        rate = n / elapsed
        log(
            f"  {n} receipts verified in {elapsed:.1f} s from {ORIGIN}'s start (ready after"
            f" {ready:.1f} s): {rate:,.0f}/s; {n / (elapsed - ready):,.0f}/s from ready;"
            f" {DEST} holds each exactly once"
        )
        log("  queue depths (deliveries still to do per hop, from each site's depths()):")
        step = max(1, len(timeline) // 15)
        for line in [*timeline[:-1:step], timeline[-1]]:
            log(line)
        log(f"  stages, s after {ORIGIN}'s start (histories of {min(n, STAGE_SAMPLE)} messages):")
        sample = list(ids[:: max(1, n // STAGE_SAMPLE)])
        tl = await timelines(sites.ctx, sample)
        log(stage_table(tl, wall0, n / len(sample)))
        for line in _cpu_report(cpu0, cpu1, elapsed, n):
            log(line)
        log(_machine_line(cpu0, cpu1))
        if pg0 and pg1:
            per = ", ".join(f"{k} {(pg1[k] - pg0[k]) / n:,.1f}" for k in pg0)
            log(
                f"  postgres, per envelope (pg_stat_database, every session of the database,"
                f" read-only transactions too; this process's polls included): {per}"
            )
        if profile_text:
            log(profile_text)
        return rate
    finally:
        await sites.close()


def e2e(backend: str, n: int, payload: bytes, profile: Path | None = None) -> float:
    dsn = PG_DSN if backend == "pg" else None
    with _Scenario(f"e2e-{backend}", dsn) as net:
        net.sites[ORIGIN].stop()  # nothing drains while we fill
        return asyncio.run(_e2e(net, n, payload, profile))


# -- relay.p99ms.100 / relay.p50ms.100 --------------------------------------------------


async def _latency(
    net: Network, plan: Plan, payload: bytes, profile: Path | None = None
) -> tuple[float, float]:
    origin = net.sites[ORIGIN]
    sender_ctx = await load_site(origin.directory)  # its own connection and store thread
    sites = await Sites.open(net)
    probe = _ReceiptProbe(sites.ctx[ORIGIN].config.store_path)
    total = int(plan.rate * plan.send_seconds)
    accepted: dict[str, float] = {}
    accepted_wall: dict[str, datetime] = {}
    seen: dict[str, float] = {}
    seen_wall: dict[str, datetime] = {}
    pending: list[str] = []
    order: list[str] = []
    sending = True
    late = 0
    try:

        async def sender() -> None:
            nonlocal sending, late
            start = time.perf_counter()
            for i in range(total):
                delay = start + i / plan.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.005:
                    late += 1
                mid = await send_documents(
                    sender_ctx,
                    [DEST],
                    [_document(i, payload)],
                    now=datetime.now(UTC),
                    subject=f"bench {i}",
                )
                accepted[mid] = time.perf_counter()
                accepted_wall[mid] = datetime.now(UTC)
                order.append(mid)
                pending.append(mid)
            sending = False

        async def poller() -> None:
            deadline = None
            while sending or pending:
                if not sending and deadline is None:
                    deadline = time.perf_counter() + 60
                if deadline is not None and time.perf_counter() > deadline:
                    raise RuntimeError(f"relay: {len(pending)} receipts missing after 60 s")
                if pending:
                    for mid in probe.receipted(pending):
                        seen[mid] = time.perf_counter()
                        seen_wall[mid] = datetime.now(UTC)
                        pending.remove(mid)
                await asyncio.sleep(POLL_RECEIPTS_S)

        profiler = None
        if profile is not None:
            from bench.relay_profile import Profiler

            pids = {s: net.sites[s].proc.pid for s in (ORIGIN, HUB, DEST)}  # type: ignore[union-attr]
            profiler = Profiler(profile / "latency", pids)
        t0 = time.perf_counter()
        cpu0 = _cpu_snapshot(net)
        await asyncio.gather(sender(), poller())
        elapsed = time.perf_counter() - t0
        cpu1 = _cpu_snapshot(net)
        profile_text = profiler.stop(elapsed) if profiler is not None else ""
        await _exactly_once(net, sites, order)
        warm = [m for m in order if accepted[m] - t0 >= plan.warmup_seconds]
        ms = [(seen[m] - accepted[m]) * 1000 for m in warm]
        all_ms = [(seen[m] - accepted[m]) * 1000 for m in order]
        p50, p99 = quantile(ms, 0.5), quantile(ms, 0.99)
        offered = len(order) / (accepted[order[-1]] - accepted[order[0]])
        log(
            f"  {len(order)} envelopes offered at {offered:.1f}/s ({late} sends late by >5 ms);"
            f" after the first {plan.warmup_seconds:g} s ({len(ms)} envelopes): p50 {p50:.1f} ms,"
            f" p90 {quantile(ms, 0.9):.1f}, p99 {p99:.1f}, max {max(ms):.1f};"
            f" with the warm-up: p99 {quantile(all_ms, 0.99):.1f}, max {max(all_ms):.1f}"
        )
        log("  legs (histories of every message; gateway clocks = this machine's):")
        tl = await timelines(sites.ctx, warm)
        log(leg_table(tl, accepted_wall, seen_wall, warm))
        for line in _cpu_report(cpu0, cpu1, elapsed, len(order)):
            log(line)
        log(_machine_line(cpu0, cpu1))
        if profile_text:
            log(profile_text)
        return p99, p50
    finally:
        probe.close()
        await sites.close()
        await sender_ctx.store.close()


class _ReceiptProbe:
    """Which in-flight messages have a receipt recorded at the origin: one indexed query
    on a read-only connection of this process's own, run on the event loop (a few tens
    of microseconds), so that polling every 5 ms takes next to no CPU from the gateways.
    (The store API would take a thread hand-off per message per poll.)"""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)

    def receipted(self, ids: Sequence[str]) -> list[str]:
        rows = self.conn.execute(
            # completed_at: set when the last destination's receipt is recorded (store
            # schema v11, issue 11; this bench's mail has one destination, which never fails).
            "SELECT message_id FROM envelopes WHERE completed_at IS NOT NULL"
            " AND message_id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(ids)),),
        ).fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        self.conn.close()


def latency(plan: Plan, payload: bytes, profile: Path | None = None) -> tuple[float, float]:
    with _Scenario("latency", None) as net:
        return asyncio.run(_latency(net, plan, payload, profile))


# -- the rows -----------------------------------------------------------------------------


def measure(
    quick: bool,
    *,
    prefill: int | None = None,
    only: Sequence[str] = SCENARIOS,
    profile: Path | None = None,
    rate: float | None = None,
    seconds: float | None = None,
) -> tuple[list[Row], list[str]]:
    """The relay rows that could be measured, and notes (skips, failures, settings).

    ``rate`` / ``seconds`` change the latency scenario (diagnosis only: the rows are then
    still named ``.100``, so ``python -m bench`` never passes them)."""
    plan = QUICK_PLAN if quick else FULL_PLAN
    plan = replace(plan, rate=rate or plan.rate, send_seconds=seconds or plan.send_seconds)
    n = prefill or plan.prefill
    payload = os.urandom(PAYLOAD_BYTES)
    rows: list[Row] = []
    notes: list[str] = []
    pg_down = asyncio.run(_pg_reachable(PG_DSN))
    if pg_down is not None and ("commit" in only or "e2e.pg" in only):
        log(f"  PostgreSQL at {PG_DSN} unreachable: {pg_down}")
        notes.append(
            f"relay.e2e.4k.pg, limit.pg.commit skipped: PostgreSQL unreachable ({pg_down})"
        )
    if quick:
        notes.append(
            f"relay rows in --quick are a smoke run: {n} envelopes pre-filled,"
            f" {plan.send_seconds:g} s at {plan.rate:g}/s"
        )
    elif n != ASKED_PREFILL and any(s.startswith("e2e.") for s in only):
        notes.append(
            f"relay.e2e.4k.*: {n:,} envelopes pre-filled, not {ASKED_PREFILL:,}: at ~66/s"
            f" {ASKED_PREFILL:,} take ~5 min per backend (bench/README.md)"
        )

    def attempt(name: str, fn: object) -> object:
        try:
            return fn()  # type: ignore[operator]
        except Exception as exc:
            log(f"  {name} FAILED: {type(exc).__name__}: {exc}")
            notes.append(f"{name} failed: {type(exc).__name__}: {exc}")
            return None

    if "commit" in only and pg_down is None:
        log(f"limit.pg.commit ({plan.commit_seconds:g} s, one connection):")
        got = attempt(
            "limit.pg.commit", lambda: asyncio.run(pg_commit_limit(PG_DSN, plan.commit_seconds))
        )
        if got is not None:
            value, more = got  # type: ignore[misc]
            log(f"  {value:,.0f} commits/s")
            rows.append(Row("limit.pg.commit", value, "commit/s"))
            notes += more
    for backend in ("sqlite", "pg"):
        if f"e2e.{backend}" not in only or (backend == "pg" and pg_down is not None):
            continue
        name = f"relay.e2e.4k.{backend}"
        log(f"{name}: {n} envelopes of 4 KiB, {ORIGIN} -> {HUB} -> {DEST}, receipts back:")
        rate = attempt(name, lambda b=backend: e2e(b, n, payload, profile))  # type: ignore[misc]
        if rate is not None:
            rows.append(Row(name, rate, "env/s"))  # type: ignore[arg-type]
    if "latency" in only:
        log(
            f"relay.p99ms.100: {plan.send_seconds:g} s at {plan.rate:g} envelopes/s of 4 KiB,"
            f" SQLite, receipts polled every {POLL_RECEIPTS_S * 1000:g} ms:"
        )
        got = attempt("relay.p99ms.100", lambda: latency(plan, payload, profile))
        if got is not None:
            p99, p50 = got  # type: ignore[misc]
            rows += [Row("relay.p99ms.100", p99, "ms"), Row("relay.p50ms.100", p50, "ms")]
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the smoke sizes")
    parser.add_argument("--count", type=int, help="envelopes pre-filled for the e2e rows")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated from {','.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy the gateways during e2e and latency; raw stacks into this folder",
    )
    parser.add_argument("--rate", type=float, help="latency scenario: envelopes/s offered")
    parser.add_argument("--seconds", type=float, help="latency scenario: seconds of sending")
    args = parser.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]}; choose from {', '.join(SCENARIOS)}")
    from bench.report import table

    rows, notes = measure(
        args.quick,
        prefill=args.count,
        only=only,
        profile=args.profile,
        rate=args.rate,
        seconds=args.seconds,
    )
    print(table(rows))
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
