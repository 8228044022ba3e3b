"""An origin's escrow wrapped again from its old encryption key to its new one
(envelope/reseal.py rewrap_escrow): the same content key, under the new key only."""

from __future__ import annotations

import pytest

from crypto.errors import DecryptionError
from crypto.keys import DecryptionKey
from crypto.recipes import new_content_key, unwrap, wrap
from envelope.errors import DecryptionFailed
from envelope.reseal import rewrap_escrow
from envelope.seal import escrow_info

MID = "01a24e0f-660a-76cd-be02-c0b7af000001"


def test_the_escrow_follows_the_new_key() -> None:
    old, new, other = (DecryptionKey.from_seed(bytes([n]) * 96) for n in (1, 2, 3))
    key = new_content_key()
    escrow = wrap(key, old.public, escrow_info(MID, old.key_id))
    again = rewrap_escrow(escrow, MID, old, new.public)
    assert unwrap(again, new, escrow_info(MID, new.key_id)) == key
    with pytest.raises(DecryptionError):
        unwrap(again, old, escrow_info(MID, old.key_id))
    with pytest.raises(DecryptionFailed):
        rewrap_escrow(escrow, MID, other, new.public)  # not wrapped to that key
    with pytest.raises(DecryptionFailed):
        rewrap_escrow(escrow, "01a24e0f-660a-76cd-be02-c0b7af000002", old, new.public)
