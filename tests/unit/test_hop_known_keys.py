"""check_known: a key id a directory lists nowhere is 'retry' (newer than our copy); one
a site held long ago (kept by id only, after pruning) is refused for good."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.relay.hop import HopRefused, HopUnknownKey, check_known
from routing.directory import Directory, SiteEntry

PRUNED = "ab" * 16


def directory() -> Directory:
    site = SiteEntry(
        site="M-PARIS",
        endpoint="https://127.0.0.1:8444",
        signing=(),
        encryption=(),
        tls=(),
        retired_ids=(PRUNED,),
    )
    return Directory(serial=7, issued=datetime(2026, 12, 1, tzinfo=UTC), hub="HQ", sites=(site,))


def test_a_pruned_key_is_refused_for_good_not_retried() -> None:
    with pytest.raises(HopRefused) as caught:
        check_known(directory(), "M-PARIS", PRUNED, "origin signing")
    assert not isinstance(caught.value, HopUnknownKey)
    assert PRUNED in str(caught.value) and "retired or revoked" in str(caught.value)


def test_a_key_listed_nowhere_is_retried() -> None:
    with pytest.raises(HopUnknownKey):
        check_known(directory(), "M-PARIS", "cd" * 16, "origin signing")
