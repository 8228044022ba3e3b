"""The /v1/timestamp batch framing, the TSA client messages, the digested bytes, [tsa].

No sockets: the framing parser (bad input -> a typed error only, limits at N-1, N, N+1),
crypto.tsa's request / parse_response round trip through issue_batch, envelope.digested
over a sealed test vector, and the [tsa] configuration section.
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.sections import DEFAULT_TSA_POLICY, MAX_TSA_BATCH
from config.site import ConfigError, SiteConfig, load_site_config, render_site_config
from crypto.random import FixedRandom
from crypto.tsa import (
    MAX_REQUEST_BYTES,
    TimeStampAuthority,
    TimestampError,
    parse_request,
    parse_response,
    rejection,
    request,
)
from crypto.tsa_verify import verify_token
from crypto.x509 import SiteCA, issue_tsa_certificate
from envelope.digested import digested, digested_slice
from envelope.errors import EnvelopeError, FramingError
from gateway.proof.timestamp_batch import (
    MAX_BATCH_REQUESTS,
    BatchError,
    BatchMalformed,
    BatchTooLarge,
    frame,
    max_body_bytes,
    unframe,
    unframe_responses,
)
from gateway.proof.tsa_service import issue_batch
from tests.conftest import NOW

POLICY = DEFAULT_TSA_POLICY
DIGEST = hashlib.sha256(b"an envelope").digest()
_CA = SiteCA.create(now=NOW, rng=FixedRandom(b"batch-ca"))
_TSA = TimeStampAuthority(
    *issue_tsa_certificate(_CA, "HQ TSA", now=NOW, rng=FixedRandom(b"batch-tsa")),
    policy=POLICY,
    fraction_digits=3,
)
AT = NOW + timedelta(hours=1)
VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "v1"


# -- framing ------------------------------------------------------------------------------


@given(st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=40))
def test_frame_then_unframe_gives_the_items_back(items: list[bytes]) -> None:
    assert unframe(frame(items)) == items


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_unframe_of_any_bytes_returns_items_or_raises_a_batch_error(body: bytes) -> None:
    try:
        items = unframe(body, max_items=8, max_item_bytes=64)
    except BatchError:
        return
    assert 1 <= len(items) <= 8 and all(1 <= len(i) <= 64 for i in items)
    assert frame(items) == body


@given(st.lists(st.binary(min_size=1, max_size=16), min_size=1, max_size=6), st.data())
def test_a_truncated_batch_is_malformed(items: list[bytes], data: st.DataObject) -> None:
    body = frame(items)
    cut = data.draw(st.integers(min_value=1, max_value=len(body) - 1))
    try:
        got = unframe(body[:cut])
    except BatchMalformed:
        return
    # A cut that falls exactly between items is a shorter, valid batch.
    assert frame(got) == body[:cut] and len(got) < len(items)


def test_item_count_at_the_limit_and_over() -> None:
    assert len(unframe(frame([b"x"] * (MAX_BATCH_REQUESTS - 1)))) == MAX_BATCH_REQUESTS - 1
    assert len(unframe(frame([b"x"] * MAX_BATCH_REQUESTS))) == MAX_BATCH_REQUESTS
    with pytest.raises(BatchTooLarge, match="more than 256 items"):
        unframe(frame([b"x"] * (MAX_BATCH_REQUESTS + 1)))
    assert MAX_BATCH_REQUESTS == MAX_TSA_BATCH


def test_item_size_at_the_limit_and_over() -> None:
    for n in (MAX_REQUEST_BYTES - 1, MAX_REQUEST_BYTES):
        assert unframe(frame([b"\x30" * n])) == [b"\x30" * n]
    with pytest.raises(BatchTooLarge, match="over 16384"):
        unframe(frame([b"\x30" * (MAX_REQUEST_BYTES + 1)]))
    with pytest.raises(BatchTooLarge, match="bytes"):
        unframe(b"\x00" * (max_body_bytes() + 1))


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "empty"),
        (b"\x00\x00\x00", "truncated: an item length"),
        (b"\x00\x00\x00\x00", "an empty item"),
        (b"\x00\x00\x00\x05abc", "truncated: an item of 5 bytes"),
        (frame([b"ok"]) + b"\x00", "truncated: an item length"),
    ],
)
def test_malformed_batches(body: bytes, why: str) -> None:
    with pytest.raises(BatchMalformed, match=why):
        unframe(body)


def test_frame_refuses_an_empty_item_and_responses_must_match_the_count() -> None:
    with pytest.raises(BatchMalformed):
        frame([b""])
    with pytest.raises(BatchMalformed, match="2 answers to 3 requests"):
        unframe_responses(frame([b"a", b"b"]), expected=3)


# -- the TSA's client side, and a batch at HQ ---------------------------------------------


def test_a_request_round_trips_through_a_batch_and_its_token_verifies() -> None:
    req = request(DIGEST, nonce=7)
    assert parse_request(req, policy=POLICY) == (DIGEST, 7, True)
    other = request(hashlib.sha256(b"other").digest(), cert_req=False, policy=POLICY)
    answers = issue_batch(_TSA, [req, b"\x30\x00", other], now=AT, policy=POLICY)
    assert len(answers) == 3
    info = verify_token(parse_response(answers[0]), DIGEST, _CA.cert_pem, nonce=7, policy=POLICY)
    assert info.nonce == 7 and info.policy == POLICY
    with pytest.raises(TimestampError) as refused:
        parse_response(answers[1])
    assert refused.value.failure == "badDataFormat"
    # Without the certificate in it the token verifies only with the certificate given.
    token = parse_response(answers[2])
    with pytest.raises(TimestampError, match="signing certificate"):
        verify_token(token, hashlib.sha256(b"other").digest(), _CA.cert_pem)
    verify_token(
        token, hashlib.sha256(b"other").digest(), _CA.cert_pem, tsa_certificate=_TSA.cert_pem
    )


def test_a_request_for_another_policy_is_refused_alone() -> None:
    answers = issue_batch(
        _TSA, [request(DIGEST, policy="1.2.3.4"), request(DIGEST)], now=AT, policy=POLICY
    )
    with pytest.raises(TimestampError) as refused:
        parse_response(answers[0])
    assert refused.value.failure == "unacceptedPolicy"
    assert parse_response(answers[1])


def test_a_batch_outside_the_tsa_certificate_is_refused_whole() -> None:
    answers = issue_batch(_TSA, [request(DIGEST)], now=NOW - timedelta(days=1), policy=POLICY)
    with pytest.raises(TimestampError) as refused:
        parse_response(answers[0])
    assert refused.value.failure == "timeNotAvailable"


def test_parse_response_reads_a_rejection_with_its_text() -> None:
    with pytest.raises(TimestampError, match=r"status 2.*nope") as refused:
        parse_response(rejection("badAlg", "nope"))
    assert refused.value.failure == "badAlg"


_GRANTED = issue_batch(_TSA, [request(DIGEST, nonce=1)], now=AT, policy=POLICY)[0]


@settings(max_examples=300)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.tuples(st.integers(0, len(_GRANTED) - 1), st.integers(1, 255)).map(
            lambda m: _GRANTED[: m[0]] + bytes([_GRANTED[m[0]] ^ m[1]]) + _GRANTED[m[0] + 1 :]
        ),
        st.integers(0, len(_GRANTED) - 1).map(lambda n: _GRANTED[:n]),
    )
)
def test_parse_response_of_any_bytes_raises_only_timestamp_error(data: bytes) -> None:
    with contextlib.suppress(TimestampError):
        parse_response(data)


def test_request_refuses_what_cannot_be_a_request() -> None:
    with pytest.raises(TimestampError):
        request(b"short")
    with pytest.raises(TimestampError):
        request(DIGEST, nonce=-1)
    with pytest.raises(TimestampError):
        request(DIGEST, policy="not an oid")


# -- the digested bytes -------------------------------------------------------------------


def test_digested_bytes_hash_to_the_envelope_digest() -> None:
    data = (VECTORS / "basic.valise").read_bytes()
    seen = digested(data)
    assert hashlib.sha256(seen.data).digest() == seen.digest
    assert seen.data.startswith(b"<signed>") and seen.data.endswith(b"</signature>")
    assert digested_slice(data, seen.digest) == seen.data
    with pytest.raises(FramingError, match="digest"):
        digested_slice(data, hashlib.sha256(b"other").digest())
    with pytest.raises(EnvelopeError):
        digested(data[:20])


# -- [tsa] ----------------------------------------------------------------------------------


def _config(tmp_path: Path, tsa: str) -> SiteConfig:
    (tmp_path / "valise.toml").write_text(
        '[site]\nid = "HQ"\nrole = "hub"\nlisten = "127.0.0.1:1"\n'
        'endpoint = "https://127.0.0.1:1"\nhub = "HQ"\nhub_endpoint = "https://127.0.0.1:1"\n' + tsa
    )
    return load_site_config(tmp_path, {})


def test_tsa_section_defaults_round_trip_and_limits(tmp_path: Path) -> None:
    config = _config(tmp_path, "")
    assert (config.tsa.policy, config.tsa.batch_max, config.tsa.batch_wait_ms) == (
        DEFAULT_TSA_POLICY,
        64,
        20,
    )
    assert "[tsa]" in render_site_config(config)
    got = _config(tmp_path, '[tsa]\npolicy = "2.16.250.1.9"\nbatch_max = 256\n')
    assert got.tsa.policy == "2.16.250.1.9" and got.tsa.batch_max == MAX_TSA_BATCH
    for bad in ('policy = "1.2.x"', 'policy = "01.2"', "batch_max = 0", "batch_max = 257"):
        with pytest.raises(ConfigError, match=r"\[tsa\]"):
            _config(tmp_path, f"[tsa]\n{bad}\n")
