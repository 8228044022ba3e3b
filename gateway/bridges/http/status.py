"""The HTTP API's status document of a submitted message, per destination. Pure.

``GET /v1/documents/{id}`` answers it (gateway/bridges/http/documents.py); its
schema is ``DocumentStatus`` in gateway/bridges/http/openapi_schemas.py.

Rules:
- The message's state is computed in one place, gateway/relay/circular.py summarise:
  ``delivered`` only when every destination's receipt is in, else
  ``partially_delivered`` (``receipts`` k ``of`` n, the ``outstanding`` sites) once
  one is, else ``failed`` when nothing is open, else the most urgent open state.
- ``destinations`` has one entry per final destination, by site: its state, the
  reason, and its receipt (when it came, the receipt envelope's SHA-256 digest, and
  where to fetch it: ``/v1/documents/{id}/receipts/{site}``; ``href`` is null when
  no receipt envelope is kept here, e.g. a document this site delivered to itself).
- Kept for integrators written before circulars: ``hops`` (the state per next hop:
  ``delivered`` once every destination through it has its receipt, else its open
  destinations' most urgent state, else ``failed``) and ``receipt`` (the one
  destination's receipt when there is exactly one destination, else null: see
  ``destinations``). Without destination rows (mail stored before schema v11 whose
  rows could not be made) ``hops`` is the latest state per next hop in the history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from envelope.values import format_time
from gateway.relay.circular import DELIVERED, FAILED, OPEN_ORDER, DestinationView, MessageStatus

ENVELOPE_MEDIA_TYPE = "application/vnd.valise.envelope"


def receipts_href(message_id: str, site: str) -> str:
    return f"/v1/documents/{message_id}/receipts/{site}"


def hop_states(dests: Sequence[DestinationView], history_hops: Mapping[str, str]) -> dict[str, str]:
    """The state per next hop: from the destinations routed through each hop, or,
    without destination rows, ``history_hops`` (the latest history state per peer)."""
    if not dests:
        return dict(history_hops)
    by_hop: dict[str, list[str]] = {}
    for d in dests:
        if d.hop is not None:
            by_hop.setdefault(d.hop, []).append(d.state)
    out: dict[str, str] = {}
    for hop, states in sorted(by_hop.items()):
        open_ = [s for s in states if s not in (DELIVERED, FAILED)]
        if open_:
            out[hop] = next((s for s in OPEN_ORDER if s in open_), sorted(open_)[0])
        elif all(s == DELIVERED for s in states):
            out[hop] = DELIVERED
        else:
            out[hop] = FAILED
    return out


def destination_entry(d: DestinationView, *, receipt_size: int) -> dict[str, Any]:
    """One destination as the status document shows it; ``receipt_size``: the bytes of
    its receipt envelope kept here (0: none kept)."""
    receipt: dict[str, Any] | None = None
    if d.receipt_at is not None:
        kept = receipt_size > 0
        receipt = {
            "at": format_time(d.receipt_at),
            "sha256": d.receipt_digest.hex() if d.receipt_digest else None,
            "href": receipts_href(d.message_id, d.site) if kept else None,
            "media_type": ENVELOPE_MEDIA_TYPE,
            "size": receipt_size,
        }
    return {"site": d.site, "state": d.state, "reason": d.reason, "receipt": receipt}


def status_document(
    ms: MessageStatus,
    *,
    history: Sequence[Mapping[str, Any]],
    history_hops: Mapping[str, str],
    receipt_sizes: Mapping[str, int],
    legacy_receipt_size: int = 0,
) -> dict[str, Any]:
    """The status document of ``ms`` (without the routing fields the caller adds).

    ``history``: the transitions as JSON objects; ``history_hops``: the latest history
    state per peer (the fallback of ``hops``); ``receipt_sizes``: site -> bytes of its
    receipt envelope kept here; ``legacy_receipt_size``: the one receipt of a message
    without destination rows (0: none)."""
    dests = ms.destinations
    entries = [destination_entry(d, receipt_size=receipt_sizes.get(d.site, 0)) for d in dests]
    receipt: dict[str, Any] | None = None
    if len(entries) == 1:
        one = entries[0]["receipt"]
        if one is not None and one["href"] is not None:
            href = f"/v1/documents/{ms.message_id}/receipt"
            receipt = {"href": href, "media_type": ENVELOPE_MEDIA_TYPE, "size": one["size"]}
    elif not entries and legacy_receipt_size > 0:
        receipt = {
            "href": f"/v1/documents/{ms.message_id}/receipt",
            "media_type": ENVELOPE_MEDIA_TYPE,
            "size": legacy_receipt_size,
        }
    status = ms.api_status()
    if not entries and receipt is not None:
        status = DELIVERED  # a receipt recorded without destination rows (before v11)
    return {
        "id": ms.message_id,
        "status": status,
        "receipts": ms.delivered,
        "of": ms.total,
        "outstanding": list(ms.outstanding),
        "failed": list(ms.failed),
        "destinations": entries,
        "hops": hop_states(dests, history_hops),
        "history": list(history),
        "receipt": receipt,
    }
