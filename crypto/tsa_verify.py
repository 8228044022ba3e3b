"""RFC 3161 time-stamping: verifying a token from HQ's time-stamp authority.

:func:`verify_token` checks a TimeStampToken (from :mod:`crypto.tsa`, or any TSA of the
same profile) against the SHA-256 digest it should stamp and the site CA, as
``openssl ts -verify -data FILE -in TOKEN -token_in -CAfile ca.pem`` does, and says what
the token holds (:class:`TokenInfo`).

Rules:
- The profile is :mod:`crypto.tsa`'s: SHA-256 imprint, ECDSA P-256 with ECDSA-SHA256,
  signed attributes contentType, messageDigest and signingCertificateV2 (RFC 5816),
  one SignerInfo, TSTInfo v1; a TSA certificate with the critical EKU timeStamping
  alone, chaining directly to the CA and valid at genTime.
- Every layer is decoded with pyasn1 and must re-encode to the very bytes given (DER),
  so that the bytes checked are the bytes signed (crypto/tsa_token.py, imported with
  the first token: pyasn1's RFC modules cost a tenth of a second at every start).
- Revocation is not checked, nor genTime against a clock.
- Pure: no files, no sockets, no clock. Every failure, on any input bytes, is a
  :class:`~crypto.tsa_errors.TimestampError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from crypto.tsa_errors import MAX_TOKEN_BYTES, TimestampError
from crypto.x509_read import PARSE_ERRORS, CertificateError, load_certificate

__all__ = ["TimestampError", "TokenInfo", "verify_token"]


@dataclass(frozen=True)
class TokenInfo:
    """What a verified token says (:func:`verify_token`)."""

    gen_time: datetime
    serial: int
    policy: str
    message_imprint: bytes
    nonce: int | None
    accuracy: timedelta | None
    tsa_name: str
    tsa_certificate: bytes  # PEM


def verify_token(
    token_der: bytes,
    data_digest_sha256: bytes,
    ca_cert_pem: bytes,
    *,
    tsa_certificate: bytes | None = None,
    nonce: int | None = None,
    policy: str | None = None,
) -> TokenInfo:
    """Verify a DER TimeStampToken over ``data_digest_sha256`` under the CA ``ca_cert_pem``.

    Checks that the token is DER SignedData over a TSTInfo v1 with one signer; that its
    imprint is SHA-256 of exactly this digest; that the messageDigest attribute is the
    SHA-256 of the encapsulated TSTInfo and the contentType attribute id-ct-TSTInfo;
    that signingCertificateV2 names the signer's certificate (by SHA-256, and by issuer
    and serial when it gives them) and the SignerInfo names the same; that the
    ECDSA-SHA256 signature over the signed attributes verifies under that certificate;
    that the certificate chains to the CA at genTime (pyca's verifier) and is a TSA
    certificate (only the critical EKU timeStamping; keyUsage, if any, for signing). When
    the token carries no certificate, ``tsa_certificate`` (PEM or DER) supplies it.
    ``nonce`` and ``policy``, when given, must be the token's.

    Revocation is not checked, nor genTime against a clock. Raises
    :class:`TimestampError` on any failure and any input bytes.
    """
    if not isinstance(token_der, bytes | bytearray | memoryview):
        raise TimestampError("a token is given as bytes")
    token = bytes(token_der)
    if len(token) > MAX_TOKEN_BYTES:
        raise TimestampError("the token is too large")
    if not isinstance(data_digest_sha256, bytes | bytearray) or len(data_digest_sha256) != 32:
        raise TimestampError("the data digest is a SHA-256 digest (32 bytes)")
    try:
        ca = load_certificate(ca_cert_pem)
        extra = None if tsa_certificate is None else load_certificate(tsa_certificate)
    except CertificateError as exc:
        raise TimestampError(f"verifying a token: {exc}") from exc
    try:
        is_ca = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, *PARSE_ERRORS):
        is_ca = False
    if not is_ca:
        raise TimestampError("the trust anchor given is not a CA certificate")
    from crypto import tsa_token  # pyasn1: loaded with the first token (tsa_errors.py)

    try:
        return tsa_token.verify(token, bytes(data_digest_sha256), ca, extra, nonce, policy)
    except tsa_token.MALFORMED as exc:
        raise TimestampError("the token is malformed") from exc
