"""X.509 for the gateways' TLS: the HQ site CA, site certificates, and reading them back.

Rules:
- One algorithm: ECDSA P-256 with SHA-256 (every TLS 1.3 stack has it), for the CA and
  the sites. Signatures are deterministic (RFC 6979), and keys and serial numbers come
  from a :class:`RandomSource`, so a test with :class:`FixedRandom` is reproducible.
- A site is named by exactly one ``urn:valise:site:<SITE>`` URI in the subjectAltName;
  the subject CN repeats it for people reading the certificate, but only the SAN counts.
  Peers are identified by this URI, not by host names.
- A pin is the lowercase hex SHA-256 of the certificate's SubjectPublicKeyInfo exactly as
  encoded in the certificate (as HPKP's ``pin-sha256``, in hex), so it survives renewal
  with the same key and is what the signed directory pins.
- HQ's time-stamp authority (RFC 3161, :mod:`crypto.tsa`) has its own certificate under
  the same CA: CN = its name, no SAN, and only the critical EKU id-kp-timeStamping.
- Pure: no files, no sockets. Inputs are bytes (PEM or DER); every failure is a
  :class:`CertificateError`. Reading certificates and keys back (PEM/DER, the strict
  checks before pyca parses) is crypto/x509_read.py.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import overload

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crypto.random import SYSTEM_RANDOM, RandomSource
from crypto.x509_read import (
    PARSE_ERRORS,
    CertificateError,
    load_certificate,
    load_private_key,
    load_public_key,
    spki_der,
    spki_from_tbs,
)

__all__ = [
    "CA_DAYS",
    "SITE_DAYS",
    "SITE_URI_PREFIX",
    "TSA_DAYS",
    "CertificateError",
    "SiteCA",
    "certificate_not_after",
    "certificate_pin",
    "certificate_serial",
    "generate_site_key",
    "issue_site_certificate",
    "issue_tsa_certificate",
    "site_id_from_certificate",
    "site_public_key",
]

SITE_URI_PREFIX = "urn:valise:site:"
# The rule of envelope.values.SITE_ID_RE, repeated: crypto/ sits below envelope/.
SITE_ID_RE = re.compile(r"[A-Z][A-Z0-9-]{1,31}")
CA_DAYS = 3650
SITE_DAYS = 90
# A TSA certificate outlives the site certificates: its tokens are checked against it for
# as long as the messages they stamp are kept (RFC 3161 verifiers check it at genTime).
TSA_DAYS = 1095
SERIAL_BYTES = 20
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _check_site_id(site_id: str) -> str:
    if not isinstance(site_id, str) or SITE_ID_RE.fullmatch(site_id) is None:
        raise CertificateError(f"site id {site_id!r} is not valid")
    return site_id


def _check_now(now: datetime) -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise CertificateError("certificate times must carry a time zone")
    return now.astimezone(UTC).replace(microsecond=0)


def _check_days(days: int) -> timedelta:
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise CertificateError("a certificate lives at least one day")
    return timedelta(days=days)


def _new_p256_key(rng: RandomSource) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from ``rng`` (rejection sampling, FIPS 186-5 A.2.2)."""
    while True:
        scalar = int.from_bytes(rng.random_bytes(32), "big")
        if 0 < scalar < _P256_ORDER:
            return ec.derive_private_key(scalar, ec.SECP256R1())


def _serial(rng: RandomSource) -> int:
    """A positive serial number of at most 20 octets (RFC 5280 4.1.2.2), 159 random bits."""
    return (int.from_bytes(rng.random_bytes(SERIAL_BYTES), "big") >> 1) or 1


def _pkcs8_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if passphrase is None
        else serialization.BestAvailableEncryption(passphrase)
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _sign(builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)


@dataclass(frozen=True)
class SiteCA:
    """The HQ site CA: an ECDSA P-256 key and its self-signed certificate.

    It issues the TLS certificates of the sites (:func:`issue_site_certificate`); the
    gateways trust only it. It cannot sign other CAs (pathLenConstraint 0).
    """

    certificate: x509.Certificate
    _key: ec.EllipticCurvePrivateKey = field(repr=False, compare=False)

    @classmethod
    def create(
        cls,
        name: str = "Valise site CA",
        *,
        now: datetime,
        days: int = CA_DAYS,
        rng: RandomSource = SYSTEM_RANDOM,
    ) -> SiteCA:
        """A new CA valid from ``now`` for ``days`` days. Raises :class:`CertificateError`."""
        if not isinstance(name, str) or not 0 < len(name) <= 64:
            raise CertificateError("a CA name is 1 to 64 characters")
        start = _check_now(now)
        lifetime = _check_days(days)
        key = _new_p256_key(rng)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(_serial(rng))
            .not_valid_before(start)
            .not_valid_after(start + lifetime)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
        )
        return cls(_sign(builder, key), key)

    @classmethod
    def from_pem(
        cls, cert_pem: bytes, key_pem: bytes, *, passphrase: bytes | None = None
    ) -> SiteCA:
        """Load a CA saved by :meth:`to_pem`. Raises :class:`CertificateError`.

        Checks that the certificate is a self-signed CA certificate (basicConstraints CA,
        keyUsage keyCertSign, a subjectKeyIdentifier, as strict X.509 verification wants)
        and that the key is its key.
        """
        cert = load_certificate(cert_pem)
        key = load_private_key(key_pem, passphrase)
        try:
            extensions = cert.extensions
            constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
            usage = extensions.get_extension_for_class(x509.KeyUsage).value
            extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            cert.verify_directly_issued_by(cert)
            cert_public = cert.public_key()
        except (x509.ExtensionNotFound, InvalidSignature, *PARSE_ERRORS) as exc:
            raise CertificateError(f"not a self-signed site CA certificate: {exc}") from exc
        if not constraints.ca or not usage.key_cert_sign:
            raise CertificateError("the certificate is not a CA certificate")
        if not isinstance(cert_public, ec.EllipticCurvePublicKey) or spki_der(
            cert_public
        ) != spki_der(key.public_key()):
            raise CertificateError("the key does not belong to the CA certificate")
        return cls(cert, key)

    def to_pem(self, *, passphrase: bytes | None = None) -> tuple[bytes, bytes]:
        """``(cert_pem, key_pem)``; the key is PKCS#8, encrypted when a passphrase is given."""
        if passphrase is not None and not passphrase:
            raise CertificateError("an empty passphrase protects nothing")
        return self.cert_pem, _pkcs8_pem(self._key, passphrase)

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate in PEM: what every gateway loads as its one trust anchor."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    @property
    def pin(self) -> str:
        return _pin(self.certificate)


def generate_site_key(rng: RandomSource = SYSTEM_RANDOM) -> bytes:
    """A new site TLS key (ECDSA P-256), as unencrypted PKCS#8 PEM."""
    return _pkcs8_pem(_new_p256_key(rng))


def site_public_key(key_pem: bytes) -> bytes:
    """The SubjectPublicKeyInfo PEM of a site key, to send to HQ for issuing."""
    public = load_private_key(key_pem, None).public_key()
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@overload
def issue_site_certificate(
    ca: SiteCA,
    site_id: str,
    public_key: None = None,
    *,
    now: datetime,
    days: int = ...,
    dns_names: Sequence[str] = ...,
    ip_addresses: Sequence[str] = ...,
    rng: RandomSource = ...,
) -> tuple[bytes, bytes]: ...


@overload
def issue_site_certificate(
    ca: SiteCA,
    site_id: str,
    public_key: bytes,
    *,
    now: datetime,
    days: int = ...,
    dns_names: Sequence[str] = ...,
    ip_addresses: Sequence[str] = ...,
    rng: RandomSource = ...,
) -> tuple[bytes, None]: ...


def issue_site_certificate(
    ca: SiteCA,
    site_id: str,
    public_key: bytes | None = None,
    *,
    now: datetime,
    days: int = SITE_DAYS,
    dns_names: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
    rng: RandomSource = SYSTEM_RANDOM,
) -> tuple[bytes, bytes] | tuple[bytes, None]:
    """Issue the TLS certificate of ``site_id``, valid from ``now`` for ``days`` days.

    ``public_key`` is the site's SubjectPublicKeyInfo (PEM or DER, ECDSA P-256, e.g. from
    :func:`site_public_key`) when the site made its own key; then the result is
    ``(cert_pem, None)``. Without it a new key is made here and the result is
    ``(cert_pem, key_pem)`` with the key in unencrypted PKCS#8 PEM.

    The certificate serves both ends of mutual TLS (EKU serverAuth and clientAuth) and
    must not outlive the CA. Raises :class:`CertificateError`.
    """
    _check_site_id(site_id)
    start = _check_now(now)
    end = start + _check_days(days)
    if start < ca.certificate.not_valid_before_utc or end > ca.not_after:
        raise CertificateError("the certificate would not lie within the CA's validity")
    if isinstance(dns_names, str) or isinstance(ip_addresses, str):
        raise CertificateError("dns_names and ip_addresses are sequences of names")
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(SITE_URI_PREFIX + site_id)]
    for dns in dns_names:
        if not isinstance(dns, str) or not dns or not dns.isascii():
            raise CertificateError(f"DNS name {dns!r} is not an ASCII (A-label) name")
        names.append(x509.DNSName(dns))
    for ip in ip_addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise CertificateError(f"IP address {ip!r} is not valid") from None

    private: ec.EllipticCurvePrivateKey | None = None
    if public_key is None:
        private = _new_p256_key(rng)
        subject_key = private.public_key()
    else:
        subject_key = load_public_key(public_key)

    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, site_id)]))
        .issuer_name(ca.certificate.subject)
        .public_key(subject_key)
        .serial_number(_serial(rng))
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
    )
    cert_pem = _sign(builder, ca._key).public_bytes(serialization.Encoding.PEM)
    if private is None:
        return cert_pem, None
    return cert_pem, _pkcs8_pem(private)


def issue_tsa_certificate(
    ca: SiteCA,
    name: str,
    *,
    now: datetime,
    days: int = TSA_DAYS,
    rng: RandomSource = SYSTEM_RANDOM,
) -> tuple[bytes, bytes]:
    """Issue the certificate of HQ's time-stamp authority with a new ECDSA P-256 key.

    The result is ``(cert_pem, key_pem)``, the key in unencrypted PKCS#8 PEM. The subject
    is ``CN=<name>``; the profile is RFC 3161 2.3's: extendedKeyUsage with exactly
    id-kp-timeStamping, marked critical; keyUsage digitalSignature and nonRepudiation
    (critical); basicConstraints CA=false (critical); subject and authority key
    identifiers. The certificate must lie within the CA's validity.
    Raises :class:`CertificateError`.
    """
    if not isinstance(name, str) or not 0 < len(name) <= 64 or not name.isprintable():
        raise CertificateError("a TSA name is 1 to 64 printable characters")
    start = _check_now(now)
    end = start + _check_days(days)
    if start < ca.certificate.not_valid_before_utc or end > ca.not_after:
        raise CertificateError("the certificate would not lie within the CA's validity")
    private = _new_p256_key(rng)
    subject_key = private.public_key()
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.certificate.subject)
        .public_key(subject_key)
        .serial_number(_serial(rng))
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
            critical=True,  # RFC 3161 2.3: "This extension MUST be critical."
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
    )
    cert_pem = _sign(builder, ca._key).public_bytes(serialization.Encoding.PEM)
    return cert_pem, _pkcs8_pem(private)


def site_id_from_certificate(cert: bytes) -> str:
    """The site id named by the certificate's one ``urn:valise:site:`` SAN URI.

    ``cert`` is PEM or DER. This reads a name; it does not check the chain, which the
    TLS handshake did. Raises :class:`CertificateError` when the SAN is missing, names
    no site or several, or the site id is not valid.
    """
    certificate = load_certificate(cert)
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        raise CertificateError("the certificate has no subjectAltName") from None
    except PARSE_ERRORS as exc:
        raise CertificateError("the certificate's extensions are malformed") from exc
    # Compare the scheme and namespace without case, so that a look-alike such as
    # "URN:valise:site:X" makes the certificate ambiguous instead of being skipped.
    prefix = len(SITE_URI_PREFIX)
    ours = [uri for uri in uris if uri[:prefix].lower() == SITE_URI_PREFIX]
    if not ours:
        raise CertificateError(f"the certificate names no site ({SITE_URI_PREFIX}<SITE> URI)")
    if len(ours) > 1:
        raise CertificateError("the certificate names several sites")
    uri = ours[0]
    if not uri.startswith(SITE_URI_PREFIX):
        raise CertificateError(f"site URI {uri!r} is not in canonical form")
    return _check_site_id(uri[prefix:])


def certificate_pin(cert: bytes) -> str:
    """Lowercase hex SHA-256 of the certificate's SubjectPublicKeyInfo DER.

    ``cert`` is PEM or DER. Raises :class:`CertificateError`.
    """
    return _pin(load_certificate(cert))


def certificate_serial(cert: bytes) -> str:
    """The certificate's serial number as lowercase hex without leading zeros (how the
    gateway records the certificates HQ issued). ``cert`` is PEM or DER. Raises
    :class:`CertificateError`."""
    certificate = load_certificate(cert)
    try:
        return format(certificate.serial_number, "x")
    except PARSE_ERRORS as exc:
        raise CertificateError("the certificate's serial number is malformed") from exc


def certificate_not_after(cert: bytes) -> datetime:
    """The end of the certificate's validity (aware, UTC). Raises :class:`CertificateError`."""
    certificate = load_certificate(cert)
    try:
        return certificate.not_valid_after_utc
    except PARSE_ERRORS as exc:
        raise CertificateError("the certificate's validity is malformed") from exc


def _pin(certificate: x509.Certificate) -> str:
    try:
        tbs = certificate.tbs_certificate_bytes
    except PARSE_ERRORS as exc:
        raise CertificateError("not a readable X.509 certificate") from exc
    return hashlib.sha256(spki_from_tbs(tbs)).hexdigest()


def public_key_pin(public_key: bytes) -> str:
    """The pin (as :func:`certificate_pin`) of a P-256 public key, PEM or DER SPKI, or of
    the public half of a private key PEM: the pin its certificates will have."""
    try:
        key = load_private_key(public_key, None).public_key()
    except CertificateError:
        key = load_public_key(public_key)
    return hashlib.sha256(spki_der(key)).hexdigest()
