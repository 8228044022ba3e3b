"""How long to wait before trying again: the one backoff every retrying worker uses
(couriers, local delivery, webhooks, time-stamping)."""

from __future__ import annotations

import random


def jittered(base: float, attempts: int, cap: float) -> float:
    """Exponential backoff with full jitter (AWS style), at least base/2."""
    ceiling = min(cap, base * 2 ** max(0, attempts - 1))
    return max(base / 2, random.uniform(0, ceiling))  # noqa: S311 - jitter, not crypto
