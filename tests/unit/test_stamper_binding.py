"""The mission's per-token binding check (gateway/proof/timestamping.py ``_bound``): a token
HQ issued for our imprint and nonce passes; one for another imprint or nonce does not."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from config.sections import DEFAULT_TSA_POLICY
from crypto.random import FixedRandom
from crypto.tsa import TimeStampAuthority, parse_response, response
from crypto.x509 import SiteCA, issue_tsa_certificate
from gateway.proof.timestamping import _bound
from tests.conftest import NOW

_CA = SiteCA.create(now=NOW, rng=FixedRandom(b"binding-ca"))
_TSA = TimeStampAuthority(*issue_tsa_certificate(_CA, "HQ TSA", now=NOW), policy=DEFAULT_TSA_POLICY)


@settings(max_examples=25, deadline=None)
# Nonces are 8 random bytes, as a mission sends them.
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=2**56, max_value=2**64 - 1))
def test_a_token_is_bound_to_its_imprint_and_nonce(data: bytes, nonce: int) -> None:
    digest = hashlib.sha256(data).digest()
    (token,) = _TSA.issue_many([digest], serials=[1], now=NOW, nonces=[nonce])
    assert parse_response(response(token)) == token  # sliced out of the response as is
    assert _bound(token, digest, nonce)
    assert not _bound(token, hashlib.sha256(data + b"x").digest(), nonce)
    assert not _bound(token, digest, nonce ^ (1 << 40))
