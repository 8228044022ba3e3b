"""Reading X.509 certificates and ECDSA P-256 keys back, for crypto/x509.py and
crypto/tsa*.py: PEM or DER in, pyca/cryptography objects out, every failure on hostile
input a :class:`CertificateError` (:data:`PARSE_ERRORS` are what pyca may raise).

A certificate is refused before pyca parses it when it is over
:data:`MAX_CERTIFICATE_BYTES` or carries a serial number that is not positive (its own,
or its authorityKeyIdentifier's): a short DER walk checks them, and finds the
SubjectPublicKeyInfo exactly as signed (:func:`spki_from_tbs`, what a pin hashes).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from crypto.errors import CryptoError

MAX_CERTIFICATE_BYTES = 64 * 1024
_PEM_BEGIN = b"-----BEGIN"
_PEM_CERTIFICATE_RE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n(.*?)-----END CERTIFICATE-----", re.DOTALL
)


class CertificateError(CryptoError):
    """A certificate, a certificate key or a request to issue one is not acceptable."""


# Everything pyca/cryptography may raise on hostile input while parsing (certificates
# are parsed lazily, so reading an extension can fail long after loading succeeded).
PARSE_ERRORS = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


def is_p256(key: object) -> bool:
    return isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP256R1
    )


def spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _pkcs8_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if passphrase is None
        else serialization.BestAvailableEncryption(passphrase)
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def load_private_key(key_pem: bytes, passphrase: bytes | None) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(key_pem, password=passphrase)
    except PARSE_ERRORS as exc:
        raise CertificateError("not a readable PEM private key (or the wrong passphrase)") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not is_p256(key):
        raise CertificateError("the key is not an ECDSA P-256 key")
    return key


def load_public_key(data: bytes) -> ec.EllipticCurvePublicKey:
    try:
        if data.lstrip().startswith(_PEM_BEGIN):
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except PARSE_ERRORS as exc:
        raise CertificateError("not a readable public key (SubjectPublicKeyInfo)") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not is_p256(key):
        raise CertificateError("the key is not an ECDSA P-256 key")
    return key


def load_certificate(data: bytes) -> x509.Certificate:
    """Load one certificate from PEM (the first CERTIFICATE block) or DER."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CertificateError("a certificate is given as bytes")
    data = bytes(data)
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise CertificateError("certificate too large")
    der = _pem_to_der(data) if data.lstrip().startswith(_PEM_BEGIN) else data
    _check_serial(der)
    try:
        return x509.load_der_x509_certificate(der)
    except PARSE_ERRORS as exc:
        raise CertificateError("not a readable X.509 certificate") from exc


def _pem_to_der(data: bytes) -> bytes:
    match = _PEM_CERTIFICATE_RE.search(data)
    if match is None:
        raise CertificateError("no PEM CERTIFICATE block")
    try:
        return base64.b64decode(b"".join(match.group(1).split()), validate=True)
    except binascii.Error:
        raise CertificateError("the PEM CERTIFICATE block is not base64") from None


def _check_serial(der: bytes) -> None:
    """Refuse serial numbers that are not positive (RFC 5280 4.1.2.2) before pyca sees them.

    pyca/cryptography still loads a certificate with a zero or negative serial number
    (its own, or the authorityCertSerialNumber of its authorityKeyIdentifier) but warns
    that a future release will refuse it; a warning is no answer to hostile input (and
    is an error under pytest). Anything else malformed is left to pyca.
    """
    _tag, start, end = _der_header(der, 0)  # Certificate
    _tag, start, end = _der_header(der, start, end)  # TBSCertificate
    fields = list(_der_children(der, start, end))
    if fields and fields[0][0] == _VERSION_TAG:
        fields = fields[1:]
    if not fields:
        raise CertificateError("the certificate has no serial number")
    _check_positive(der, fields[0])
    for tag, start, end in fields[6:]:
        if tag == _EXTENSIONS_TAG:
            for seq_tag, seq_start, seq_end in _der_children(der, start, end):
                if seq_tag == _SEQUENCE:
                    _check_extension_serials(der, seq_start, seq_end)


def _check_extension_serials(der: bytes, start: int, end: int) -> None:
    for ext_tag, ext_start, ext_end in _der_children(der, start, end):
        if ext_tag != _SEQUENCE:
            continue
        parts = list(_der_children(der, ext_start, ext_end))
        if not parts or parts[-1][0] != _OCTET_STRING:
            continue
        oid = parts[0]
        if der[oid[1] : oid[2]] != _AKI_OID or parts[0][0] != _OID:
            continue
        for aki_tag, aki_start, aki_end in _der_children(der, parts[-1][1], parts[-1][2]):
            if aki_tag == _SEQUENCE:
                for element in _der_children(der, aki_start, aki_end):
                    if element[0] == _AKI_SERIAL_TAG:
                        _check_positive(der, element)


def _check_positive(der: bytes, element: tuple[int, int, int]) -> None:
    tag, start, end = element
    if (
        tag not in (_INTEGER, _AKI_SERIAL_TAG)
        or end == start
        or der[start] & 0x80
        or not any(der[start:end])
    ):
        raise CertificateError("a serial number is not a positive INTEGER")


_SEQUENCE = 0x30
_INTEGER = 0x02
_OCTET_STRING = 0x04
_OID = 0x06
_VERSION_TAG = 0xA0  # [0] EXPLICIT Version
_EXTENSIONS_TAG = 0xA3  # [3] EXPLICIT Extensions
_AKI_SERIAL_TAG = 0x82  # [2] IMPLICIT CertificateSerialNumber
_AKI_OID = bytes.fromhex("551d23")  # 2.5.29.35 authorityKeyIdentifier


def _der_header(data: bytes, pos: int, limit: int | None = None) -> tuple[int, int, int]:
    """The tag, content start and end of the DER element at ``pos`` (ending by ``limit``)."""
    limit = len(data) if limit is None else limit
    if pos + 2 > limit:
        raise CertificateError("truncated DER")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > limit:
            raise CertificateError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if tag & 0x1F == 0x1F:
        raise CertificateError("multi-byte DER tags do not occur in certificates")
    if pos + length > limit:
        raise CertificateError("truncated DER")
    return tag, pos, pos + length


def _der_children(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """The elements inside a constructed element's content ``data[start:end]``."""
    while start < end:
        tag, content, after = _der_header(data, start, end)
        yield tag, content, after
        start = after


def spki_from_tbs(tbs: bytes) -> bytes:
    """The SubjectPublicKeyInfo element of a TBSCertificate, byte for byte (RFC 5280 4.1).

    Re-encoding the parsed key would change, for instance, a compressed EC point, and
    so the pin; the bytes as signed by the CA are the ones to hash.
    """
    tag, start, end = _der_header(tbs, 0)
    if tag != _SEQUENCE:
        raise CertificateError("TBSCertificate is not a SEQUENCE")
    fields = list(_der_children(tbs, start, end))
    if fields and fields[0][0] == _VERSION_TAG:
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
    if len(fields) < 6 or fields[5][0] != _SEQUENCE:
        raise CertificateError("the certificate has no SubjectPublicKeyInfo")
    # Elements are contiguous: the key info starts where the subject ends.
    return tbs[fields[4][2] : fields[5][2]]
