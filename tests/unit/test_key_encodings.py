"""One public key, one encoding, one key id: a non-canonical encoding of a key another
site lists would give it a second id (review round 2: an X25519 u-coordinate with its
top bit set is the same key under RFC 7748, and was published for a second site)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.keys import (
    MLKEM768_PUBLIC_BYTES,
    X25519_FIELD_PRIME,
    DecryptionKey,
    EncryptionKey,
    KeyFormatError,
)

KEY = DecryptionKey.from_seed(bytes(range(96))).public


def with_x25519(u: int) -> bytes:
    return KEY.raw[:MLKEM768_PUBLIC_BYTES] + u.to_bytes(32, "little")


def test_the_canonical_encoding_loads_with_its_id() -> None:
    assert EncryptionKey.from_bytes(KEY.raw).key_id == KEY.key_id


def test_the_top_bit_alias_of_a_key_is_refused() -> None:
    alias = bytearray(KEY.raw)
    alias[-1] ^= 0x80
    with pytest.raises(KeyFormatError, match="canonical"):
        EncryptionKey.from_bytes(bytes(alias))


@given(st.integers(min_value=X25519_FIELD_PRIME, max_value=2**256 - 1))
def test_no_u_coordinate_at_or_above_the_field_prime_loads(u: int) -> None:
    with pytest.raises(KeyFormatError):
        EncryptionKey.from_bytes(with_x25519(u))


@pytest.mark.parametrize("u", [X25519_FIELD_PRIME - 1, X25519_FIELD_PRIME, X25519_FIELD_PRIME + 1])
def test_the_field_prime_bound_at_n_minus_1_n_n_plus_1(u: int) -> None:
    if u < X25519_FIELD_PRIME:
        assert EncryptionKey.from_bytes(with_x25519(u)).raw == with_x25519(u)
    else:
        with pytest.raises(KeyFormatError):
            EncryptionKey.from_bytes(with_x25519(u))


def test_a_non_canonical_ml_kem_coefficient_is_refused() -> None:
    bad = bytearray(KEY.raw)
    bad[0], bad[1] = 0xFF, bad[1] | 0x0F  # the first 12-bit coefficient is 4095 >= q
    with pytest.raises(KeyFormatError):
        EncryptionKey.from_bytes(bytes(bad))
