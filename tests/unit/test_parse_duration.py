"""``keys rotate/activate --overlap``: parse_duration takes a finite, bounded duration
or raises KeyOpError (a usage error, exit 2), never another exception (review 10, F5)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.site.keyring import MAX_OVERLAP_SECONDS
from gateway.trust.lifecycle import check_overlap, parse_duration
from gateway.trust.outcome import KeyOpError

UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@given(st.text(max_size=30))
def test_any_text_is_a_duration_in_range_or_a_key_op_error(text: str) -> None:
    try:
        got = parse_duration(text)
    except KeyOpError:
        return
    assert timedelta(0) <= got <= timedelta(seconds=MAX_OVERLAP_SECONDS)


@given(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(sorted(UNITS)))
def test_a_number_with_a_unit(value: float, unit: str) -> None:
    text = f"{value!r}{unit}"
    seconds = value * UNITS[unit]
    if math.isfinite(seconds) and 0 <= seconds <= MAX_OVERLAP_SECONDS:
        assert parse_duration(text).total_seconds() == pytest.approx(seconds, rel=1e-6, abs=1e-5)
    else:
        with pytest.raises(KeyOpError):
            parse_duration(text)


@pytest.mark.parametrize("text", ["inf", "nan", "-inf", "1e20s", "1e9d", "3000000d", "-1s"])
def test_the_reviewer_s_values_are_refused(text: str) -> None:
    with pytest.raises(KeyOpError):
        parse_duration(text)


def test_check_overlap_refuses_what_the_ring_would() -> None:
    check_overlap(timedelta(seconds=MAX_OVERLAP_SECONDS))
    for bad in (timedelta(seconds=-1), timedelta(seconds=MAX_OVERLAP_SECONDS + 1)):
        with pytest.raises(KeyOpError):
            check_overlap(bad)
