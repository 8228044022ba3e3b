"""Where the relay's time goes: per-stage times from the stores' histories, CPU per process.

Every state change a store makes appends a transition with the gateway's wall-clock time
(gateway/store/base.py), and the three gateways share this machine's clock. So once a run is
over, the histories of a sample of messages (and of their receipts) say when each one passed
each stage, at no cost to the run itself:

- throughput per stage (``stage_table``): the stage whose rate matches the end-to-end rate
  while the stages upstream finish early is the bottleneck;
- latency per leg (``leg_table``): the time between consecutive stages of one message.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from envelope.open import parse_framed_head
from gateway.site.context import SiteContext

ORIGIN, HUB, DEST = "M-PARIS", "HQ", "M-HANOI"


@dataclass(frozen=True)
class Stage:
    label: str
    site: str
    kind: str  # "doc": the document envelope; "rcpt": its receipt envelope
    state: str
    peer: str | None


# In causal order along one message's path (the ``leg_table`` chain); ``at`` is the time
# the gateway took just before the transition's transaction, so a stage's commit is in the
# leg that follows it. "opened" is stamped after open_bytes, before the inbox write, the
# receipt's sealing and the two commits (receipt queued, item available).
STAGES: tuple[Stage, ...] = (
    Stage("origin queued", ORIGIN, "doc", "queued", HUB),
    Stage("origin claimed", ORIGIN, "doc", "sending", HUB),
    Stage("HQ accepted", HUB, "doc", "queued", DEST),
    Stage("origin saw HQ ack", ORIGIN, "doc", "forwarded", HUB),
    Stage("HQ claimed", HUB, "doc", "sending", DEST),
    Stage("dest accepted", DEST, "doc", "received", None),
    Stage("HQ saw dest ack", HUB, "doc", "forwarded", DEST),
    Stage("dest opened", DEST, "doc", "available", None),
    Stage("dest claimed receipt", DEST, "rcpt", "sending", HUB),
    Stage("HQ accepted receipt", HUB, "rcpt", "queued", ORIGIN),
    Stage("dest saw HQ ack (receipt)", DEST, "rcpt", "forwarded", HUB),
    Stage("HQ claimed receipt", HUB, "rcpt", "sending", ORIGIN),
    Stage("origin accepted receipt", ORIGIN, "rcpt", "received", None),
    Stage("HQ saw origin ack (receipt)", HUB, "rcpt", "forwarded", ORIGIN),
    Stage("origin receipt verified", ORIGIN, "doc", "delivered", HUB),
)
# The chain of one message, accept to verified receipt (the "saw ... ack" stages are side
# branches: they are the previous hop finishing its bookkeeping).
CHAIN = (
    "origin queued",
    "origin claimed",
    "HQ accepted",
    "HQ claimed",
    "dest accepted",
    "dest opened",
    "dest claimed receipt",
    "HQ accepted receipt",
    "HQ claimed receipt",
    "origin accepted receipt",
    "origin receipt verified",
)

Timeline = dict[str, dict[str, datetime]]  # message id -> stage label -> time


async def receipt_ids(dest: SiteContext, wanted: set[str]) -> dict[str, str]:
    """Document id -> the id of the receipt the destination queued for it (for ``wanted``)."""
    out: dict[str, str] = {}
    for entry in await dest.store.queue(peer=HUB):
        record = await dest.store.get_envelope(entry.message_id)
        if record is None:
            continue
        parsed, _ = parse_framed_head(record.data)
        original = parsed.head.routing.in_reply_to
        if original in wanted:
            out[original] = entry.message_id
    return out


async def timelines(sites: dict[str, SiteContext], ids: Sequence[str]) -> Timeline:
    """Every stage time of each document in ``ids`` and of its receipt, from the histories."""
    receipts = await receipt_ids(sites[DEST], set(ids))
    out: Timeline = {}
    for mid in ids:
        times: dict[str, datetime] = {}
        for kind, key in (("doc", mid), ("rcpt", receipts.get(mid))):
            if key is None:
                continue
            for site in (ORIGIN, HUB, DEST):
                wanted = [s for s in STAGES if s.site == site and s.kind == kind]
                if not wanted:
                    continue
                for t in await sites[site].store.history(key):
                    for s in wanted:
                        if t.state == s.state and t.peer == s.peer and s.label not in times:
                            times[s.label] = t.at  # the first time (a retry repeats sending)
        out[mid] = times
    return out


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (q in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered))))
    return ordered[rank - 1]


def stage_table(tl: Timeline, start: datetime, scale: float) -> str:
    """Per stage: when 10/50/90 % and all of the sample had passed it (s after ``start``),
    and its rate between 10 % and 90 % (env/s, the sample scaled by ``scale``)."""
    lines = [
        f"  {'stage':<28} {'n':>5} {'t10 s':>7} {'t50 s':>7} {'t90 s':>7} {'last s':>7}"
        f" {'rate/s':>8}"
    ]
    for s in STAGES:
        times = [(m[s.label] - start).total_seconds() for m in tl.values() if s.label in m]
        if not times:
            lines.append(f"  {s.label:<28} {0:>5}")
            continue
        t10, t50, t90 = (quantile(times, q) for q in (0.1, 0.5, 0.9))
        rate = 0.8 * len(times) * scale / (t90 - t10) if t90 > t10 else float("inf")
        lines.append(
            f"  {s.label:<28} {len(times):>5} {t10:>7.2f} {t50:>7.2f} {t90:>7.2f}"
            f" {max(times):>7.2f} {rate:>8.0f}"
        )
    return "\n".join(lines)


def leg_table(
    tl: Timeline, accepted: dict[str, datetime], seen: dict[str, datetime], ids: Sequence[str]
) -> str:
    """p50 / p90 / p99 / max (ms) of each leg of the chain, bench accept -> bench saw."""
    chain = ["accepted (bench)", *CHAIN[1:], "seen (bench poll)"]
    legs: list[list[float]] = [[] for _ in chain[1:]]
    for mid in ids:
        times = dict(tl.get(mid, {}))
        if mid not in accepted or mid not in seen:
            continue
        times["accepted (bench)"] = accepted[mid]
        times["seen (bench poll)"] = seen[mid]
        for i, (a, b) in enumerate(itertools.pairwise(chain)):
            if a in times and b in times:
                legs[i].append((times[b] - times[a]).total_seconds() * 1000)
    lines = [f"  {'leg':<52} {'n':>5} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}  (ms)"]
    for (a, b), values in zip(itertools.pairwise(chain), legs, strict=True):
        label = f"{a} -> {b}"
        if not values:
            lines.append(f"  {label:<52} {0:>5}")
            continue
        p50, p90, p99 = (quantile(values, q) for q in (0.5, 0.9, 0.99))
        lines.append(
            f"  {label:<52} {len(values):>5} {p50:>7.1f} {p90:>7.1f} {p99:>7.1f}"
            f" {max(values):>7.1f}"
        )
    return "\n".join(lines)


# -- CPU --------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads) so far; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def main_thread_cpu(pid: int) -> float:
    """CPU seconds of ``pid``'s main thread (its event loop) alone."""
    try:
        with open(f"/proc/{pid}/task/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def postgres_cpu() -> float:
    """CPU seconds of every process named postgres (the server's backends, any client's)."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
        except OSError:
            continue
        total += process_cpu(int(entry.name))
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return (total - idle) / _TICK, total / _TICK
