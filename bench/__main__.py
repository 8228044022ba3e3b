"""``python -m bench [--quick] [--only relay|bridges|circular]``: measure every row in one
run, print the table, write JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench import bridges, circular, envelope4k, peers, relay, rss, stream64m
from bench.common import FULL, QUICK, Row, interleave
from bench.report import table

RESULTS = Path(__file__).resolve().parent / "results.json"


def run(quick: bool, rounds: int | None) -> tuple[list[Row], list[str]]:
    settings = QUICK if quick else FULL
    rounds = rounds or settings.rounds
    print(f"4 KiB envelopes, best of {rounds} rounds:", file=sys.stderr, flush=True)
    payload = os.urandom(envelope4k.PAYLOAD_BYTES)  # the same payload for us and the peers
    small = envelope4k.benches(payload, settings)
    small += [peers.xmldsig_bench(payload, settings), peers.smime_bench(payload, settings)]
    rows = interleave(small, rounds)

    print(f"64 MiB payloads, best of {rounds} rounds:", file=sys.stderr, flush=True)
    with stream64m.benches() as large:
        rows += interleave(large, rounds)

    if quick:
        notes = ["rss.*.1g skipped: --quick"]
    else:
        print("1 GiB peak RSS:", file=sys.stderr, flush=True)
        rss_rows, notes = rss.measure()
        rows += rss_rows

    relay_rows, relay_notes = run_relay(quick)
    seal97 = next((r for r in rows if r.name == "seal.4k.r97"), None)
    circular_rows, circular_notes = run_circular(quick, seal97)
    bridge_rows, bridge_notes = run_bridges(quick)
    return (
        rows + relay_rows + circular_rows + bridge_rows,
        notes + relay_notes + circular_notes + bridge_notes,
    )


def run_relay(quick: bool) -> tuple[list[Row], list[str]]:
    print("Relay, three gateways on loopback:", file=sys.stderr, flush=True)
    return relay.measure(quick)


def run_circular(quick: bool, seal: Row | None = None) -> tuple[list[Row], list[str]]:
    n = circular.QUICK_PLAN.missions if quick else circular.FULL_PLAN.missions
    print(f"Circular, HQ to {n} missions on loopback:", file=sys.stderr, flush=True)
    return circular.measure(quick, seal=seal)


def run_bridges(quick: bool) -> tuple[list[Row], list[str]]:
    print("Bridges, 16 clients on loopback:", file=sys.stderr, flush=True)
    return bridges.measure(quick)


def merged(out: Path, rows: list[Row]) -> list[dict[str, object]]:
    """``rows`` in place of the same-named rows of ``out``, the others kept (for --only)."""
    fresh = {r.name: {"name": r.name, "value": round(r.value, 2), "unit": r.unit} for r in rows}
    try:
        old = json.loads(out.read_text())
    except (OSError, ValueError):
        old = []
    kept: list[dict[str, object]] = [fresh.pop(d["name"], d) for d in old if isinstance(d, dict)]
    return kept + list(fresh.values())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="fewer, shorter rounds; no RSS rows; tiny relay runs"
    )
    parser.add_argument("--rounds", type=int, help="best of this many rounds (default 5, quick 2)")
    parser.add_argument(
        "--out", type=Path, help=f"JSON results file (default {RESULTS}; --quick writes none)"
    )
    parser.add_argument(
        "--only",
        choices=("relay", "bridges", "circular"),
        help="measure only these rows; the JSON keeps the other rows it already has",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    if args.only == "relay":
        rows, notes = run_relay(args.quick)
    elif args.only == "bridges":
        rows, notes = run_bridges(args.quick)
    elif args.only == "circular":
        rows, notes = run_circular(args.quick)
    else:
        rows, notes = run(args.quick, args.rounds)
    print()
    print(table(rows))
    for note in notes:
        print(f"note: {note}")
    out = args.out or (None if args.quick else RESULTS)
    if out is not None:
        if args.only:
            data = merged(out, rows)
        else:
            data = [{"name": r.name, "value": round(r.value, 2), "unit": r.unit} for r in rows]
        tmp = out.with_name(out.name + ".tmp")  # replaced atomically: never half-written
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(out)
        print(f"wrote {out}")
    print(f"took {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
