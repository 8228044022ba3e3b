"""The file names of an evidence bundle's receipts (valise-evidence/2, issue 11) and what
``queue shape`` counts per delivery row: pure, property-tested."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from gateway.evidence.layout import (
    ENVELOPE_DIGESTED,
    RECEIPT_DIGESTED,
    SITE_RE,
    receipt_files,
    token_data,
)
from gateway.relay.queue_shape import shape_count

SITES = st.from_regex(SITE_RE, fullmatch=True)


@given(site=SITES, n=st.integers(1, 500))
def test_a_delivered_token_name_maps_to_its_sites_receipt(site: str, n: int) -> None:
    names = receipt_files(site)
    name = f"{names.token}{'' if n == 1 else f'.{n}'}.tsr"
    assert token_data(name) == names.digested == f"receipts/{site}.digested"


@given(a=SITES, b=SITES)
def test_one_sites_receipt_files_never_match_anothers_globs(a: str, b: str) -> None:
    """hops/receipt-A.NN-HOP.xml is never taken for B's, even when B = A + "-…"."""
    if a == b:
        return
    fa, fb = receipt_files(a), receipt_files(b)
    hop = f"hops/{fa.hop_prefix}{fa.hop_sep}01-HQ.xml"
    pattern = re.escape(f"hops/{fb.hop_prefix}{fb.hop_sep}") + ".*"
    assert not re.fullmatch(pattern, hop)
    assert {fa.vlz, fa.digested, fa.xml, fa.key, *fa.openssl}.isdisjoint(
        {fb.vlz, fb.digested, fb.xml, fb.key, *fb.openssl}
    )


@given(name=st.text(max_size=60))
def test_token_data_of_any_name_is_none_or_a_digested_file(name: str) -> None:
    got = token_data(name)
    assert (
        got is None
        or got in (ENVELOPE_DIGESTED, RECEIPT_DIGESTED)
        or (got.startswith("receipts/") and SITE_RE.fullmatch(got[9:].removesuffix(".digested")))
    )


def test_v1_names_are_kept() -> None:
    assert token_data("delivered.tsr") == RECEIPT_DIGESTED
    assert token_data("delivered-2.tsr") == RECEIPT_DIGESTED
    assert token_data("sent-3.tsr") == ENVELOPE_DIGESTED
    assert token_data("delivered-M-HANOI.tsr") == "receipts/M-HANOI.digested"
    assert token_data("delivered-M-HANOI-2.tsr") == "receipts/M-HANOI-2.digested"
    assert token_data("delivered-M-HANOI.2.tsr") == "receipts/M-HANOI.digested"
    assert token_data("delivered-m-hanoi.tsr") is None
    assert receipt_files(None).vlz == "receipt.vlz"


STATES = st.sampled_from(
    ["queued", "sending", "deferred", "held", "failed", "forwarded", "delivered"]
)


@given(state=STATES, total=st.integers(0, 100), data=st.data())
def test_shape_counts_open_destinations_else_one_per_undelivered_delivery(
    state: str, total: int, data: st.DataObject
) -> None:
    open_ = data.draw(st.integers(0, total))
    done = state in ("forwarded", "delivered")
    assert shape_count(state, open_, total, messages=True) == (0 if done else 1)
    if total:
        assert shape_count(state, open_, total) == open_
    else:
        assert shape_count(state, 0, 0) == (0 if done else 1)
