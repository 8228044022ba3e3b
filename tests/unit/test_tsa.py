"""crypto.tsa and crypto.tsa_verify: RFC 3161 tokens from HQ's TSA, and their verification."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ, useful
from pyasn1_modules import rfc3161, rfc5035, rfc5652

import crypto.tsa_asn1 as tsa_asn1
from crypto.errors import CryptoError
from crypto.random import FixedRandom
from crypto.tsa import (
    TimeStampAuthority,
    TimestampError,
    TimeStampRequest,
    parse_request,
    rejection,
    response,
)
from crypto.tsa_sign import Signer
from crypto.tsa_verify import verify_token
from crypto.x509 import (
    TSA_DAYS,
    CertificateError,
    SiteCA,
    issue_site_certificate,
    issue_tsa_certificate,
)
from tests.conftest import NOW

POLICY = "1.3.6.1.4.1.61441.1.1"
DIGEST = hashlib.sha256(b"an envelope").digest()
OTHER = hashlib.sha256(b"another envelope").digest()
AT = NOW + timedelta(hours=1, microseconds=123456)


# Module-level material for the hypothesis tests (fixtures don't mix with @given well).
_CA = SiteCA.create(now=NOW, rng=FixedRandom(b"tsa-ca"))
_CA_PEM = _CA.cert_pem
_TSA = TimeStampAuthority(
    *issue_tsa_certificate(_CA, "Valise HQ TSA", now=NOW, rng=FixedRandom(b"tsa")),
    policy=POLICY,
    accuracy=timedelta(milliseconds=10),
    include_tsa_name=True,
)
_TOKEN = _TSA.issue(DIGEST, serial=0x1234, now=AT, nonce=0xABCDEF)
assert verify_token(_TOKEN, DIGEST, _CA_PEM).serial == 0x1234


@pytest.fixture(scope="module")
def ca() -> SiteCA:
    return SiteCA.create(now=NOW, rng=FixedRandom(b"tsa-ca"))


@pytest.fixture(scope="module")
def tsa_pems(ca: SiteCA) -> tuple[bytes, bytes]:
    return issue_tsa_certificate(ca, "Valise HQ TSA", now=NOW, rng=FixedRandom(b"tsa"))


@pytest.fixture(scope="module")
def tsa(tsa_pems: tuple[bytes, bytes]) -> TimeStampAuthority:
    return TimeStampAuthority(tsa_pems[0], tsa_pems[1], policy=POLICY)


@pytest.fixture(scope="module")
def token(tsa: TimeStampAuthority) -> bytes:
    return tsa.issue(DIGEST, serial=7, now=AT, nonce=0xC0FFEE)


def _decode(der: bytes, spec: object) -> object:
    value, rest = decoder.decode(der, asn1Spec=spec)
    assert rest == b""
    # DER: re-encodes to the same bytes (with the module's encoder, which keeps times as
    # they are: see test_times_are_encoded_as_given).
    assert tsa_asn1._encode(value) == der
    return value


def _parts(token: bytes) -> tuple[object, object, object]:
    """(SignedData, TSTInfo, SignerInfo) of a token, decoded with pyasn1-modules."""
    content_info = _decode(token, rfc5652.ContentInfo())
    signed_data = _decode(bytes(content_info["content"]), rfc5652.SignedData())
    tst = _decode(bytes(signed_data["encapContentInfo"]["eContent"]), rfc3161.TSTInfo())
    return signed_data, tst, signed_data["signerInfos"][0]


def _present(value: Any, name: str) -> bool:
    return tsa_asn1._has(value, name)


def _attributes(signer_info: object) -> dict[str, list[bytes]]:
    return {
        str(a["attrType"]): [bytes(v) for v in a["attrValues"]] for a in signer_info["signedAttrs"]
    }


def _custom_tsa_cert(
    ca: SiteCA,
    *,
    eku: list[x509.ObjectIdentifier] | None = None,
    eku_critical: bool = True,
    ca_cert: bool = False,
    key_usage: x509.KeyUsage | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate under the CA with a TSA-like profile we choose."""
    key = ec.derive_private_key(0xBAD_75A, ec.SECP256R1())
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Odd TSA")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(0x5EED)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca_cert, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=eku_critical)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    return builder.sign(ca._key, hashes.SHA256()), key


def _token_signed_by(
    template: TimeStampAuthority, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> bytes:
    """A token made with the module's own signer around a certificate the TSA would refuse."""
    signer = Signer(template, cert, key)
    return signer.batch("20261201100000Z", None, cert_req=True).token(DIGEST, 1, None)


def _usage(**on: bool) -> x509.KeyUsage:
    names = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
    )
    return x509.KeyUsage(
        **{n: on.get(n, False) for n in names}, encipher_only=False, decipher_only=False
    )


# --- the TSA certificate ----------------------------------------------------------------


def test_tsa_certificate_profile(ca: SiteCA, tsa_pems: tuple[bytes, bytes]) -> None:
    cert = x509.load_pem_x509_certificate(tsa_pems[0])
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.subject.rfc4514_string() == "CN=Valise HQ TSA"
    assert cert.issuer == ca.certificate.subject
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.content_commitment
    assert not usage.value.key_cert_sign and not usage.value.key_encipherment
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=TSA_DAYS)
    key = serialization.load_pem_private_key(tsa_pems[1], password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    assert key.public_key() == cert.public_key()


def test_tsa_certificate_refusals(ca: SiteCA) -> None:
    for name in ("", "x" * 65, "bad\nname"):
        with pytest.raises(CertificateError):
            issue_tsa_certificate(ca, name, now=NOW)
    with pytest.raises(CertificateError):
        issue_tsa_certificate(ca, "TSA", now=NOW, days=20 * 365)  # outlives the CA
    with pytest.raises(CertificateError):
        issue_tsa_certificate(ca, "TSA", now=NOW - timedelta(days=1))  # before the CA
    with pytest.raises(CertificateError):
        issue_tsa_certificate(ca, "TSA", now=NOW.replace(tzinfo=None))


def test_tsa_certificate_is_reproducible(ca: SiteCA) -> None:
    one = issue_tsa_certificate(ca, "T", now=NOW, rng=FixedRandom(b"same"))
    two = issue_tsa_certificate(ca, "T", now=NOW, rng=FixedRandom(b"same"))
    assert one == two


# --- issuing and verifying --------------------------------------------------------------


def test_round_trip(ca: SiteCA, tsa: TimeStampAuthority, token: bytes) -> None:
    info = verify_token(token, DIGEST, ca.cert_pem)
    assert info.gen_time == AT.replace(microsecond=0)
    assert info.serial == 7
    assert info.policy == POLICY
    assert info.nonce == 0xC0FFEE
    assert info.accuracy is None
    assert info.message_imprint == DIGEST
    assert info.tsa_name == "CN=Valise HQ TSA"
    assert info.tsa_certificate == tsa.cert_pem
    # Expectations the caller states are checked too.
    assert verify_token(token, DIGEST, ca.cert_pem, nonce=0xC0FFEE, policy=POLICY) == info
    with pytest.raises(TimestampError, match="nonce"):
        verify_token(token, DIGEST, ca.cert_pem, nonce=1)
    with pytest.raises(TimestampError, match="policy"):
        verify_token(token, DIGEST, ca.cert_pem, policy="1.2.3")
    assert issubclass(TimestampError, CryptoError)


def test_token_structure(tsa: TimeStampAuthority, token: bytes) -> None:
    signed_data, tst, signer_info = _parts(token)
    assert int(signed_data["version"]) == 3
    assert str(signed_data["encapContentInfo"]["eContentType"]) == "1.2.840.113549.1.9.16.1.4"
    assert len(signed_data["certificates"]) == 1
    cert_der = encoder.encode(signed_data["certificates"][0]["certificate"])
    assert cert_der == x509.load_pem_x509_certificate(tsa.cert_pem).public_bytes(
        serialization.Encoding.DER
    )
    assert int(tst["version"]) == 1
    assert str(tst["policy"]) == POLICY
    assert str(tst["messageImprint"]["hashAlgorithm"]["algorithm"]) == "2.16.840.1.101.3.4.2.1"
    assert not _present(tst["messageImprint"]["hashAlgorithm"], "parameters")
    assert bytes(tst["messageImprint"]["hashedMessage"]) == DIGEST
    assert int(tst["serialNumber"]) == 7 and int(tst["nonce"]) == 0xC0FFEE
    assert str(tst["genTime"]) == "20261201100000Z"
    for absent in ("accuracy", "tsa", "extensions"):
        assert not _present(tst, absent)
    assert not bool(tst["ordering"])
    assert int(signer_info["version"]) == 1
    assert str(signer_info["signatureAlgorithm"]["algorithm"]) == "1.2.840.10045.4.3.2"
    attributes = _attributes(signer_info)
    assert set(attributes) == {
        "1.2.840.113549.1.9.3",  # contentType
        "1.2.840.113549.1.9.4",  # messageDigest
        "1.2.840.113549.1.9.5",  # signingTime
        "1.2.840.113549.1.9.16.2.47",  # signingCertificateV2
    }
    (signing_time,) = attributes["1.2.840.113549.1.9.5"]
    assert signing_time == b"\x17\x0d261201100000Z"  # UTCTime, whole seconds
    (ess,) = attributes["1.2.840.113549.1.9.16.2.47"]
    cert_id = _decode(ess, rfc5035.SigningCertificateV2())["certs"][0]
    assert bytes(cert_id["certHash"]) == hashlib.sha256(cert_der).digest()
    assert (
        int(cert_id["issuerSerial"]["serialNumber"])
        == x509.load_der_x509_certificate(cert_der).serial_number
    )
    # hashAlgorithm is the DEFAULT (SHA-256), so DER leaves it out: certHash comes first.
    assert bytes(encoder.encode(cert_id))[2:4] == b"\x04\x20"


def test_tokens_are_deterministic(tsa: TimeStampAuthority, token: bytes) -> None:
    assert tsa.issue(DIGEST, serial=7, now=AT, nonce=0xC0FFEE) == token
    assert tsa.issue(DIGEST, serial=8, now=AT, nonce=0xC0FFEE) != token


def test_optional_fields(ca: SiteCA, tsa_pems: tuple[bytes, bytes]) -> None:
    rich = TimeStampAuthority(
        tsa_pems[0],
        tsa_pems[1],
        policy=POLICY,
        accuracy=timedelta(seconds=2, milliseconds=5, microseconds=7),
        fraction_digits=6,
        include_tsa_name=True,
        include_signing_time=False,
    )
    token = rich.issue(DIGEST, serial=1 << 159, now=AT)
    _signed_data, tst, signer_info = _parts(token)
    assert str(tst["genTime"]) == "20261201100000.123456Z"
    assert int(tst["accuracy"]["seconds"]) == 2
    assert int(tst["accuracy"]["millis"]) == 5 and int(tst["accuracy"]["micros"]) == 7
    assert tst["tsa"].getName() == "directoryName"
    assert not _present(tst, "nonce")
    assert "1.2.840.113549.1.9.5" not in _attributes(signer_info)
    info = verify_token(token, DIGEST, ca.cert_pem)
    assert info.gen_time == AT
    assert info.accuracy == timedelta(seconds=2, microseconds=5007)
    assert info.serial == 1 << 159 and info.nonce is None


@pytest.mark.parametrize(
    ("digits", "micro", "text"),
    [
        (0, 999999, "20261201100000Z"),
        (1, 999999, "20261201100000.9Z"),
        (3, 120000, "20261201100000.12Z"),  # trailing zeros are removed
        (6, 100, "20261201100000.0001Z"),
        (3, 50000, "20261201100000.05Z"),
        (6, 101010, "20261201100000.10101Z"),
        (6, 0, "20261201100000Z"),  # a zero fraction is left out
        (2, 5000, "20261201100000Z"),  # truncated, never rounded up
    ],
)
def test_gen_time_fractions(
    ca: SiteCA, tsa_pems: tuple[bytes, bytes], digits: int, micro: int, text: str
) -> None:
    authority = TimeStampAuthority(tsa_pems[0], tsa_pems[1], policy=POLICY, fraction_digits=digits)
    at = NOW.replace(hour=10, microsecond=micro)
    token = authority.issue(DIGEST, serial=3, now=at)
    assert str(_parts(token)[1]["genTime"]) == text
    assert verify_token(token, DIGEST, ca.cert_pem).gen_time <= at


def test_times_are_encoded_as_given() -> None:
    """pyasn1's own DER encoder turns ".05Z" into ".5Z"; the module's keeps the time."""
    moment = useful.GeneralizedTime("20261201100000.05Z")
    assert bytes(encoder.encode(moment)) == b"\x18\x1120261201100000.5Z"  # if fixed: drop
    assert tsa_asn1._encode(moment) == b"\x18\x1220261201100000.05Z"


def test_gen_time_is_utc(ca: SiteCA, tsa: TimeStampAuthority) -> None:
    paris = datetime(2026, 12, 1, 11, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=1)))
    token = tsa.issue(DIGEST, serial=4, now=paris)
    assert str(_parts(token)[1]["genTime"]) == "20261201110000Z"


def test_issue_many(ca: SiteCA, tsa: TimeStampAuthority) -> None:
    imprints = [hashlib.sha256(bytes([i])).digest() for i in range(20)]
    serials = list(range(100, 120))
    nonces = [None if i % 2 else i for i in range(20)]
    tokens = tsa.issue_many(imprints, serials=serials, now=AT, nonces=nonces)
    assert len(tokens) == 20
    for imprint, serial, nonce, token in zip(imprints, serials, nonces, tokens, strict=True):
        # The batch makes exactly the tokens that one at a time would.
        assert token == tsa.issue(imprint, serial=serial, now=AT, nonce=nonce)
        info = verify_token(token, imprint, ca.cert_pem)
        assert (info.serial, info.nonce) == (serial, nonce)
    assert tsa.issue_many([], serials=[], now=AT) == []


def test_issue_refusals(tsa: TimeStampAuthority) -> None:
    bad_calls = [
        lambda: tsa.issue(DIGEST[:31], serial=1, now=AT),
        lambda: tsa.issue(DIGEST.hex().encode(), serial=1, now=AT),
        lambda: tsa.issue(DIGEST, serial=0, now=AT),
        lambda: tsa.issue(DIGEST, serial=-1, now=AT),
        lambda: tsa.issue(DIGEST, serial=1 << 160, now=AT),
        lambda: tsa.issue(DIGEST, serial=True, now=AT),
        lambda: tsa.issue(DIGEST, serial=1, now=AT, nonce=-1),
        lambda: tsa.issue(DIGEST, serial=1, now=AT, nonce=1 << 256),
        lambda: tsa.issue(DIGEST, serial=1, now=AT.replace(tzinfo=None)),
        lambda: tsa.issue(DIGEST, serial=1, now=NOW - timedelta(seconds=1)),  # before the cert
        lambda: tsa.issue(DIGEST, serial=1, now=NOW + timedelta(days=TSA_DAYS + 1)),  # after
        lambda: tsa.issue_many([DIGEST, OTHER], serials=[1, 1], now=AT),
        lambda: tsa.issue_many([DIGEST, OTHER], serials=[1], now=AT),
        lambda: tsa.issue_many([DIGEST], serials=[1], now=AT, nonces=[1, 2]),
        lambda: tsa.issue_many(DIGEST, serials=[1], now=AT),
    ]
    for call in bad_calls:
        with pytest.raises(TimestampError):
            call()
    with pytest.raises(TimestampError) as caught:
        tsa.issue(DIGEST, serial=1, now=NOW - timedelta(seconds=1))
    assert caught.value.failure == "timeNotAvailable"


def test_authority_refusals(ca: SiteCA, tsa_pems: tuple[bytes, bytes]) -> None:
    cert, key = tsa_pems
    other_cert, other_key = issue_tsa_certificate(ca, "Other", now=NOW, rng=FixedRandom(b"o"))
    site_cert, site_key = issue_site_certificate(ca, "HQ", now=NOW, rng=FixedRandom(b"site"))
    bad: list[dict[str, object]] = [
        {"private_key": other_key},  # not the certificate's key
        {"certificate": site_cert, "private_key": site_key},  # a TLS certificate
        {"certificate": ca.cert_pem, "private_key": ca.to_pem()[1]},  # the CA itself
        {"certificate": b"junk"},
        {"private_key": b"junk"},
        {"policy": "not an oid"},
        {"policy": "1"},
        {"policy": "1.2.03"},
        {"accuracy": timedelta(0)},
        {"accuracy": timedelta(seconds=-1)},
        {"fraction_digits": 7},
        {"fraction_digits": -1},
        {"fraction_digits": True},
    ]
    for change in bad:
        arguments: dict[str, object] = {"certificate": cert, "private_key": key, "policy": POLICY}
        arguments.update(change)
        with pytest.raises(TimestampError):
            TimeStampAuthority(**arguments)  # type: ignore[arg-type]
    assert TimeStampAuthority(other_cert, other_key, policy="2.5").policy == "2.5"
    # An encrypted key needs its passphrase.
    encrypted = serialization.load_pem_private_key(key, None).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(TimestampError):
        TimeStampAuthority(cert, encrypted, policy=POLICY)
    assert TimeStampAuthority(cert, encrypted, policy=POLICY, passphrase=b"secret")
    assert "PRIVATE" not in repr(TimeStampAuthority(cert, key, policy=POLICY))


def test_certificate_left_out_on_request(ca: SiteCA, tsa: TimeStampAuthority) -> None:
    token = tsa.issue(DIGEST, serial=9, now=AT, cert_req=False)
    assert not _present(_parts(token)[0], "certificates")
    with pytest.raises(TimestampError, match="certificate"):
        verify_token(token, DIGEST, ca.cert_pem)
    info = verify_token(token, DIGEST, ca.cert_pem, tsa_certificate=tsa.cert_pem)
    assert info.serial == 9
    # The certificate given must be the one the token names.
    other_cert, _ = issue_tsa_certificate(ca, "Other", now=NOW, rng=FixedRandom(b"o"))
    with pytest.raises(TimestampError):
        verify_token(token, DIGEST, ca.cert_pem, tsa_certificate=other_cert)


# --- refusals ---------------------------------------------------------------------------


def test_wrong_digest_refused(ca: SiteCA, token: bytes) -> None:
    with pytest.raises(TimestampError, match="digest"):
        verify_token(token, OTHER, ca.cert_pem)
    for bad in (DIGEST[:31], DIGEST + b"\x00", b"", DIGEST.hex()):
        with pytest.raises(TimestampError):
            verify_token(token, bad, ca.cert_pem)  # type: ignore[arg-type]


def test_token_repointed_at_another_digest_refused(ca: SiteCA, token: bytes) -> None:
    assert token.count(DIGEST) == 1
    forged = token.replace(DIGEST, OTHER)
    with pytest.raises(TimestampError, match="messageDigest"):
        verify_token(forged, OTHER, ca.cert_pem)


def test_tampered_token_refused(ca: SiteCA, token: bytes) -> None:
    # The last byte is in the signature.
    with pytest.raises(TimestampError):
        verify_token(token[:-1] + bytes([token[-1] ^ 1]), DIGEST, ca.cert_pem)
    # The serial number (7) inside TSTInfo, after genTime... changed to 8.
    serial_at = token.index(b"\x02\x01\x07\x18")
    forged = token[:serial_at] + b"\x02\x01\x08" + token[serial_at + 3 :]
    with pytest.raises(TimestampError, match="messageDigest"):
        verify_token(forged, DIGEST, ca.cert_pem)
    # Truncated, extended.
    for bad in (token[:-10], token + b"\x00", token[:100]):
        with pytest.raises(TimestampError):
            verify_token(bad, DIGEST, ca.cert_pem)


def test_signature_checked_over_signed_attributes(
    ca: SiteCA, tsa: TimeStampAuthority, token: bytes
) -> None:
    # Two valid tokens: the signature of one does not fit the other's attributes.
    other = tsa.issue(DIGEST, serial=7, now=AT + timedelta(seconds=1), nonce=0xC0FFEE)
    sig_one = bytes(_parts(token)[2]["signature"])
    sig_two = bytes(_parts(other)[2]["signature"])
    if len(sig_one) == len(sig_two):
        with pytest.raises(TimestampError, match="signature"):
            verify_token(other.replace(sig_two, sig_one), DIGEST, ca.cert_pem)


def test_token_from_another_ca_refused(ca: SiteCA) -> None:
    rogue_ca = SiteCA.create(now=NOW, rng=FixedRandom(b"rogue-ca"))
    rogue_cert, rogue_key = issue_tsa_certificate(
        rogue_ca, "Valise HQ TSA", now=NOW, rng=FixedRandom(b"tsa")
    )
    rogue = TimeStampAuthority(rogue_cert, rogue_key, policy=POLICY)
    token = rogue.issue(DIGEST, serial=7, now=AT)
    assert verify_token(token, DIGEST, rogue_ca.cert_pem).serial == 7
    with pytest.raises(TimestampError, match="chain"):
        verify_token(token, DIGEST, ca.cert_pem)


@pytest.mark.parametrize(
    "profile",
    [
        {"eku": [ExtendedKeyUsageOID.TIME_STAMPING], "eku_critical": False},
        {"eku": None},
        {"eku": [ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.SERVER_AUTH]},
        {"eku": [ExtendedKeyUsageOID.CODE_SIGNING]},
        {"eku": [ExtendedKeyUsageOID.TIME_STAMPING], "ca_cert": True},
        {
            "eku": [ExtendedKeyUsageOID.TIME_STAMPING],
            "key_usage": _usage(digital_signature=True, key_encipherment=True),
        },
        {"eku": [ExtendedKeyUsageOID.TIME_STAMPING], "key_usage": _usage(key_agreement=True)},
    ],
    ids=["eku-not-critical", "no-eku", "eku-also-server", "eku-code", "ca", "ku-enc", "ku-agree"],
)
def test_tsa_certificate_without_the_tsa_profile_refused(
    ca: SiteCA, tsa: TimeStampAuthority, profile: dict[str, object]
) -> None:
    cert, key = _custom_tsa_cert(ca, **profile)  # type: ignore[arg-type]
    token = _token_signed_by(tsa, cert, key)
    with pytest.raises(TimestampError):
        verify_token(token, DIGEST, ca.cert_pem)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(TimestampError):
        TimeStampAuthority(cert_pem, key_pem, policy=POLICY)


def test_custom_profile_helper_makes_a_valid_tsa(ca: SiteCA, tsa: TimeStampAuthority) -> None:
    """The negative cases above differ from an accepted certificate only where they say."""
    cert, key = _custom_tsa_cert(
        ca, eku=[ExtendedKeyUsageOID.TIME_STAMPING], key_usage=_usage(digital_signature=True)
    )
    info = verify_token(_token_signed_by(tsa, cert, key), DIGEST, ca.cert_pem)
    assert info.tsa_name == "CN=Odd TSA"


def test_gen_time_outside_the_certificate_refused(ca: SiteCA, tsa: TimeStampAuthority) -> None:
    """The chain is checked at genTime: a token dated after the TSA certificate fails."""
    cert, key = _custom_tsa_cert(
        ca, eku=[ExtendedKeyUsageOID.TIME_STAMPING], key_usage=_usage(digital_signature=True)
    )
    signer = Signer(tsa, cert, key)
    late = signer.batch("20270201000000Z", None, cert_req=True).token(DIGEST, 1, None)
    with pytest.raises(TimestampError, match="chain"):
        verify_token(late, DIGEST, ca.cert_pem)


def test_bad_ca_argument(token: bytes, tsa: TimeStampAuthority) -> None:
    for bad in (b"", b"junk", b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"):
        with pytest.raises(TimestampError):
            verify_token(token, DIGEST, bad)
    with pytest.raises(TimestampError):  # the TSA certificate is no trust anchor for itself
        verify_token(token, DIGEST, tsa.cert_pem)


# --- requests and responses -------------------------------------------------------------


def _request(
    imprint: bytes = DIGEST,
    *,
    algorithm: str = "2.16.840.1.101.3.4.2.1",
    null_parameters: bool = True,
    nonce: int | None = 12345,
    cert_req: bool | None = True,
    policy: str | None = None,
    version: int = 1,
    extension: bool = False,
) -> bytes:
    request = rfc3161.TimeStampReq()
    request["version"] = version
    request["messageImprint"]["hashAlgorithm"]["algorithm"] = univ.ObjectIdentifier(algorithm)
    if null_parameters:
        request["messageImprint"]["hashAlgorithm"]["parameters"] = univ.Any(b"\x05\x00")
    request["messageImprint"]["hashedMessage"] = imprint
    if policy is not None:
        request["reqPolicy"] = univ.ObjectIdentifier(policy)
    if nonce is not None:
        request["nonce"] = nonce
    if cert_req is not None:
        request["certReq"] = cert_req
    if extension:
        ext = request["extensions"].componentType.clone()
        ext["extnID"] = univ.ObjectIdentifier("1.2.3.4")
        ext["extnValue"] = b"\x05\x00"
        request["extensions"].append(ext)
    return bytes(encoder.encode(request))


def test_parse_request() -> None:
    assert parse_request(_request()) == TimeStampRequest(DIGEST, 12345, True)
    imprint, nonce, cert_req = parse_request(_request(nonce=None, cert_req=None))
    assert (imprint, nonce, cert_req) == (DIGEST, None, False)
    assert parse_request(_request(null_parameters=False)).imprint == DIGEST
    assert parse_request(_request(policy=POLICY), policy=POLICY).nonce == 12345
    assert parse_request(_request(policy="1.2.3")).nonce == 12345  # not asked to check


@pytest.mark.parametrize(
    ("der", "failure"),
    [
        (_request(algorithm="1.3.14.3.2.26"), "badAlg"),  # SHA-1
        (_request(DIGEST[:20]), "badDataFormat"),
        (_request(version=2), "badRequest"),
        (_request(extension=True), "unacceptedExtension"),
        (_request(nonce=-5), "badRequest"),
        (b"", "badDataFormat"),
        (b"\x30\x00", "badDataFormat"),
        (_request() + b"\x00", "badDataFormat"),
        (b"\x30" + b"\x84\xff\xff\xff\xff", "badDataFormat"),
    ],
)
def test_parse_request_refusals(der: bytes, failure: str) -> None:
    with pytest.raises(TimestampError) as caught:
        parse_request(der)
    assert caught.value.failure == failure


def test_parse_request_policy() -> None:
    with pytest.raises(TimestampError) as caught:
        parse_request(_request(policy="1.2.3"), policy=POLICY)
    assert caught.value.failure == "unacceptedPolicy"


def test_request_to_response(ca: SiteCA, tsa: TimeStampAuthority) -> None:
    request = parse_request(_request(nonce=99))
    token = tsa.issue(request.imprint, serial=11, now=AT, nonce=request.nonce)
    answer = _decode(response(token), rfc3161.TimeStampResp())
    assert int(answer["status"]["status"]) == 0
    assert encoder.encode(answer["timeStampToken"]) == token
    assert verify_token(token, DIGEST, ca.cert_pem, nonce=99).serial == 11
    for bad in (b"", b"junk", _request(), token + b"\x00"):
        with pytest.raises(TimestampError):
            response(bad)


def test_rejection() -> None:
    answer = _decode(rejection("badAlg", "only SHA-256"), rfc3161.TimeStampResp())
    assert int(answer["status"]["status"]) == 2
    assert str(answer["status"]["statusString"][0]) == "only SHA-256"
    assert answer["status"]["failInfo"].asBinary() == "1"
    assert not _present(answer, "timeStampToken")
    policy = _decode(rejection("unacceptedPolicy"), rfc3161.TimeStampResp())
    assert policy["status"]["failInfo"].asBinary() == "0" * 15 + "1"
    with pytest.raises(TimestampError):
        rejection("noSuchFailure")
    error = TimestampError("x", failure="whatever")
    assert error.failure == "badRequest"


# --- hostile bytes ----------------------------------------------------------------------


def _only_timestamp_errors(call: Callable[[], object]) -> None:
    with contextlib.suppress(TimestampError):
        call()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_timestamp_error(data: bytes) -> None:
    with pytest.raises(TimestampError):
        verify_token(data, DIGEST, _CA_PEM)
    _only_timestamp_errors(lambda: parse_request(data))
    _only_timestamp_errors(lambda: response(data))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=64).map(lambda b: b"\x30" + b))
def test_sequence_shaped_bytes_raise_only_timestamp_error(data: bytes) -> None:
    with pytest.raises(TimestampError):
        verify_token(data, DIGEST, _CA_PEM)
    _only_timestamp_errors(lambda: parse_request(data))


def _mutations() -> st.SearchStrategy[bytes]:
    """The valid token with one byte changed, one removed, one inserted, or cut short."""
    n = len(_TOKEN)
    change = st.tuples(st.integers(0, n - 1), st.integers(1, 255)).map(
        lambda t: _TOKEN[: t[0]] + bytes([_TOKEN[t[0]] ^ t[1]]) + _TOKEN[t[0] + 1 :]
    )
    remove = st.integers(0, n - 1).map(lambda i: _TOKEN[:i] + _TOKEN[i + 1 :])
    insert = st.tuples(st.integers(0, n), st.integers(0, 255)).map(
        lambda t: _TOKEN[: t[0]] + bytes([t[1]]) + _TOKEN[t[0] :]
    )
    cut = st.integers(0, n - 1).map(lambda i: _TOKEN[:i])
    return st.one_of(change, remove, insert, cut)


@settings(max_examples=400, deadline=None)
@given(_mutations())
def test_mutated_tokens_are_refused(mutated: bytes) -> None:
    with pytest.raises(TimestampError):
        verify_token(mutated, DIGEST, _CA_PEM)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_requests_raise_only_timestamp_error(data: st.DataObject) -> None:
    request = _request()
    i = data.draw(st.integers(0, len(request) - 1))
    flip = data.draw(st.integers(1, 255))
    mutated = request[:i] + bytes([request[i] ^ flip]) + request[i + 1 :]
    try:
        parsed = parse_request(mutated)
    except TimestampError:
        return
    assert len(parsed.imprint) == 32
