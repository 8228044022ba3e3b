"""The hub's check of a receipt against the message it answers (gateway/relay/hop.py
check_receipt): the pure predicate, every refusal with its reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from envelope.model import RoutingHeader
from envelope.receipt import RECEIPT_CLASS
from envelope.seal import new_routing
from gateway.relay.hop import HopRefused, check_receipt
from gateway.store.base import MessageRoute

NOW = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)
X = "01900000-0000-7000-8000-000000000001"
SENT = MessageRoute("M-PARIS", ("M-HANOI", "M-LIMA"), "document")


def receipt(origin: str, to: list[str], in_reply_to: str | None = X) -> RoutingHeader:
    return new_routing(
        origin=origin, destinations=to, now=NOW, doc_class=RECEIPT_CLASS, in_reply_to=in_reply_to
    )


@pytest.mark.parametrize("destination", ["M-HANOI", "M-LIMA"])
def test_each_destination_receipts_to_the_origin(destination: str) -> None:
    check_receipt(receipt(destination, ["M-PARIS"]), SENT, here="HQ")


def test_a_receipt_of_a_message_the_hub_sent_goes_to_the_hub() -> None:
    check_receipt(receipt("M-HANOI", ["HQ"]), MessageRoute("HQ", ("M-HANOI",)), here="HQ")


@pytest.mark.parametrize(
    ("r", "held", "words"),
    [
        (receipt("M-EVIL", ["M-PARIS"]), SENT, ("M-EVIL", "not a destination")),
        (receipt("M-PARIS", ["M-PARIS"]), SENT, ("M-PARIS", "not a destination")),
        (receipt("M-HANOI", ["M-EVIL"]), SENT, ("M-EVIL", "origin M-PARIS")),
        (receipt("M-HANOI", ["M-PARIS", "M-LIMA"]), SENT, ("one destination",)),
        (receipt("M-HANOI", ["M-PARIS"]), None, (X, "HQ does not hold")),
        (receipt("M-HANOI", ["M-PARIS"], None), SENT, ("in-reply-to",)),
        (
            receipt("M-HANOI", ["M-PARIS"]),
            MessageRoute("M-PARIS", ("M-HANOI",), RECEIPT_CLASS),
            ("itself a receipt",),
        ),
    ],
    ids=[
        "not-a-destination",
        "the-origin-itself",
        "to-another-site",
        "to-two-sites",
        "not-held",
        "no-in-reply-to",
        "receipt-of-a-receipt",
    ],
)
def test_a_receipt_that_does_not_fit_is_refused(
    r: RoutingHeader, held: MessageRoute | None, words: tuple[str, ...]
) -> None:
    with pytest.raises(HopRefused) as refused:
        check_receipt(r, held, here="HQ")
    for word in words:
        assert word in str(refused.value)


FIRST = b"\x11" * 32


def test_a_second_receipt_from_a_destination_is_refused_at_the_hub() -> None:
    held = MessageRoute("M-PARIS", ("M-HANOI", "M-LIMA"), "document", {"M-HANOI": FIRST})
    with pytest.raises(HopRefused) as refused:
        check_receipt(receipt("M-HANOI", ["M-PARIS"]), held, here="HQ", receipt_digest=b"\2" * 32)
    assert str(refused.value) == (
        f"a second receipt from M-HANOI for {X}: the first (sha256 {FIRST.hex()[:16]}…) stands"
    )
    # M-LIMA's first receipt still passes
    check_receipt(receipt("M-LIMA", ["M-PARIS"]), held, here="HQ", receipt_digest=b"\2" * 32)


def test_the_same_receipt_again_passes_to_be_a_duplicate() -> None:
    held = MessageRoute("M-PARIS", ("M-HANOI", "M-LIMA"), "document", {"M-HANOI": FIRST})
    check_receipt(receipt("M-HANOI", ["M-PARIS"]), held, here="HQ", receipt_digest=FIRST)
