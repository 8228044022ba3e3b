"""The printed table: each of our figures beside its limit, its peers and its goal."""

from __future__ import annotations

from dataclasses import dataclass

from bench.common import Row


@dataclass(frozen=True)
class Goal:
    limit: str | None = None  # the row "vs limit" divides by
    peers: tuple[str, ...] = ()  # the rows "vs peer" divides by; the goal names the first
    min_vs_limit: float | None = None
    min_vs_peer: float | None = None
    min_value: float | None = None
    max_value: float | None = None
    at_most: float | None = None  # like max_value, the bound itself allowed

    def text(self, unit: str) -> str:
        out = []
        if self.min_value is not None:
            out.append(f">={self.min_value:g} {unit}")
        if self.max_value is not None:
            out.append(f"<{self.max_value:g} {unit}")
        if self.at_most is not None:
            out.append(f"<={self.at_most:g} {unit}")
        if self.min_vs_limit is not None:
            out.append(f">={self.min_vs_limit:g}x limit")
        if self.min_vs_peer is not None:
            out.append(f">={self.min_vs_peer:g}x {_short(self.peers[0])}")
        return ", ".join(out)


_PEERS_4K = ("peer.xmldsig.4k", "peer.smime.4k")
GOALS = {
    "seal.4k": Goal("limit.seal.4k", _PEERS_4K, min_vs_limit=0.75, min_vs_peer=4),
    "open.4k": Goal("limit.open.4k", _PEERS_4K, min_vs_limit=0.75, min_vs_peer=4),
    "seal.4k.r97": Goal(),
    "seal.4k.escrow": Goal("limit.seal.4k", _PEERS_4K),
    "seal.64m": Goal("limit.aead.64m", ("peer.age.64m",), min_vs_limit=0.5, min_value=500),
    "open.64m": Goal("limit.aead.64m", ("peer.age.64m",), min_vs_limit=0.5, min_value=500),
    "rss.seal.1g": Goal(max_value=100),
    "rss.open.1g": Goal(max_value=100),
    "relay.e2e.4k.pg": Goal("limit.pg.commit", min_value=1000),
    "relay.p99ms.100": Goal(at_most=100),
    "bridge.smtp.submit.4k": Goal(peers=("peer.postfix.smtp.4k",)),
    # No goal for a circular: the floors printed beside it are what to read it against.
    "circular.r97.seal": Goal(),
    "circular.r97.e2e": Goal(),
}


def _short(name: str) -> str:
    return name.split(".")[1]


def _spread(row: Row) -> str:
    if len(row.samples) < 2:
        return ""
    return f"{(max(row.samples) - min(row.samples)) / max(row.samples):.0%}"


def _met(row: Row, goal: Goal, values: dict[str, float]) -> str:
    checks: list[bool] = []
    if goal.min_value is not None:
        checks.append(row.value >= goal.min_value)
    if goal.max_value is not None:
        checks.append(row.value < goal.max_value)
    if goal.at_most is not None:
        checks.append(row.value <= goal.at_most)
    if goal.min_vs_limit is not None:
        if goal.limit not in values:
            return "n/a"
        checks.append(row.value >= goal.min_vs_limit * values[goal.limit])
    if goal.min_vs_peer is not None:
        if goal.peers[0] not in values:
            return "n/a"
        checks.append(row.value >= goal.min_vs_peer * values[goal.peers[0]])
    if not checks:
        return ""
    return "yes" if all(checks) else "NO"


def table(rows: list[Row]) -> str:
    values = {r.name: r.value for r in rows}
    header = ("name", "value", "unit", "spread", "vs limit", "vs peer", "goal", "met")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        goal = GOALS.get(row.name)
        vs_limit = vs_peer = goal_text = met = ""
        if goal is not None:
            if goal.limit in values:
                vs_limit = f"{row.value / values[goal.limit]:.2f}x"
            vs_peer = "  ".join(
                f"{row.value / values[p]:.2f}x {_short(p)}" for p in goal.peers if p in values
            )
            goal_text = goal.text(row.unit)
            met = _met(row, goal, values)
        lines.append(
            (
                row.name,
                f"{row.value:,.1f}",
                row.unit,
                _spread(row),
                vs_limit,
                vs_peer,
                goal_text,
                met,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {1, 3, 4}
    out = []
    for n, line in enumerate(lines):
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
