"""Route decisions for hub-and-spoke delivery: ``route(routing, here, hub) -> Decision``.

Rules (PRODUCT.md, Network): missions route through HQ; HQ delivers locally or
relays; a site never forwards an envelope back to where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from envelope.model import RoutingHeader


class Action(StrEnum):
    DELIVER = "deliver"
    FORWARD = "forward"


@dataclass(frozen=True)
class Decision:
    """For one destination: deliver here, or forward to ``next_hop``."""

    destination: str
    action: Action
    next_hop: str | None = None


def route(routing: RoutingHeader, *, here: str, hub: str) -> tuple[Decision, ...]:
    """One decision per destination of ``routing``, as seen from site ``here``."""
    decisions = []
    for destination in routing.destinations:
        if destination == here:
            decisions.append(Decision(destination, Action.DELIVER))
        elif here == hub:
            decisions.append(Decision(destination, Action.FORWARD, destination))
        else:
            decisions.append(Decision(destination, Action.FORWARD, hub))
    return tuple(decisions)
