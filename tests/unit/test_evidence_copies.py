"""An evidence bundle's earlier copies (valise-evidence/3, review 11b F1): their file
names, and a copy's head read from arbitrary bytes: pure, property-tested."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envelope.errors import EnvelopeError
from envelope.framing import MAGIC
from gateway.evidence.copies import _earlier_copy
from gateway.evidence.layout import COPIES, copy_files


@given(st.binary(min_size=32, max_size=32))
def test_a_copy_is_filed_under_its_digest(digest: bytes) -> None:
    head, digested = copy_files(digest)
    assert head == f"{COPIES}/{digest.hex()}.head"
    assert digested == f"{COPIES}/{digest.hex()}.digested"
    assert bytes.fromhex(head.removeprefix(f"{COPIES}/").removesuffix(".head")) == digest


@given(st.one_of(st.binary(max_size=256), st.binary(max_size=256).map(lambda b: MAGIC + b)))
def test_bytes_that_are_no_framed_head_are_refused_as_such(data: bytes) -> None:
    message: Any = None  # never reached: the bytes are refused first
    with pytest.raises(EnvelopeError):
        _earlier_copy(data, b"\x00" * 32, message)
