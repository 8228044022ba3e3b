"""The bad link's pure parts (tests/support/impair.py): pacing and the cut schedule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.impair import Link, Pacer, is_up


def test_pacing_is_a_token_bucket_then_the_delay() -> None:
    p = Pacer(8_000, 0.1)  # 1,000 bytes a second
    assert p.due(0.0, 500) == pytest.approx(0.6)
    assert p.due(0.0, 500) == pytest.approx(1.1)  # queued behind the first
    assert p.due(5.0, 100) == pytest.approx(5.2)  # idle meanwhile: no credit saved up
    assert Pacer(0, 0.25).due(3.0, 10**9) == pytest.approx(3.25)  # no rate: delay only


@given(st.lists(st.tuples(st.floats(0, 100), st.integers(1, 1 << 20)), max_size=30))
def test_nothing_leaves_faster_than_the_rate_or_out_of_order(
    chunks: list[tuple[float, int]],
) -> None:
    p, last, now = Pacer(1_000_000, 0.0), 0.0, 0.0
    sent = 0
    for gap, n in chunks:
        now += gap
        due = p.due(now, n)
        assert due >= last and due >= now + n / 125_000 - 1e-9
        last = due
        sent += n
    if chunks:
        assert last >= sent / 125_000 - 1e-6


def test_the_cut_schedule() -> None:
    link = Link(period=30, down=5)
    assert [is_up(link, t) for t in (0, 24.9, 25, 29.9, 30, 54.9, 55)] == [
        True,
        True,
        False,
        False,
        True,
        True,
        False,
    ]
    assert is_up(Link(), 1e9)


@pytest.mark.parametrize(
    "figures", [{"rate_bps": -1}, {"delay": -0.1}, {"period": 5, "down": 5}, {"down": 1}]
)
def test_bad_figures_are_refused(figures: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Link(**figures)  # type: ignore[arg-type]
