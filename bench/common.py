"""Shared helpers: result rows, benches, and best-of-N interleaved timing."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MB = 1_000_000  # throughput MB are 10**6 bytes of plaintext
MIB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    rounds: int  # best of this many rounds
    budget: float  # seconds each small-op bench runs per round
    quick: bool


FULL = Settings(rounds=5, budget=1.0, quick=False)
QUICK = Settings(rounds=2, budget=0.1, quick=True)


@dataclass(frozen=True)
class Row:
    name: str
    value: float
    unit: str
    samples: tuple[float, ...] = ()  # every round's figure, for the spread column


@dataclass(frozen=True)
class Bench:
    """One figure: ``measure()`` runs one round and returns its value (higher is better)."""

    name: str
    unit: str
    measure: Callable[[], float]


def ops_per_second(fn: Callable[[], object], budget: float, min_iters: int = 3) -> float:
    """Call ``fn`` repeatedly for ``budget`` seconds (and ``min_iters`` times); return calls/s."""
    gc.collect()
    n = 0
    start = time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget and n >= min_iters:
            return n / elapsed


def mb_per_second(fn: Callable[[], object], nbytes: int) -> float:
    """Time one call of ``fn`` that processes ``nbytes`` of plaintext; return MB/s."""
    gc.collect()
    start = time.perf_counter()
    fn()
    return nbytes / MB / (time.perf_counter() - start)


def interleave(benches: Sequence[Bench], rounds: int) -> list[Row]:
    """Run every bench once per round, in turn, and keep each one's best round."""
    samples: dict[str, list[float]] = {b.name: [] for b in benches}
    for r in range(1, rounds + 1):
        line = []
        for b in benches:
            value = b.measure()
            samples[b.name].append(value)
            line.append(f"{b.name} {value:,.1f}")
        print(f"  round {r}/{rounds}: " + ", ".join(line), file=sys.stderr, flush=True)
    return [Row(b.name, max(samples[b.name]), b.unit, tuple(samples[b.name])) for b in benches]
