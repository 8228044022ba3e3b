"""An integrator's name is also its mailbox: every name `valise integrator add` takes
must be a local part the SMTP bridge lets it send as (review: `dms.` and `dms..v2` were
valid names that could never send)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.bridges.integrators import IntegratorError, check_name
from gateway.bridges.mail.address import local_mailbox


@pytest.mark.parametrize("name", ["alice", "dms.v2", "a", "x_y-z.q", "a" * 64])
def test_plain_names_are_taken(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["dms.", "dms..v2", ".a", "-a", "A", "a b", "", "a" * 65])
def test_names_that_are_no_mailbox_are_refused(name: str) -> None:
    with pytest.raises(IntegratorError):
        check_name(name)


@given(st.text(alphabet="abz09._-", min_size=1, max_size=70))
def test_every_name_taken_is_a_mailbox(name: str) -> None:
    try:
        check_name(name)
    except IntegratorError:
        return
    assert local_mailbox(name) == name
