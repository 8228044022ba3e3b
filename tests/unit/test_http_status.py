"""The HTTP API's status document per destination (gateway/bridges/http/status.py),
held to the OpenAPI schema the API publishes (gateway/bridges/http/openapi.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
from hypothesis import given
from hypothesis import strategies as st

from gateway.bridges.http.openapi import document
from gateway.bridges.http.status import hop_states, status_document
from gateway.relay.circular import summarise
from gateway.store.base import Destination

NOW = datetime(2026, 12, 7, 5, 0, 0, tzinfo=UTC)
M = "01900000-0000-7000-8000-000000000001"
STATES = ("queued", "forwarded", "deferred", "held", "delivered", "failed")


def dest(
    site: str, state: str, *, hop: str | None = "HQ", n: int = 0, size: int = 900
) -> Destination:
    delivered = state == "delivered"
    return Destination(
        message_id=M,
        site=site,
        hop=hop,
        state=state,
        reason={"delivered": "receipt", "failed": "expired", "deferred": "connection refused"}.get(
            state, ""
        ),
        attempts=1,
        next_attempt=None,
        updated=NOW,
        receipt_at=NOW + timedelta(seconds=n) if delivered else None,
        receipt_digest=bytes([n]) * 32 if delivered else None,
        receipt_for=bytes(32) if delivered else None,
        receipt_size=size if delivered else 0,
    )


def build(dests: list[Destination], **kw: Any) -> dict[str, Any]:
    hops = kw.pop("hops", {})
    ms = summarise(dests, message_id=M, hops=hops)
    sizes = {d.site: d.receipt_size for d in dests}
    return status_document(ms, history=[], history_hops=hops, receipt_sizes=sizes, **kw)


def validate(body: dict[str, Any]) -> None:
    doc = document(["HQ", "M-HANOI", "M-PARIS", "M-ROME"])
    schema = {"$ref": "#/components/schemas/DocumentStatus", "components": doc["components"]}
    jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)


def test_a_circular_one_of_two_lists_each_destination_and_the_outstanding_one() -> None:
    body = build([dest("HQ", "delivered", n=1), dest("M-HANOI", "forwarded")])
    validate(body)
    assert body["status"] == "partially_delivered"
    assert (body["receipts"], body["of"], body["outstanding"], body["failed"]) == (
        1,
        2,
        ["M-HANOI"],
        [],
    )
    hq, hanoi = body["destinations"]
    assert hq["site"] == "HQ" and hq["state"] == "delivered"
    assert hq["receipt"] == {
        "at": "2026-12-07T05:00:01Z",
        "sha256": (bytes([1]) * 32).hex(),
        "href": f"/v1/documents/{M}/receipts/HQ",
        "media_type": "application/vnd.valise.envelope",
        "size": 900,
    }
    assert hanoi == {"site": "M-HANOI", "state": "forwarded", "reason": "", "receipt": None}
    # Kept fields: one hop, not delivered while a destination through it is open; no
    # single receipt for a circular.
    assert body["hops"] == {"HQ": "forwarded"} and body["receipt"] is None


def test_a_circular_is_delivered_only_with_every_receipt() -> None:
    body = build([dest("HQ", "delivered", n=1), dest("M-HANOI", "delivered", n=2)])
    validate(body)
    assert body["status"] == "delivered" and (body["receipts"], body["of"]) == (2, 2)
    assert body["outstanding"] == [] and body["hops"] == {"HQ": "delivered"}
    assert body["receipt"] is None  # two receipts: see destinations
    assert {d["receipt"]["sha256"] for d in body["destinations"]} == {
        (bytes([1]) * 32).hex(),
        (bytes([2]) * 32).hex(),
    }


def test_a_single_destination_reads_as_before() -> None:
    body = build([dest("M-HANOI", "delivered", n=3)])
    validate(body)
    assert body["status"] == "delivered" and body["hops"] == {"HQ": "delivered"}
    assert body["receipt"] == {
        "href": f"/v1/documents/{M}/receipt",
        "media_type": "application/vnd.valise.envelope",
        "size": 900,
    }
    failed = build([dest("M-HANOI", "failed")])
    validate(failed)
    assert failed["status"] == "failed" and failed["hops"] == {"HQ": "failed"}
    assert failed["failed"] == ["M-HANOI"] and failed["receipt"] is None
    assert failed["destinations"][0]["reason"] == "expired"


def test_a_receipt_not_kept_here_has_no_href() -> None:
    body = build([dest("M-PARIS", "delivered", hop=None, size=0)])
    validate(body)
    assert body["destinations"][0]["receipt"]["href"] is None and body["receipt"] is None
    assert body["hops"] == {}


def test_without_destination_rows_the_history_and_the_old_receipt_decide() -> None:
    legacy = build([], hops={"HQ": "forwarded"}, legacy_receipt_size=700)
    validate(legacy)
    assert legacy["status"] == "delivered" and legacy["hops"] == {"HQ": "forwarded"}
    assert legacy["receipt"]["size"] == 700 and (legacy["receipts"], legacy["of"]) == (0, 0)
    waiting = build([], hops={"HQ": "deferred"})
    validate(waiting)
    assert waiting["status"] == "deferred" and waiting["receipt"] is None


@given(
    st.lists(
        st.tuples(st.sampled_from(STATES), st.sampled_from(("HQ", "M-ROME"))),
        min_size=1,
        max_size=6,
    )
)
def test_the_document_always_fits_the_schema_and_adds_up(rows: list[tuple[str, str]]) -> None:
    sites = [f"M-S{i}" for i in range(len(rows))]
    dests = [
        dest(s, state, hop=hop, n=i)
        for i, (s, (state, hop)) in enumerate(zip(sites, rows, strict=True))
    ]
    body = build(dests)
    validate(body)
    delivered = [d["site"] for d in body["destinations"] if d["state"] == "delivered"]
    assert body["receipts"] == len(delivered) and body["of"] == len(dests)
    assert (body["status"] == "delivered") == (len(delivered) == len(dests))
    assert (body["status"] == "partially_delivered") == (0 < len(delivered) < len(dests))
    assert set(body["outstanding"]) | set(body["failed"]) | set(delivered) == set(sites)
    assert len(body["outstanding"]) + len(body["failed"]) + len(delivered) == len(sites)
    for hop, state in body["hops"].items():
        through = [d.state for d in dests if d.hop == hop]
        assert (state == "delivered") == all(s == "delivered" for s in through)
    assert hop_states(dests, {"X": "queued"}).keys() == {d.hop for d in dests if d.hop}
