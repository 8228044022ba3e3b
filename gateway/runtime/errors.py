"""The two kinds of failure every worker tells apart: try again later, or refused for good.

Hop delivery, couriers, the smarthost, local delivery and time-stamping each raise a
subclass of one of these, so a worker decides what to do with a failure by its kind
(defer with backoff, or fail and tell the sender), never by which module raised it.
"""

from __future__ import annotations


class Retry(Exception):
    """A transient failure: the same work may succeed later (peer down, timeout, a key
    not published yet). Keep it and try again with backoff."""


class Refused(Exception):
    """Refused for good: the same input can never succeed (a bad signature, a mailbox
    that does not exist). Fail it and tell the sender why."""


class PeerError(Retry):
    """The peer could not be reached or answered nonsense; the batch is deferred."""
