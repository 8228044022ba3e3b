"""A message's state across its destinations (gateway/relay/circular.py summarise), and the
origin's and the hub's checks of a receipt: every refusal with its exact reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envelope.receipt import RECEIPT_CLASS, Receipt
from envelope.seal import new_routing
from gateway.relay.circular import (
    ReceiptRefused,
    check_origin_receipt,
    hops_to_hold,
    hub_second_receipt,
    summarise,
)

NOW = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)
M = "01900000-0000-7000-8000-000000000001"
GOOD = bytes(range(32))
OTHER = bytes(range(1, 33))
STATES = ("queued", "forwarded", "deferred", "held", "delivered", "failed")


@dataclass(frozen=True)
class Dest:
    """A destination row as gateway/relay/circular.py reads it."""

    site: str
    state: str
    reason: str = ""
    hop: str | None = "HQ"
    message_id: str = M
    receipt_at: datetime | None = None
    receipt_digest: bytes | None = None
    receipt_for: bytes | None = GOOD


@dataclass(frozen=True)
class Sent:
    destinations: tuple[str, ...]
    digests: frozenset[bytes]
    receipted: dict[str, bytes] = field(default_factory=dict)
    sent_here: bool = True
    doc_class: str = "document"


def sites(n: int) -> list[str]:
    return [f"M-{i:02d}" for i in range(n)]


@given(st.lists(st.sampled_from(STATES), min_size=1, max_size=8), st.booleans())
def test_summarise_delivered_iff_every_destination_delivered(
    states: list[str], deleted: bool
) -> None:
    dests = [Dest(s, state) for s, state in zip(sites(len(states)), states, strict=True)]
    ms = summarise(dests, deleted=deleted)
    every = all(s == "delivered" for s in states)
    assert (ms.status == "delivered") == every
    assert ms.delivered == states.count("delivered")
    assert ms.total == len(states)
    got = {d.site for d in dests if d.state == "delivered"}
    # outstanding, failed and delivered partition the sites
    assert not (set(ms.outstanding) & set(ms.failed) or set(ms.outstanding) & got)
    assert not set(ms.failed) & got
    assert set(ms.outstanding) | set(ms.failed) | got == set(sites(len(states)))
    assert ms.complete == all(s in ("delivered", "failed") for s in states)
    assert list(ms.outstanding) == sorted(ms.outstanding)
    if 0 < ms.delivered < ms.total and not deleted:
        assert ms.status == "partially delivered"
        assert ms.line().startswith(f"partially delivered ({ms.delivered} of {ms.total})")
    if ms.complete and ms.delivered == 0 and not deleted:
        assert ms.status == "failed"


@given(st.lists(st.sampled_from(STATES), min_size=1, max_size=6), st.randoms())
def test_summarise_depends_on_the_rows_not_their_order(states: list[str], rnd: object) -> None:
    dests = [Dest(s, state) for s, state in zip(sites(len(states)), states, strict=True)]
    shuffled = list(dests)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert summarise(shuffled) == summarise(dests)


@pytest.mark.parametrize(
    ("state", "status"),
    [(s, s) for s in ("queued", "forwarded", "deferred", "held", "delivered", "failed")],
)
def test_single_destination_status_reads_as_before(state: str, status: str) -> None:
    ms = summarise([Dest("M-HANOI", state)])
    assert ms.status == status
    assert ms.api_status() == status
    assert (ms.delivered, ms.total) == (int(state == "delivered"), 1)
    if state == "delivered":
        assert ms.line() == "delivered (receipt verified)"


def test_the_issues_scenario_reads_one_of_two_with_the_outstanding_site() -> None:
    ms = summarise([Dest("HQ", "delivered"), Dest("M-HANOI", "forwarded")])
    assert ms.status == "partially delivered"
    assert ms.api_status() == "partially_delivered"
    assert ms.line() == "partially delivered (1 of 2); outstanding: M-HANOI (forwarded)"
    assert ms.outstanding == ("M-HANOI",)
    done = summarise([Dest("HQ", "delivered"), Dest("M-HANOI", "delivered")])
    assert (done.status, done.delivered, done.total, done.complete) == ("delivered", 2, 2, True)
    assert done.line() == "delivered (2 of 2, receipts verified)"
    # at the hub, which cannot open the receipts it relays
    relayed = summarise([Dest("HQ", "delivered"), Dest("M-HANOI", "delivered", receipt_for=None)])
    assert relayed.line() == "delivered (2 of 2, receipts relayed)"
    alone = summarise([Dest("M-HANOI", "delivered", receipt_for=None)])
    assert alone.line() == "delivered (receipt relayed)"


def test_a_failed_destination_is_named_with_its_reason() -> None:
    ms = summarise([Dest("HQ", "delivered"), Dest("M-HANOI", "failed", "expired")])
    assert ms.status == "partially delivered" and ms.complete
    assert ms.line() == "partially delivered (1 of 2); failed: M-HANOI (failed: expired)"
    held = summarise([Dest("A", "forwarded"), Dest("B", "held", "key revoked")])
    assert held.status == "held"
    assert held.line() == "held (0 of 2); outstanding: A (forwarded), B (held: key revoked)"


@pytest.mark.parametrize(
    ("hops", "deleted", "status"),
    [
        ({}, False, "queued"),
        ({"HQ": "forwarded"}, False, "forwarded"),
        ({"HQ": "sending"}, False, "sending"),
        ({"HQ": "delivered"}, False, "delivered"),
        ({"HQ": "failed", "M-A": "forwarded"}, False, "failed"),
        ({"HQ": "forwarded"}, True, "deleted"),
    ],
)
def test_without_destination_rows_the_hops_decide(
    hops: dict[str, str], deleted: bool, status: str
) -> None:
    ms = summarise([], message_id=M, hops=hops, deleted=deleted)
    assert (ms.message_id, ms.status, ms.total) == (M, status, 0)


def receipt(site: str = "M-HANOI", digest: bytes = GOOD) -> Receipt:
    return Receipt(M, digest, site, NOW)


SENT = Sent(("HQ", "M-HANOI"), frozenset({GOOD}), {"HQ": bytes(32)})
R1 = b"\x11" * 32


@pytest.mark.parametrize(
    ("r", "signer", "sent", "reason"),
    [
        (receipt(), "M-HANOI", None, f"receipt for unknown message {M}"),
        (receipt(), "M-EVIL", SENT, "receipt names site M-HANOI but is signed by M-EVIL"),
        (
            receipt("M-EVIL"),
            "M-EVIL",
            SENT,
            f"receipt from M-EVIL, which is not a destination of {M} (destinations: HQ, M-HANOI)",
        ),
        (
            receipt(digest=OTHER),
            "M-HANOI",
            SENT,
            f"receipt from M-HANOI names envelope digest {OTHER.hex()[:16]}…,"
            f" not the digest of any envelope sent as {M}",
        ),
        (
            receipt("HQ"),
            "HQ",
            SENT,
            f"a second receipt from HQ for {M}: the first (sha256 {'00' * 8}…) stands",
        ),
        (
            receipt(),
            "M-HANOI",
            Sent(SENT.destinations, SENT.digests, sent_here=False),
            f"receipt for message {M}, which was not sent from here",
        ),
        (
            receipt(),
            "M-HANOI",
            Sent(SENT.destinations, SENT.digests, doc_class="receipt"),
            f"receipt for message {M}, which is itself a receipt",
        ),
    ],
    ids=[
        "unknown-message",
        "signer-mismatch",
        "not-a-destination",
        "other-digest",
        "second",
        "received-here",
        "a-receipt",
    ],
)
def test_check_origin_receipt_refusals(
    r: Receipt, signer: str, sent: Sent | None, reason: str
) -> None:
    with pytest.raises(ReceiptRefused) as refused:
        check_origin_receipt(r, signer=signer, receipt_digest=R1, sent=sent, answers=M)
    assert str(refused.value) == reason


OTHER_ID = "01900000-0000-7000-8000-000000000002"


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        (OTHER_ID, f"receipt names message {M} but its envelope answers {OTHER_ID}"),
        (None, f"receipt names message {M} but its envelope answers no message"),
    ],
)
def test_a_receipt_must_name_the_message_its_envelope_answers(
    answers: str | None, reason: str
) -> None:
    """The hub marks delivered what the routing header answers; the origin records
    what the signed receipt names: a receipt where the two differ counts nowhere."""
    with pytest.raises(ReceiptRefused) as refused:
        check_origin_receipt(
            receipt(), signer="M-HANOI", receipt_digest=R1, sent=SENT, answers=answers
        )
    assert str(refused.value) == reason


def test_a_first_receipt_and_the_same_one_again_pass() -> None:
    check_origin_receipt(receipt(), signer="M-HANOI", receipt_digest=R1, sent=SENT, answers=M)
    again = Sent(SENT.destinations, SENT.digests, {"M-HANOI": R1})
    check_origin_receipt(receipt(), signer="M-HANOI", receipt_digest=R1, sent=again, answers=M)


def test_a_second_receipt_over_a_pre_v11_one_is_refused_as_such() -> None:
    old = Sent(SENT.destinations, SENT.digests, {"M-HANOI": b""})
    with pytest.raises(ReceiptRefused, match="the first \\(recorded before schema v11\\) stands"):
        check_origin_receipt(receipt(), signer="M-HANOI", receipt_digest=R1, sent=old, answers=M)


@given(
    site=st.sampled_from(["HQ", "M-HANOI", "M-EVIL", "M-LIMA"]),
    signer=st.sampled_from(["HQ", "M-HANOI", "M-EVIL"]),
    digest=st.sampled_from([GOOD, OTHER]),
    first=st.sampled_from([None, R1, b"\x22" * 32, b""]),
    rd=st.sampled_from([R1, b"\x22" * 32]),
    answers=st.sampled_from([M, OTHER_ID, None]),
)
def test_check_origin_receipt_passes_exactly_the_fitting_ones(
    site: str, signer: str, digest: bytes, first: bytes | None, rd: bytes, answers: str | None
) -> None:
    sent = Sent(("HQ", "M-HANOI"), frozenset({GOOD}), {} if first is None else {site: first})
    fits = (
        answers == M
        and site == signer
        and site in sent.destinations
        and digest == GOOD
        and (first is None or first == rd)
    )
    try:
        check_origin_receipt(
            receipt(site, digest), signer=signer, receipt_digest=rd, sent=sent, answers=answers
        )
    except ReceiptRefused as exc:
        assert not fits, exc
        assert str(exc).count("\n") == 0
    else:
        assert fits


@dataclass(frozen=True)
class Route:
    receipted: dict[str, bytes]


def test_the_hub_refuses_a_second_different_receipt_only() -> None:
    r = new_routing(
        origin="M-HANOI", destinations=["M-PARIS"], now=NOW, doc_class=RECEIPT_CLASS, in_reply_to=M
    )
    assert hub_second_receipt(r, Route({}), R1) is None
    assert hub_second_receipt(r, Route({"HQ": R1}), b"\x22" * 32) is None
    assert hub_second_receipt(r, Route({"M-HANOI": R1}), R1) is None
    assert hub_second_receipt(r, Route({"M-HANOI": R1}), b"\x22" * 32) == (
        f"a second receipt from M-HANOI for {M}: the first (sha256 {R1.hex()[:16]}…) stands"
    )


@pytest.mark.parametrize(
    ("dests", "stale", "hops"),
    [
        # at HQ, hop == destination: only the stale one is held
        ([Dest("M-A", "queued", hop="M-A"), Dest("M-B", "deferred", hop="M-B")], {"M-B"}, {"M-B"}),
        # at a mission: the hub hop carries a good destination too, so it goes on
        ([Dest("HQ", "queued", hop="HQ"), Dest("M-B", "queued", hop="HQ")], {"M-B"}, set()),
        ([Dest("HQ", "queued", hop="HQ"), Dest("M-B", "queued", hop="HQ")], {"HQ", "M-B"}, {"HQ"}),
        # the good destination has its receipt: only the stale one is open through the hop
        ([Dest("HQ", "delivered", hop="HQ"), Dest("M-B", "forwarded", hop="HQ")], {"M-B"}, {"HQ"}),
        # the stale destination has its receipt: nothing to hold
        ([Dest("M-A", "queued", hop="M-A"), Dest("M-B", "delivered", hop="M-B")], {"M-B"}, set()),
        # delivered here: no hop
        ([Dest("HQ", "queued", hop=None)], {"HQ"}, set()),
    ],
)
def test_a_hop_is_held_only_if_every_open_destination_through_it_is_stale(
    dests: list[Dest], stale: set[str], hops: set[str]
) -> None:
    assert hops_to_hold(dests, stale) == hops
