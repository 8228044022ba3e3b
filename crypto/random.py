"""The one seam through which randomness enters Valise.

Production code uses :data:`SYSTEM_RANDOM` (the OS CSPRNG). Test vectors use
:class:`FixedRandom`, which expands a seed deterministically, so that a sealed
envelope is reproducible byte for byte (HPKE encapsulation aside, see SPEC.md).
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol


class RandomSource(Protocol):
    """Something that hands out random bytes."""

    def random_bytes(self, n: int) -> bytes:
        """Return ``n`` bytes."""
        ...


class _SystemRandom:
    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)


SYSTEM_RANDOM: RandomSource = _SystemRandom()


class FixedRandom:
    """Deterministic bytes from a seed (SHAKE-256 in counter blocks). Tests only."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._counter = 0

    def random_bytes(self, n: int) -> bytes:
        block = hashlib.shake_256(
            b"valise/test-random\x00" + self._seed + self._counter.to_bytes(8, "big")
        ).digest(n)
        self._counter += 1
        return block
