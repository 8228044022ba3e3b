"""A typed wake-up from the lower layers to whoever works on what they queued.

``valise`` queues work durably first (gateway/relay/submit.py, reseal), then rings the
site's :class:`Doorbell` with the next hops it queued for. A running site's workers
listen (the couriers of those peers start at once, the stamper wakes); with no
listener (the admin CLI) ringing does nothing, and the workers of a running site find
the work by their own poll. Listeners run on the event loop, in the order they began
listening, and must not block.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Listener = Callable[[Sequence[str]], None]


class Doorbell:
    """Rung with next hops once work for them is durably queued."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def forget(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def ring(self, peers: Sequence[str]) -> None:
        for listener in list(self._listeners):
            listener(peers)
