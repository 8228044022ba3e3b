"""crypto.x509: the site CA, site certificates, site ids and pins."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.errors import CryptoError
from crypto.random import FixedRandom
from crypto.x509 import (
    SITE_URI_PREFIX,
    CertificateError,
    SiteCA,
    certificate_not_after,
    certificate_pin,
    generate_site_key,
    issue_site_certificate,
    site_id_from_certificate,
    site_public_key,
)
from tests.conftest import NOW


@pytest.fixture(scope="module")
def ca() -> SiteCA:
    return SiteCA.create(now=NOW, rng=FixedRandom(b"ca"))


@pytest.fixture(scope="module")
def paris(ca: SiteCA) -> tuple[bytes, bytes]:
    return issue_site_certificate(ca, "M-PARIS", now=NOW, rng=FixedRandom(b"paris"))


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _leaf_with_san(ca: SiteCA, san: list[x509.GeneralName] | None) -> bytes:
    """A leaf signed by the site CA with a subjectAltName of our choosing (or none)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "M-PARIS")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
    )
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(ca._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


# --- the CA ---------------------------------------------------------------------------


def test_ca_is_a_self_signed_p256_ca(ca: SiteCA) -> None:
    cert = ca.certificate
    assert cert.subject.rfc4514_string() == "CN=Valise site CA"
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert.not_valid_before_utc == NOW
    assert cert.not_valid_after_utc == NOW + timedelta(days=3650)
    assert ca.not_after == cert.not_valid_after_utc
    assert 0 < cert.serial_number < 2**159


def test_ca_name_days_and_time_truncation() -> None:
    ca = SiteCA.create("HQ test CA", now=NOW + timedelta(microseconds=123456), days=30)
    assert ca.certificate.subject.rfc4514_string() == "CN=HQ test CA"
    assert ca.certificate.not_valid_before_utc == NOW
    assert ca.not_after == NOW + timedelta(days=30)


def test_ca_is_deterministic_with_fixed_random() -> None:
    one = SiteCA.create(now=NOW, rng=FixedRandom(b"same"))
    two = SiteCA.create(now=NOW, rng=FixedRandom(b"same"))
    assert one.to_pem() == two.to_pem()
    assert SiteCA.create(now=NOW, rng=FixedRandom(b"other")).to_pem() != one.to_pem()


def test_system_random_cas_differ() -> None:
    assert SiteCA.create(now=NOW).pin != SiteCA.create(now=NOW).pin


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"now": datetime(2026, 12, 1)}, "time zone"),
        ({"now": NOW, "days": 0}, "at least one day"),
        ({"now": NOW, "name": ""}, "CA name"),
        ({"now": NOW, "name": "x" * 65}, "CA name"),
    ],
)
def test_ca_create_rejects(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        SiteCA.create(**kwargs)  # type: ignore[arg-type]


def test_ca_repr_does_not_show_the_key(ca: SiteCA) -> None:
    assert "_key" not in repr(ca)


# --- PEM round trip -------------------------------------------------------------------


def test_ca_pem_round_trip(ca: SiteCA) -> None:
    cert_pem, key_pem = ca.to_pem()
    assert cert_pem.startswith(b"-----BEGIN CERTIFICATE-----\n")
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    again = SiteCA.from_pem(cert_pem, key_pem)
    assert again == ca
    assert again.to_pem() == (cert_pem, key_pem)
    # The loaded CA can issue, and what it issues chains to the original.
    leaf, _key = issue_site_certificate(again, "M-HANOI", now=NOW)
    _cert(leaf).verify_directly_issued_by(ca.certificate)


def test_ca_pem_round_trip_with_passphrase(ca: SiteCA) -> None:
    cert_pem, key_pem = ca.to_pem(passphrase=b"correct horse")
    assert key_pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert SiteCA.from_pem(cert_pem, key_pem, passphrase=b"correct horse") == ca
    with pytest.raises(CertificateError, match="passphrase"):
        SiteCA.from_pem(cert_pem, key_pem, passphrase=b"wrong")
    with pytest.raises(CertificateError):
        SiteCA.from_pem(cert_pem, key_pem)
    with pytest.raises(CertificateError, match="empty passphrase"):
        ca.to_pem(passphrase=b"")


def test_ca_from_pem_rejects_a_foreign_key(ca: SiteCA) -> None:
    other = SiteCA.create(now=NOW, rng=FixedRandom(b"other"))
    with pytest.raises(CertificateError, match="does not belong"):
        SiteCA.from_pem(ca.cert_pem, other.to_pem()[1])


def test_ca_from_pem_rejects_a_leaf(ca: SiteCA, paris: tuple[bytes, bytes]) -> None:
    cert_pem, key_pem = paris
    with pytest.raises(CertificateError):
        SiteCA.from_pem(cert_pem, key_pem)


def test_ca_from_pem_rejects_a_ca_without_subject_key_identifier(ca: SiteCA) -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bare CA")])
    bare = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(ca._key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca._key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    with pytest.raises(CertificateError, match="not a self-signed site CA"):
        SiteCA.from_pem(bare, ca.to_pem()[1])


def test_ca_from_pem_rejects_non_p256_keys(ca: SiteCA) -> None:
    ed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for key_pem in (ed, p384, b"not a key", b""):
        with pytest.raises(CertificateError):
            SiteCA.from_pem(ca.cert_pem, key_pem)


# --- issuing --------------------------------------------------------------------------


def test_issue_site_certificate(ca: SiteCA, paris: tuple[bytes, bytes]) -> None:
    cert_pem, key_pem = paris
    cert = _cert(cert_pem)
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.subject.rfc4514_string() == "CN=M-PARIS"
    assert cert.issuer == ca.certificate.subject
    assert cert.not_valid_before_utc == NOW
    assert cert.not_valid_after_utc == NOW + timedelta(days=90)
    ext = cert.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:valise:site:M-PARIS"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    # The returned key is the certificate's, P-256, unencrypted PKCS#8.
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    assert key.public_key() == cert.public_key()


def test_issued_certificate_passes_rfc5280_path_validation(
    ca: SiteCA, paris: tuple[bytes, bytes]
) -> None:
    """pyca's verifier (strict RFC 5280 / CA/B profile) accepts it, as client and server."""
    leaf = _cert(paris[0])
    policy = PolicyBuilder().store(Store([ca.certificate])).time(NOW + timedelta(days=1))
    client = policy.build_client_verifier().verify(leaf, [])
    assert client.subjects is not None
    assert x509.UniformResourceIdentifier("urn:valise:site:M-PARIS") in client.subjects
    policy.build_server_verifier(x509.DNSName("localhost")).verify(leaf, [])
    policy.build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1"))).verify(leaf, [])


def test_issue_with_the_sites_own_public_key(ca: SiteCA) -> None:
    key_pem = generate_site_key(FixedRandom(b"hanoi"))
    public_pem = site_public_key(key_pem)
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    cert_pem, none = issue_site_certificate(ca, "M-HANOI", public_pem, now=NOW)
    assert none is None
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert _cert(cert_pem).public_key() == key.public_key()
    # DER SubjectPublicKeyInfo is accepted too.
    der = serialization.load_pem_public_key(public_pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    again, _ = issue_site_certificate(ca, "M-HANOI", der, now=NOW)
    assert certificate_pin(again) == certificate_pin(cert_pem)


def test_issue_rejects_non_p256_public_keys(ca: SiteCA) -> None:
    ed = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    p384 = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for public in (ed, p384, b"junk", b"-----BEGIN PUBLIC KEY-----\njunk\n"):
        with pytest.raises(CertificateError):
            issue_site_certificate(ca, "M-HANOI", public, now=NOW)


def test_issue_names_and_lifetime(ca: SiteCA) -> None:
    cert_pem, _ = issue_site_certificate(
        ca,
        "HQ",
        now=NOW,
        days=7,
        dns_names=("hq.valise.example", "localhost"),
        ip_addresses=("127.0.0.1", "::1"),
    )
    san = _cert(cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["hq.valise.example", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert certificate_not_after(cert_pem) == NOW + timedelta(days=7)
    only_uri, _ = issue_site_certificate(ca, "HQ", now=NOW, dns_names=(), ip_addresses=())
    assert site_id_from_certificate(only_uri) == "HQ"


def test_issue_is_deterministic_with_fixed_random(ca: SiteCA) -> None:
    one = issue_site_certificate(ca, "M-PARIS", now=NOW, rng=FixedRandom(b"x"))
    two = issue_site_certificate(ca, "M-PARIS", now=NOW, rng=FixedRandom(b"x"))
    assert one == two


@pytest.mark.parametrize(
    ("site", "kwargs", "message"),
    [
        ("m-paris", {}, "site id"),
        ("X", {}, "site id"),
        ("M-PARIS/../HQ", {}, "site id"),
        ("A" * 33, {}, "site id"),
        ("M-PARIS", {"now": datetime(2026, 12, 1)}, "time zone"),
        ("M-PARIS", {"days": 0}, "at least one day"),
        ("M-PARIS", {"days": 3651}, "CA's validity"),
        ("M-PARIS", {"now": NOW - timedelta(seconds=1)}, "CA's validity"),
        ("M-PARIS", {"dns_names": ("bücher.example",)}, "A-label"),
        ("M-PARIS", {"dns_names": ("",)}, "DNS name"),
        ("M-PARIS", {"dns_names": "localhost"}, "sequences"),
        ("M-PARIS", {"ip_addresses": ("localhost",)}, "IP address"),
        ("M-PARIS", {"ip_addresses": ("127.0.0.256",)}, "IP address"),
    ],
)
def test_issue_rejects(ca: SiteCA, site: str, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"now": NOW, **kwargs}
    with pytest.raises(CertificateError, match=message):
        issue_site_certificate(ca, site, **args)  # type: ignore[call-overload]


def test_certificate_error_is_a_crypto_error() -> None:
    assert issubclass(CertificateError, CryptoError)


# --- reading site ids -----------------------------------------------------------------


def test_site_id_from_pem_and_der(paris: tuple[bytes, bytes]) -> None:
    pem = paris[0]
    der = _cert(pem).public_bytes(serialization.Encoding.DER)
    assert site_id_from_certificate(pem) == "M-PARIS"
    assert site_id_from_certificate(der) == "M-PARIS"
    assert site_id_from_certificate(bytearray(der)) == "M-PARIS"  # type: ignore[arg-type]


def test_site_id_ignores_other_uris(ca: SiteCA) -> None:
    cert = _leaf_with_san(
        ca,
        [
            x509.UniformResourceIdentifier("https://hq.valise.example/"),
            x509.UniformResourceIdentifier("urn:valise:site:M-PARIS"),
            x509.DNSName("localhost"),
        ],
    )
    assert site_id_from_certificate(cert) == "M-PARIS"


def test_site_id_rejects_a_certificate_without_san(ca: SiteCA) -> None:
    with pytest.raises(CertificateError, match="no subjectAltName"):
        site_id_from_certificate(_leaf_with_san(ca, None))


def test_site_id_rejects_the_ca_certificate(ca: SiteCA) -> None:
    with pytest.raises(CertificateError, match="no subjectAltName"):
        site_id_from_certificate(ca.cert_pem)


@pytest.mark.parametrize(
    ("san", "message"),
    [
        ([x509.DNSName("M-PARIS")], "names no site"),
        ([x509.UniformResourceIdentifier("https://m-paris.example/")], "names no site"),
        ([x509.UniformResourceIdentifier("urn:valise:site:")], "site id"),
        ([x509.UniformResourceIdentifier("urn:valise:site:m-paris")], "site id"),
        ([x509.UniformResourceIdentifier("urn:valise:site:M")], "site id"),
        ([x509.UniformResourceIdentifier("urn:valise:site:M-PARIS/x")], "site id"),
        ([x509.UniformResourceIdentifier("urn:valise:site:M-PARIS ")], "site id"),
        ([x509.UniformResourceIdentifier("urn:valise:site:" + "A" * 33)], "site id"),
        ([x509.UniformResourceIdentifier("URN:VALISE:SITE:M-PARIS")], "canonical"),
        (
            [
                x509.UniformResourceIdentifier("urn:valise:site:M-PARIS"),
                x509.UniformResourceIdentifier("urn:valise:site:HQ"),
            ],
            "several",
        ),
        (
            [
                x509.UniformResourceIdentifier("urn:valise:site:M-PARIS"),
                x509.UniformResourceIdentifier("Urn:Valise:Site:HQ"),
            ],
            "several",
        ),
        (
            [
                x509.UniformResourceIdentifier("urn:valise:site:M-PARIS"),
                x509.UniformResourceIdentifier("urn:valise:site:M-PARIS"),
            ],
            "several",
        ),
    ],
)
def test_site_id_rejects_bad_site_uris(
    ca: SiteCA, san: list[x509.GeneralName], message: str
) -> None:
    with pytest.raises(CertificateError, match=message):
        site_id_from_certificate(_leaf_with_san(ca, san))


@pytest.mark.parametrize(
    "data",
    [b"", b"\x30", b"\x30\x03\x02\x01\x01", b"-----BEGIN CERTIFICATE-----\n", b"\x00" * 100],
)
def test_readers_reject_junk(data: bytes) -> None:
    for reader in (site_id_from_certificate, certificate_pin, certificate_not_after):
        with pytest.raises(CertificateError):
            reader(data)


def test_readers_reject_huge_input() -> None:
    with pytest.raises(CertificateError, match="too large"):
        site_id_from_certificate(b"\x30" * (64 * 1024 + 1))


def test_readers_reject_non_bytes() -> None:
    with pytest.raises(CertificateError, match="bytes"):
        site_id_from_certificate("-----BEGIN CERTIFICATE-----")  # type: ignore[arg-type]


def _patched_leaf(ca: SiteCA, old: bytes, new: bytes) -> bytes:
    """A site-CA leaf (serial 0x3C.., AKI serial 0x5A..) with bytes swapped after signing."""
    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = x509.AuthorityKeyIdentifier(
        ca_ski.digest, [x509.DirectoryName(ca.certificate.subject)], int("5A" * 8, 16)
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "M-PARIS")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(int("3C" * 8, 16))
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier("urn:valise:site:HQ")]),
            critical=False,
        )
        .add_extension(aki, critical=False)
        .sign(ca._key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    assert der.count(old) == 1
    return der.replace(old, new)


def test_patched_leaf_reads_when_unpatched(ca: SiteCA) -> None:
    der = _patched_leaf(ca, b"\x02\x08" + b"\x3c" * 8, b"\x02\x08" + b"\x3c" * 8)
    assert site_id_from_certificate(der) == "HQ"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"\x02\x08" + b"\x3c" * 8, b"\x02\x08" + b"\xbc" + b"\x3c" * 7),  # negative serial
        (b"\x02\x08" + b"\x3c" * 8, b"\x02\x08" + b"\x00" * 8),  # zero serial
        (b"\x82\x08" + b"\x5a" * 8, b"\x82\x08" + b"\xda" + b"\x5a" * 7),  # negative AKI serial
        (b"\x82\x08" + b"\x5a" * 8, b"\x82\x08" + b"\x00" * 8),  # zero AKI serial
    ],
)
def test_readers_reject_non_positive_serials_without_warning(
    ca: SiteCA, old: bytes, new: bytes
) -> None:
    """pyca would only warn (an error under pytest, where warnings are errors)."""
    der = _patched_leaf(ca, old, new)
    with pytest.raises(CertificateError, match="serial number"):
        site_id_from_certificate(der)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_site_id_on_arbitrary_bytes_raises_only_certificate_error(data: bytes) -> None:
    with contextlib.suppress(CertificateError):
        site_id_from_certificate(data)


_PARIS_DER = x509.load_pem_x509_certificate(
    issue_site_certificate(
        SiteCA.create(now=NOW, rng=FixedRandom(b"fuzz-ca")),
        "M-PARIS",
        now=NOW,
        rng=FixedRandom(b"fuzz"),
    )[0]
).public_bytes(serialization.Encoding.DER)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_PARIS_DER) - 1), st.integers(0, 255)), max_size=4))
def test_readers_on_mutated_certificates_raise_only_certificate_error(
    edits: list[tuple[int, int]],
) -> None:
    """Damage a real certificate byte by byte: a reader answers or raises CertificateError."""
    data = bytearray(_PARIS_DER)
    for pos, value in edits:
        data[pos] = value
    for reader in (site_id_from_certificate, certificate_pin, certificate_not_after):
        with contextlib.suppress(CertificateError):
            reader(bytes(data))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_site_id_on_arbitrary_pem_raises_only_certificate_error(body: bytes) -> None:
    pem = (
        b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(body) + b"-----END CERTIFICATE-----\n"
    )
    with contextlib.suppress(CertificateError):
        site_id_from_certificate(pem)


# --- pins -----------------------------------------------------------------------------


def test_pin_is_sha256_of_the_spki(paris: tuple[bytes, bytes]) -> None:
    cert = _cert(paris[0])
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pin = certificate_pin(paris[0])
    assert pin == hashlib.sha256(spki).hexdigest()
    assert len(pin) == 64 and pin == pin.lower()
    assert certificate_pin(cert.public_bytes(serialization.Encoding.DER)) == pin


def test_pin_is_stable_across_renewal_with_the_same_key(ca: SiteCA) -> None:
    public = site_public_key(generate_site_key())
    first, _ = issue_site_certificate(ca, "M-PARIS", public, now=NOW)
    later, _ = issue_site_certificate(ca, "M-PARIS", public, now=NOW + timedelta(days=60))
    assert first != later
    assert certificate_pin(first) == certificate_pin(later)
    assert certificate_pin(first) == certificate_pin(first)
    other, _ = issue_site_certificate(ca, "M-PARIS", now=NOW)
    assert certificate_pin(other) != certificate_pin(first)


def test_pin_of_the_ca(ca: SiteCA) -> None:
    assert ca.pin == certificate_pin(ca.cert_pem)
    spki = ca.certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert ca.pin == hashlib.sha256(spki).hexdigest()


def test_certificate_not_after(paris: tuple[bytes, bytes]) -> None:
    end = certificate_not_after(paris[0])
    assert end == NOW + timedelta(days=90)
    assert end.tzinfo is UTC


def test_site_uri_prefix() -> None:
    assert SITE_URI_PREFIX == "urn:valise:site:"
