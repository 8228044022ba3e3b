"""A message's state across its destinations, and the origin's check of a receipt.

Pure: no I/O. The one place a message's state is computed from its per-destination
rows (``Store.destinations``, issue 11); ``valise status``, the HTTP API and the
SMTP bridge read it through gateway/relay/circular_status.py.

Rules:
- A message is ``delivered`` iff every one of its n > 0 destinations has its receipt
  (k == n); with 0 < k < n it is ``partially delivered (k of n)`` with the sites still
  outstanding; ``failed`` when nothing is open and no receipt came; otherwise the most
  urgent state of its open destinations: held > deferred > queued > forwarded. A
  single-destination message therefore reads as before circulars.
- Without destination rows (a receipt envelope, a document received here, a relay of
  mail stored before schema v11) the state falls back to the latest state per next
  hop, as the API computed it before.
- A receipt arriving at the origin is accepted only if it answers a document sent from
  here (not one received here, not a receipt envelope), the site named in it signed
  it, that site is a destination of the message, it names the digest of an envelope
  sent as that message, and no other receipt from that site is in. The same receipt
  again passes (the store answers ``duplicate`` and changes nothing).
- At the hub, which cannot open a receipt, a second, different receipt envelope from a
  destination already receipted there is refused; the same one again is let through so
  that the sender's retry after a lost acknowledgement gets the first one back.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from envelope.errors import EnvelopeError
from envelope.model import RoutingHeader
from envelope.receipt import RECEIPT_CLASS, Receipt

DELIVERED = "delivered"
FAILED = "failed"
PARTIAL = "partially delivered"
DELETED = "deleted"
# The open states, most urgent first (what a message with nothing delivered shows).
OPEN_ORDER = ("held", "deferred", "queued", "forwarded")
# The hop fallback's order, as the HTTP API had it before destination rows.
HOP_ORDER = ("failed", "held", "deferred", "sending", "queued")
TERMINAL = frozenset({DELIVERED, FAILED})


class DestinationView(Protocol):
    """What summarise reads of a destination row (gateway/store/base.py Destination)."""

    @property
    def message_id(self) -> str: ...
    @property
    def site(self) -> str: ...
    @property
    def hop(self) -> str | None: ...
    @property
    def state(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def receipt_at(self) -> datetime | None: ...
    @property
    def receipt_digest(self) -> bytes | None: ...
    @property
    def receipt_for(self) -> bytes | None: ...


class SentView(Protocol):
    """What the origin's receipt check reads of a message sent from here
    (gateway/store/base.py SentMessage)."""

    @property
    def destinations(self) -> tuple[str, ...]: ...
    @property
    def digests(self) -> frozenset[bytes]: ...
    @property
    def receipted(self) -> Mapping[str, bytes]: ...
    @property
    def sent_here(self) -> bool: ...
    @property
    def doc_class(self) -> str: ...


class RouteView(Protocol):
    """What the hub's second-receipt check reads of a message it holds
    (gateway/store/base.py MessageRoute)."""

    @property
    def receipted(self) -> Mapping[str, bytes]: ...


class ReceiptRefused(EnvelopeError):
    """A receipt that does not fit the message it answers; the reason says why."""


@dataclass(frozen=True)
class MessageStatus:
    message_id: str
    status: str  # delivered | partially delivered | failed | deleted | an open state
    delivered: int  # destinations with a receipt
    total: int  # destinations (0: no destination rows here; the hop fallback)
    outstanding: tuple[str, ...]  # open destinations, by site
    failed: tuple[str, ...]  # failed destinations, by site
    complete: bool  # no destination is open
    destinations: tuple[DestinationView, ...] = field(default=())

    def api_status(self) -> str:
        return self.status.replace(" ", "_")

    def line(self) -> str:
        """One line for an operator, e.g. ``partially delivered (1 of 2); outstanding:
        M-HANOI (forwarded)``."""
        if self.total == 0:
            return self.status
        by_site = {d.site: d for d in self.destinations}
        if self.status == DELIVERED:
            # Verified here (the origin, or a destination's own row) or only relayed (the
            # hub cannot open a receipt): a receipt's named digest is known if verified.
            verified = all(d.receipt_for is not None for d in self.destinations)
            if self.total == 1:
                return f"delivered (receipt {'verified' if verified else 'relayed'})"
            how = "receipts verified" if verified else "receipts relayed"
            return f"delivered ({self.total} of {self.total}, {how})"
        text = f"{self.status} ({self.delivered} of {self.total})"
        if self.outstanding:
            text += "; outstanding: " + ", ".join(_site_state(by_site[s]) for s in self.outstanding)
        if self.failed:
            text += "; failed: " + ", ".join(_site_state(by_site[s]) for s in self.failed)
        return text


def _site_state(d: DestinationView) -> str:
    detail = (
        d.state
        if not d.reason or d.state in ("queued", "forwarded")
        else (f"{d.state}: {d.reason}")
    )
    return f"{d.site} ({detail})"


def summarise(
    dests: Sequence[DestinationView],
    *,
    message_id: str = "",
    hops: Mapping[str, str] | None = None,
    deleted: bool = False,
) -> MessageStatus:
    """The state of one message from its destination rows (``dests``), or, when it has
    none here, from ``hops``: the latest history state per next hop. ``deleted``: the
    last history row says its operator deleted it here."""
    if not dests:
        return _from_hops(message_id, hops or {}, deleted)
    ordered = tuple(sorted(dests, key=lambda d: d.site))
    mid = message_id or ordered[0].message_id
    delivered = tuple(d.site for d in ordered if d.state == DELIVERED)
    failed = tuple(d.site for d in ordered if d.state == FAILED)
    outstanding = tuple(d.site for d in ordered if d.state not in TERMINAL)
    k, n = len(delivered), len(ordered)
    complete = not outstanding
    if k == n:
        status = DELIVERED
    elif deleted:
        status = DELETED
    elif k > 0:
        status = PARTIAL
    elif complete:
        status = FAILED
    else:
        states = {d.state for d in ordered if d.site in outstanding}
        status = next((s for s in OPEN_ORDER if s in states), sorted(states)[0])
    return MessageStatus(mid, status, k, n, outstanding, failed, complete, ordered)


def _from_hops(message_id: str, hops: Mapping[str, str], deleted: bool) -> MessageStatus:
    states = set(hops.values())
    if states and states == {DELIVERED}:
        status = DELIVERED
    elif deleted:
        status = DELETED
    else:
        found = next((s for s in HOP_ORDER if s in states), None)
        status = found or ("forwarded" if states else "queued")
    complete = bool(states) and states <= TERMINAL
    return MessageStatus(message_id, status, 0, 0, (), (), complete)


def open_sites(dests: Sequence[DestinationView]) -> set[str]:
    """The destinations still without a receipt or a failure."""
    return {d.site for d in dests if d.state not in TERMINAL}


def hops_to_hold(dests: Sequence[DestinationView], stale: Collection[str]) -> set[str]:
    """The next hops to hold for envelopes sealed to a stale key of the sites ``stale``:
    each hop every one of whose open destinations is such a site. A hop that also
    carries a destination with a good key goes on (the hub behind it holds the stale
    one), and one whose stale destinations all have their receipts is not held."""
    by_hop: dict[str, list[str]] = {}
    for d in dests:
        if d.hop is not None and d.state not in TERMINAL:
            by_hop.setdefault(d.hop, []).append(d.site)
    return {hop for hop, sites in by_hop.items() if all(s in stale for s in sites)}


def _short(digest: bytes) -> str:
    return f"{digest.hex()[:16]}…"


def check_origin_receipt(
    receipt: Receipt,
    *,
    signer: str,
    receipt_digest: bytes,
    sent: SentView | None,
    answers: str | None,
) -> None:
    """Whether ``receipt`` (signed by ``signer``, in a receipt envelope of digest
    ``receipt_digest`` whose routing header answers message ``answers``) may be recorded
    for the message ``sent`` from here (None: no such message here). Raises
    ReceiptRefused with the reason; returns quietly for the same receipt recorded
    already (the store answers ``duplicate``)."""
    m, site = receipt.message_id, receipt.site
    if answers != m:
        # The hub marks delivered the message the routing header answers: both must agree.
        raise ReceiptRefused(
            f"receipt names message {m} but its envelope answers {answers or 'no message'}"
        )
    if sent is None:
        raise ReceiptRefused(f"receipt for unknown message {m}")
    # Only a document sent from here is receipted here: not one received here (its
    # co-recipients know its digest too), nor a receipt envelope sealed here (review 11b, F4).
    if not sent.sent_here:
        raise ReceiptRefused(f"receipt for message {m}, which was not sent from here")
    if sent.doc_class == RECEIPT_CLASS:
        raise ReceiptRefused(f"receipt for message {m}, which is itself a receipt")
    if site != signer:
        raise ReceiptRefused(f"receipt names site {site} but is signed by {signer}")
    if site not in sent.destinations:
        raise ReceiptRefused(
            f"receipt from {site}, which is not a destination of {m}"
            f" (destinations: {', '.join(sent.destinations)})"
        )
    # sent.digests: the stored copy's digest and those of the copies this message had
    # before a re-seal or re-sign here (envelopes.superseded, store schema v10).
    if receipt.envelope_digest not in sent.digests:
        raise ReceiptRefused(
            f"receipt from {site} names envelope digest {_short(receipt.envelope_digest)},"
            f" not the digest of any envelope sent as {m}"
        )
    first = sent.receipted.get(site)
    if first is not None and first != receipt_digest:
        raise ReceiptRefused(_second(site, m, first))


def _second(site: str, message_id: str, first: bytes) -> str:
    held = f"sha256 {_short(first)}" if first else "recorded before schema v11"
    return f"a second receipt from {site} for {message_id}: the first ({held}) stands"


def hub_second_receipt(r: RoutingHeader, original: RouteView, receipt_digest: bytes) -> str | None:
    """The hub's refusal of the receipt envelope with routing ``r`` and digest
    ``receipt_digest`` if its signer's receipt of that message is in already and is
    another envelope; None if it may pass (the first, or the same one again)."""
    first = original.receipted.get(r.origin)
    if first is None or first == receipt_digest:
        return None
    return _second(r.origin, r.in_reply_to or "", first)
