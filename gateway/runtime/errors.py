"""The two kinds of failure every worker tells apart: try again later, or refused for good.

Hop delivery, couriers, the smarthost, local delivery and time-stamping each raise a
subclass of one of these, so a worker decides what to do with a failure by its kind
(defer with backoff, or fail and tell the sender), never by which module raised it.

Rule: a module that can fail both ways raises one class of each kind (its own name, for
its messages and its callers), and a worker that only has to choose between "later" and
"never" catches :class:`Retry` and :class:`Refused`, not the module's names. The two are
disjoint: no class is both. Which module raises what:

- the channel's client half (gateway/relay/channel_client.py) and the pinned connector
  (gateway/site/connector.py): :class:`PeerError` (Retry), the peer is down, slow or
  answered nonsense; the courier defers the whole batch with backoff.
- the hop protocol (gateway/relay/hop.py, both sides of the channel; both kinds are
  ``HopError``): ``HopUnknownKey`` (Retry), signed with or wrapped to a key our
  directory does not list yet, answered ``retry`` and sent again after a directory
  poll; ``HopRefused`` (Refused), any other check failed, answered ``refused``, and the
  courier fails that destination (or holds it for a re-seal).
- the smarthost (gateway/bridges/mail/smarthost.py; both ``SmarthostError``):
  ``SmarthostUnavailable`` (Retry), connection, TLS, timeout or a 4xx;
  ``SmarthostRefused`` (Refused), a 5xx. Mail delivery (gateway/bridges/mail/delivery.py)
  passes them on as ``DeliveryDeferred`` and ``MailRefused``, naming the message.
- local delivery's hand-off (gateway/relay/handoff.py, gateway/bridges/mail/delivery.py):
  ``DeliveryDeferred`` (Retry), the document stays ``received`` and is handed on again
  with backoff; ``MailRefused`` (Refused), the mail server refused it for good, recorded
  undeliverable (the document stays in the HTTP inbox). The SMTP bridge's DSNs: the
  same two, a DSN deferred or dropped.
- time-stamping (gateway/proof/timestamping.py): ``StampDeferred`` (Retry), the TSA or
  HQ could not stamp now, the envelopes stay pending and the stamper backs off;
  ``StampRefused`` (Refused), the TSA refused the request for good (RFC 3161 badAlg,
  badRequest, ...), the envelope is dropped from the pending ones with a warning.

Neither kind, on purpose: errors of input or set-up that no worker retries or fails by,
such as ``WitnessError`` (gateway/proof/witness.py: an answer or request that cannot be
used, unreachable HQ included; HQ answers 400, a mission logs it and its next checkpoint
is sent anyway), ``TimestampingError`` (HQ's TSA cannot be set up: 503),
``EnvelopeError``, ``StoreError`` and ``DirectoryError``.
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
