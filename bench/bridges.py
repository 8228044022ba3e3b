"""The bridge rows: how fast integrators can hand documents to M-PARIS, and a peer MTA.

bridge.http.submit.4k
    documents/s accepted (202: the envelope is sealed and durably committed) by M-PARIS's
    HTTP API, 16 concurrent aiohttp clients on keep-alive connections, raw 4 KiB bodies
    (``Valise-To: M-HANOI``), SQLite store.
bridge.smtp.submit.4k
    messages/s accepted (``250 2.0.0 Ok: queued as``, after the durable commit) by
    M-PARIS's SMTP bridge, 16 smtplib clients (threads), one connection each reused for
    every message (MAIL, RCPT, DATA, RSET) after STARTTLS and AUTH as an integrator (the
    bridge's default), 4 KiB messages to registry@m-hanoi.
peer.postfix.smtp.4k
    the same SMTP load against Debian's Postfix on 127.0.0.1 (bench/bridges_postfix.py),
    delivering to ``discard:``, in the clear and without AUTH (as it is configured);
    skipped, with the reason, where it cannot run.

Each Valise row gets a fresh network (gateway.demo.network: HQ, M-PARIS, M-HANOI, as in the
relay rows, bridges on): the relay forwards what was accepted while the load runs, as in
production. The clients start together, the first WARMUP seconds are left out, then
completions are counted for SECONDS. Where the time went goes to stderr: latency
percentiles, CPU per process (the event-loop thread apart), the whole machine; with
``python -m bench.bridges --profile DIR`` also py-spy of M-PARIS during the HTTP load
(a separate run: its rate is not the row's).

``python -m bench.bridges [--quick] [--only http,smtp,postfix] [--seconds S] [--profile DIR]
[--hub-stopped]`` runs them alone, for diagnosis (no JSON; ``--hub-stopped`` stops HQ first,
so that nothing is relayed and the CPU figures are those of accepting alone);
``python -m bench --only bridges`` measures them as rows.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.bridges_postfix import RECIPIENT as POSTFIX_RCPT
from bench.bridges_postfix import SENDER as POSTFIX_SENDER
from bench.bridges_postfix import Postfix, unavailable
from bench.common import Row
from bench.relay_stages import (
    DEST,
    HUB,
    ORIGIN,
    machine_cpu,
    main_thread_cpu,
    process_cpu,
    quantile,
)
from gateway.demo.network import Network
from gateway.site.context import load_site

HTTP_ROW, SMTP_ROW, POSTFIX_ROW = (
    "bridge.http.submit.4k",
    "bridge.smtp.submit.4k",
    "peer.postfix.smtp.4k",
)
CLIENTS = 16
PAYLOAD_BYTES = 4096  # the HTTP body; the whole SMTP message (headers included)
RECONNECT_EVERY = 5_000  # messages per SMTP connection (the bridge allows 10,000 MAILs)
SMTP_SENDER = "bench@m-paris.valise.local"
SMTP_RCPT = "registry@m-hanoi.valise.local"
SCENARIOS = ("http", "smtp", "postfix")
NET_ENV = {
    # As in the relay rows: production settings, a transient failure retried within 1 s.
    "VALISE_RELAY_RETRY_BASE_SECONDS": "0.2",
    "VALISE_RELAY_RETRY_MAX_SECONDS": "1",
}
NOTE_SEALING = (
    "Postfix queues each message as it is (cleanup writes and fsyncs one queue file; no"
    " encryption, no signature); the bridge seals it (HPKE to M-HANOI's key, Ed25519"
    " signature) and commits the envelope to SQLite with fsync, while the relay forwards"
    " what was accepted (on the same 2-core machine)"
)


@dataclass(frozen=True)
class Plan:
    warmup: float  # seconds of load left out at the start
    seconds: float  # seconds counted


FULL_PLAN = Plan(warmup=3.0, seconds=10.0)
QUICK_PLAN = Plan(warmup=0.5, seconds=2.0)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Load:
    """What one load run saw: completion times (perf_counter) and latencies, per client."""

    start: float = 0.0
    done: list[list[tuple[float, float]]] = field(default_factory=list)  # (end, latency)
    failures: list[str] = field(default_factory=list)

    def per_client(self, plan: Plan) -> list[list[tuple[float, float]]]:
        lo, hi = self.start + plan.warmup, self.start + plan.warmup + plan.seconds
        return [[d for d in client if lo <= d[0] < hi] for client in self.done]

    def window(self, plan: Plan) -> list[tuple[float, float]]:
        return [d for client in self.per_client(plan) for d in client]

    def rate(self, plan: Plan) -> float:
        return len(self.window(plan)) / plan.seconds

    def summary(self, plan: Plan, what: str) -> str:
        got = self.window(plan)
        ms = [lat * 1000 for _, lat in got] or [0.0]
        per_client = sorted(len(c) for c in self.per_client(plan))
        fails = (
            f"; {len(self.failures)} failures, first: {self.failures[0]}" if self.failures else ""
        )
        return (
            f"  {len(got)} {what} in {plan.seconds:g} s after {plan.warmup:g} s of warm-up:"
            f" {len(got) / plan.seconds:,.1f}/s; latency p50 {quantile(ms, 0.5):.1f} ms,"
            f" p90 {quantile(ms, 0.9):.1f}, p99 {quantile(ms, 0.99):.1f}, max {max(ms):.1f};"
            f" per client {per_client[0]}..{per_client[-1]}{fails}"
        )


# -- load generators --------------------------------------------------------------------


async def _http_load(url: str, token: str, plan: Plan, payload: bytes) -> Load:
    import aiohttp

    load = Load(done=[[] for _ in range(CLIENTS)])
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/octet-stream",
        "Valise-To": DEST,
        "Valise-Filename": "doc.bin",
    }
    connector = aiohttp.TCPConnector(limit=CLIENTS, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # One request per client first: the 16 keep-alive connections exist before t0.
        async def once() -> None:
            async with session.post(url, data=payload, headers=headers) as r:
                if r.status != 202:
                    raise RuntimeError(f"HTTP {r.status}: {(await r.text())[:200]}")
                await r.read()

        await asyncio.gather(*(once() for _ in range(CLIENTS)))
        load.start = time.perf_counter()
        stop_at = load.start + plan.warmup + plan.seconds

        async def client(mine: list[tuple[float, float]]) -> None:
            while (t := time.perf_counter()) < stop_at:
                try:
                    async with session.post(url, data=payload, headers=headers) as r:
                        body = await r.read()
                        if r.status == 202:
                            end = time.perf_counter()
                            mine.append((end, end - t))
                        else:
                            load.failures.append(f"HTTP {r.status}: {body[:200]!r}")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    load.failures.append(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(client(mine) for mine in load.done))
    return load


def message_maker(sender: str, rcpt: str) -> Callable[[int], bytes]:
    """``make(i)``: message ``i``, exactly PAYLOAD_BYTES of CRLF text, its own Message-ID."""
    head = (
        f"From: Bench <{sender}>\r\nTo: <{rcpt}>\r\nSubject: bench 4k\r\n"
        "Message-ID: <{:012d}.bench@valise.local>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    room = PAYLOAD_BYTES - len(head.format(0))
    text = base64.b64encode(os.urandom(room)).decode()  # no dots, no bare CR/LF
    lines, left = [], room
    while left > 0:
        n = min(76, left - 2)
        lines.append(text[:n] + "\r\n")
        text, left = text[n:], left - n - 2
    body = "".join(lines)
    assert len(head.format(0)) + len(body) == PAYLOAD_BYTES
    return lambda i: (head.format(i) + body).encode("ascii")


def _smtp_load(
    port: int, sender: str, rcpt: str, plan: Plan, login: tuple[str, str] | None = None
) -> Load:
    """CLIENTS threads with smtplib, one connection each (set up before t0), RSET between;
    with ``login`` (integrator, token) each connection does STARTTLS and AUTH first, as
    the bridge requires by default (once per RECONNECT_EVERY messages: not in the rate)."""
    load = Load(done=[[] for _ in range(CLIENTS)])
    make = message_maker(sender, rcpt)
    ready = threading.Barrier(CLIENTS + 1)  # every client connected (STARTTLS, AUTH)
    go = threading.Barrier(CLIENTS + 1)  # t0 is set: start sending
    counter = iter(range(10**12))
    lock = threading.Lock()

    def connect() -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", port, timeout=60)
        client.ehlo("bench.client")
        if login is not None:
            tls = ssl.create_default_context()
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE  # the site CA's certificate; not measured here
            client.starttls(context=tls)
            client.ehlo("bench.client")
            client.login(*login)
        return client

    def one(client: smtplib.SMTP) -> None:
        code, text = client.mail(sender)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, text, sender)
        code, text = client.rcpt(rcpt)
        if code != 250:
            raise smtplib.SMTPRecipientsRefused({rcpt: (code, text)})
        with lock:
            i = next(counter)
        code, text = client.data(make(i))
        if code != 250 or not text.startswith(b"2.0.0 Ok: queued as"):
            raise smtplib.SMTPDataError(code, text)
        client.rset()

    def run(mine: list[tuple[float, float]]) -> None:
        client: smtplib.SMTP | None = None
        try:
            client = connect()
        except (smtplib.SMTPException, OSError) as exc:
            load.failures.append(f"connect: {type(exc).__name__}: {exc}")
        ready.wait()
        go.wait()
        stop_at = load.start + plan.warmup + plan.seconds
        sent = 0
        while (t := time.perf_counter()) < stop_at:
            try:
                if client is None or sent >= RECONNECT_EVERY:
                    if client is not None:
                        client.quit()
                    client, sent = connect(), 0
                one(client)
                end = time.perf_counter()
                mine.append((end, end - t))
                sent += 1
            except (smtplib.SMTPException, OSError) as exc:
                load.failures.append(f"{type(exc).__name__}: {exc}")
                if client is not None:
                    client.close()
                client = None
                time.sleep(0.05)
        if client is not None:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()

    threads = [
        threading.Thread(target=run, args=(mine,), name=f"smtp-{n}", daemon=True)
        for n, mine in enumerate(load.done)
    ]
    for t in threads:
        t.start()
    ready.wait()
    load.start = time.perf_counter()  # after the set-up; the threads read it after `go`
    go.wait()
    for t in threads:
        t.join(plan.warmup + plan.seconds + 120)
    return load


# -- CPU accounting ---------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _system_cpu(pid: int) -> float:
    """System (kernel) CPU seconds of ``pid``, all its threads; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[12]) / _TICK
    except OSError:
        return 0.0


def _cpu(net: Network | None, postfix: Postfix | None) -> dict[str, float]:
    snap: dict[str, float] = {}
    if net is not None:
        for name in (ORIGIN, HUB, DEST):
            proc = net.sites[name].proc
            snap[name] = process_cpu(proc.pid) if proc is not None else 0.0
            snap[f"main {name}"] = main_thread_cpu(proc.pid) if proc is not None else 0.0
            snap[f"sys {name}"] = _system_cpu(proc.pid) if proc is not None else 0.0
    if postfix is not None:
        snap["postfix"] = postfix.cpu_seconds()
    snap["bench"] = process_cpu(os.getpid())
    snap["sys bench"] = _system_cpu(os.getpid())
    busy, total = machine_cpu()
    snap["machine busy"], snap["_total"] = busy, total
    return snap


def _cpu_lines(before: dict[str, float], after: dict[str, float], items: int) -> list[str]:
    wall = (after["_total"] - before["_total"]) / (os.cpu_count() or 1)
    lines, ours = [], 0.0
    for name in before:
        if name.startswith(("main ", "sys ", "machine", "_")):
            continue
        used = after[name] - before[name]
        ours += used
        loop = ""
        if f"main {name}" in before:
            main = after[f"main {name}"] - before[f"main {name}"]
            loop = (
                f" (event-loop thread {main / wall:.0%}, other threads {(used - main) / wall:.0%})"
            )
        if f"sys {name}" in before:
            kernel = after[f"sys {name}"] - before[f"sys {name}"]
            loop += f", {kernel / max(used, 1e-9):.0%} of it in the kernel"
        per = f", {used / items * 1e6:,.0f} us per accepted message" if items else ""
        lines.append(f"  cpu {name:<8} {used:6.1f} s = {used / wall:4.0%} of one core{per}{loop}")
    busy = after["machine busy"] - before["machine busy"]
    total = after["_total"] - before["_total"]
    lines.append(
        f"  machine: {busy / total:.0%} busy over {os.cpu_count()} cores = {ours / total:.0%}"
        f" these processes + {(busy - ours) / total:.0%} anything else;"
        f" load average {os.getloadavg()[0]:.1f}"
    )
    return lines


# -- scenarios --------------------------------------------------------------------------


class _Net:
    """A fresh network in a temp folder, bridges on; kept (with its logs) on failure."""

    def __init__(self, tag: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"valise-bench-bridges-{tag}-"))
        self.net = Network(self.root / "net", env=NET_ENV)

    def __enter__(self) -> Network:
        return self.net.start()  # stops what it started if a site fails

    def __exit__(self, t: object, e: object, tb: object) -> None:
        self.net.close()
        if e is None:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            log(f"  bridges: kept {self.root} (site logs: {self.root / 'net'}/*.log)")


def _integrator_token(directory: Path) -> str:
    add = ["integrator", "add", "bench", "--json", "--dir", str(directory)]
    out = subprocess.run(
        [sys.executable, "-m", "gateway", *add],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"integrator add: {out.stderr.strip()}")
    token: str = json.loads(out.stdout)["token"]
    return token


async def _origin_depths(directory: Path) -> str:
    ctx = await load_site(directory)
    try:
        depths = await ctx.store.depths()
    finally:
        await ctx.store.close()
    return ", ".join(f"{state} {n}" for (peer, state), n in sorted(depths.items()) if peer == HUB)


def _report(
    load: Load, plan: Plan, what: str, cpu0: dict[str, float], cpu1: dict[str, float]
) -> float:
    rate = load.rate(plan)
    if not load.window(plan):
        raise RuntimeError(f"nothing accepted; {load.failures[:1] or 'no failure seen'}")
    log(load.summary(plan, what))
    every = sum(len(c) for c in load.done)  # warm-up included: the CPU figures are too
    for line in _cpu_lines(cpu0, cpu1, every):
        log(line)
    return rate


def http_row(
    plan: Plan, payload: bytes, profile: Path | None = None, hub_stopped: bool = False
) -> float:
    with _Net("http") as net:
        origin = net.sites[ORIGIN]
        if hub_stopped:
            net.sites[HUB].stop()
        token = _integrator_token(origin.directory)
        url = f"http://127.0.0.1:{origin.ports['http']}/v1/documents"
        profiler = None
        if profile is not None:
            from bench.relay_profile import Profiler

            assert origin.proc is not None
            profiler = Profiler(profile, {ORIGIN: origin.proc.pid})
        cpu0 = _cpu(net, None)
        load = asyncio.run(_http_load(url, token, plan, payload))
        cpu1 = _cpu(net, None)
        rate = _report(load, plan, "documents accepted (202)", cpu0, cpu1)
        if profiler is not None:
            log(profiler.stop(plan.warmup + plan.seconds))
        log(f"  {ORIGIN} -> {HUB} after the load: {asyncio.run(_origin_depths(origin.directory))}")
        return rate


def smtp_row(plan: Plan, hub_stopped: bool = False) -> float:
    with _Net("smtp") as net:
        origin = net.sites[ORIGIN]
        if hub_stopped:
            net.sites[HUB].stop()
        login = ("bench", _integrator_token(origin.directory))
        cpu0 = _cpu(net, None)
        load = _smtp_load(origin.ports["smtp"], SMTP_SENDER, SMTP_RCPT, plan, login)
        cpu1 = _cpu(net, None)
        rate = _report(load, plan, "messages accepted (250 queued)", cpu0, cpu1)
        log(f"  {ORIGIN} -> {HUB} after the load: {asyncio.run(_origin_depths(origin.directory))}")
        return rate


def postfix_row(plan: Plan) -> float:
    with Postfix() as pf:
        log(f"  Postfix on 127.0.0.1:{pf.port}, config {pf.conf}")
        cpu0 = _cpu(None, pf)
        load = _smtp_load(pf.port, POSTFIX_SENDER, POSTFIX_RCPT, plan)
        cpu1 = _cpu(None, pf)
        rate = _report(load, plan, "messages accepted (250 queued)", cpu0, cpu1)
        log(f"  maillog: {pf.log_tail(2)}")
        return rate


# -- the rows -----------------------------------------------------------------------------


def measure(
    quick: bool,
    *,
    only: Sequence[str] = SCENARIOS,
    seconds: float | None = None,
    profile: Path | None = None,
    hub_stopped: bool = False,
) -> tuple[list[Row], list[str]]:
    """The bridge rows that could be measured, and notes (skips, failures, ratios).

    ``hub_stopped`` (diagnosis only) stops HQ before the load: nothing is relayed, so the
    CPU figures are those of accepting alone."""
    plan = QUICK_PLAN if quick else FULL_PLAN
    plan = replace(plan, seconds=seconds or plan.seconds)
    payload = os.urandom(PAYLOAD_BYTES)
    rows: list[Row] = []
    notes: list[str] = []
    if quick:
        notes.append(f"bridge rows in --quick are a smoke run: {plan.seconds:g} s of load")

    def attempt(name: str, unit: str, fn: Callable[[], float]) -> None:
        try:
            rows.append(Row(name, fn(), unit))
        except Exception as exc:
            log(f"  {name} FAILED: {type(exc).__name__}: {exc}")
            notes.append(f"{name} failed: {type(exc).__name__}: {exc}")

    load = f"{CLIENTS} clients, 4 KiB, {plan.warmup:g} s warm-up + {plan.seconds:g} s"
    if "http" in only:
        log(f"{HTTP_ROW}: {ORIGIN}'s HTTP API, raw bodies to {DEST}, {load}, aiohttp keep-alive:")
        attempt(HTTP_ROW, "doc/s", lambda: http_row(plan, payload, profile, hub_stopped))
    if "smtp" in only:
        log(f"{SMTP_ROW}: {ORIGIN}'s SMTP bridge to {SMTP_RCPT}, {load}, smtplib threads:")
        attempt(SMTP_ROW, "msg/s", lambda: smtp_row(plan, hub_stopped))
    if "postfix" in only:
        why = unavailable()
        if why is not None:
            log(f"{POSTFIX_ROW} skipped: {why}")
            notes.append(f"{POSTFIX_ROW} skipped: {why}")
        else:
            log(f"{POSTFIX_ROW}: Debian's Postfix on loopback, discard delivery, {load}:")
            attempt(POSTFIX_ROW, "msg/s", lambda: postfix_row(plan))
    values = {r.name: r.value for r in rows}
    if SMTP_ROW in values and POSTFIX_ROW in values:
        ratio = values[SMTP_ROW] / values[POSTFIX_ROW]
        log(f"  {SMTP_ROW} / {POSTFIX_ROW} = {ratio:.2f}x")
        notes.append(f"{SMTP_ROW} = {ratio:.2f}x {POSTFIX_ROW}: {NOTE_SEALING}")
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bridges", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help=f"comma-separated from {','.join(SCENARIOS)}"
    )
    parser.add_argument("--seconds", type=float, help="seconds of load counted")
    parser.add_argument(
        "--profile", type=Path, help="py-spy M-PARIS during the HTTP load; raw stacks here"
    )
    parser.add_argument(
        "--hub-stopped",
        action="store_true",
        help="stop HQ before the load: nothing is relayed (CPU of accepting alone)",
    )
    args = parser.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := [s for s in only if s not in SCENARIOS]:
        parser.error(f"unknown scenario {unknown[0]}; choose from {', '.join(SCENARIOS)}")
    from bench.report import table

    rows, notes = measure(
        args.quick,
        only=only,
        seconds=args.seconds,
        profile=args.profile,
        hub_stopped=args.hub_stopped,
    )
    print(table(rows))
    for note in notes:
        print(f"note: {note}")


if __name__ == "__main__":
    main()
