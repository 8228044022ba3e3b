"""``queue shape`` (like qshape): outstanding destinations by next hop and age. Pure.

Rules:
- Each final destination still without its receipt or failure counts once under the
  next hop it goes through, a forwarded delivery included (a circular to 97 missions
  through HQ with 2 still out counts 2).
- A delivery without destination rows here (a receipt, mail stored before schema v11)
  counts 1 while it is not forwarded or delivered.
- ``messages``: every delivery counts 1 while it is not forwarded or delivered, whatever
  its destinations (the count before circulars).
- Ages are in minutes since the message was taken here, in qshape's buckets
  (``AGE_BUCKETS_MIN``; older ones in the last, ``1280+``); ``T`` is the row's total.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from gateway.store.base import QueueEntry

# qshape's buckets, in minutes.
AGE_BUCKETS_MIN = (5, 10, 20, 40, 80, 160, 320, 640, 1280)
# The bucket of what is older than the last one.
OLDEST = f"{AGE_BUCKETS_MIN[-1]}+"
BUCKETS = (*(str(b) for b in AGE_BUCKETS_MIN), OLDEST)


def shape_count(state: str, dest_open: int, dest_total: int, *, messages: bool = False) -> int:
    """What one delivery row adds to ``queue shape``: its open destinations when it has
    destination rows (forwarded or not: they still await a receipt), else 1 while it is
    not forwarded or delivered. With ``messages``: 1 while not forwarded or delivered."""
    done = state in ("forwarded", "delivered")
    if messages or not dest_total:
        return 0 if done else 1
    return dest_open


def age_bucket(created: datetime, now: datetime) -> str:
    """The bucket of a message taken at ``created``."""
    age = (now - created).total_seconds() / 60
    return next((f"{b}" for b in AGE_BUCKETS_MIN if age < b), OLDEST)


def shape_rows(
    entries: Iterable[QueueEntry], now: datetime, *, messages: bool = False
) -> list[dict[str, Any]]:
    """One row per next hop with something outstanding, by peer: ``{"peer", "T", and
    a count per bucket that has one}``."""
    table: dict[str, Counter[str]] = {}
    for q in entries:
        n = shape_count(q.state, q.dest_open, q.dest_total, messages=messages)
        if not n:
            continue
        row = table.setdefault(q.peer, Counter())
        row[age_bucket(q.created, now)] += n
        row["T"] += n
    return [{"peer": peer, **dict(c)} for peer, c in sorted(table.items())]
