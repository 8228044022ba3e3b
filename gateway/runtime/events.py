"""Message events inside one running site, for integrators' webhooks and the logs.

Kinds (issue 11: per destination):
- ``received``: a document became available here (detail ``origin``);
- ``delivered``: one destination's receipt of a message sent from here was verified
  and recorded (detail ``site``, ``receipt_sha256``, ``delivered`` k ``of`` n); once
  per destination, so for a message with several destinations it is not the end;
- ``failed``: destinations of a message sent from or relayed by here failed for good
  (detail ``reason`` and ``sites``, the destinations it closed, possibly none for an
  envelope without destination rows);
- ``completed``: the message's last open destination closed (detail ``delivered`` k
  ``of`` n and ``failed``, the failed sites comma-separated); emitted once, by the
  caller whose store change closed it. A receipt after a destination failed still
  emits ``delivered``, never a second ``completed``.
Subscribers are async callables; a subscriber's failure is logged and never stops
delivery.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

log = logging.getLogger("valise.events")


@dataclass(frozen=True)
class Event:
    kind: str  # received | delivered | failed | completed
    message_id: str
    at: datetime
    detail: dict[str, str] = field(default_factory=dict)


Subscriber = Callable[[Event], Awaitable[None]]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> None:
        self._subscribers.append(fn)

    async def emit(self, event: Event) -> None:
        for fn in self._subscribers:
            try:
                await fn(event)
            except Exception as exc:  # a broken subscriber must not stop delivery
                log.error(
                    json.dumps(
                        {
                            "event": "subscriber_error",
                            "id": event.message_id,
                            "kind": event.kind,
                            "reason": f"{type(exc).__name__}: {exc}",
                        }
                    )
                )
