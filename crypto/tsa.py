"""RFC 3161 time-stamping: HQ's time-stamp authority, its requests and its responses.

HQ stamps every envelope it relays or delivers: a TimeStampToken over the envelope
digest (SHA-256), signed with the TSA's own key, whose certificate the site CA issued
(:func:`crypto.x509.issue_tsa_certificate`). Missions ask for tokens over what they send
with a TimeStampReq (:func:`request`); HQ reads it (:func:`parse_request`) and answers
with a TimeStampResp (:func:`response` or :func:`rejection`), which the mission reads
back (:func:`parse_response`). Tokens are kept with the messages;
``openssl ts -verify -data FILE -in TOKEN -token_in -CAfile ca.pem`` verifies them, as
does :func:`crypto.tsa_verify.verify_token`.

Rules:
- One profile. The imprint is SHA-256 (32 octets); the TSA key is ECDSA P-256 and signs
  with ECDSA-SHA256 (deterministic, RFC 6979), over the signed attributes contentType,
  messageDigest, signingTime (optional) and signingCertificateV2 (RFC 5816, an
  ESSCertIDv2 with the SHA-256 of the TSA certificate and its issuer and serial).
- The token (RFC 3161 2.4.2, RFC 5652) is a ContentInfo with SignedData v3,
  eContentType id-ct-TSTInfo, one SignerInfo v1 (issuerAndSerialNumber) and, when
  asked (``cert_req``, on by default), the TSA certificate in ``certificates``.
  TSTInfo is v1: policy, messageImprint, serialNumber, genTime (UTC, ``Z``, fractional
  seconds truncated to :attr:`TimeStampAuthority.fraction_digits`, trailing zeros
  removed), then accuracy, nonce and tsa (the certificate's subject) when configured or
  given; ordering is always false and there are no extensions.
- Serial numbers are the caller's: positive, below 2**160, and unique per TSA
  (RFC 3161 2.4.2). A nonce is a non-negative INTEGER below 2**256.
- ASN.1 goes through pyasn1 with the pyasn1-modules schemas (rfc3161, rfc5652, rfc5035,
  rfc2634, rfc5280). Issuing encodes with pyasn1, once per authority (and genTime and
  signingTime once per batch), every piece that tokens share; a token joins them with
  its own imprint, serial and nonce as plain DER (an OCTET STRING, INTEGERs, lengths):
  crypto/tsa_sign.py.
  So a batch (:meth:`TimeStampAuthority.issue_many`) costs little more than its
  signatures (measured: about 0.1 ms a token, against 1.8 ms when every token was built
  wholly through pyasn1).
- Reading (requests, responses) decodes with pyasn1 and insists on DER.
- Pure: no files, no sockets, no clock (``now`` is a parameter). Every failure, on any
  input bytes, is a :class:`TimestampError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pyasn1.type import char, univ  # type: ignore[import-untyped]
from pyasn1_modules import rfc3161, rfc5652  # type: ignore[import-untyped]

from crypto.tsa_asn1 import (
    _ASN1_ERRORS,
    _OID_SHA256,
    _OID_SIGNED_DATA,
    _algorithm,
    _bytes,
    _check_tsa_extensions,
    _children,
    _decode,
    _encode,
    _has,
    _int,
    _is_sha256,
    _str,
    _tlv,
)
from crypto.tsa_errors import (
    _FAILURES,
    IMPRINT_BYTES,
    MAX_FRACTION_DIGITS,
    MAX_NONCE,
    MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES,
    MAX_SERIAL,
    MAX_TOKEN_BYTES,
    TimestampError,
)
from crypto.tsa_sign import Signer
from crypto.x509_read import PARSE_ERRORS, CertificateError, load_certificate, load_private_key

__all__ = [
    "MAX_REQUEST_BYTES",
    "MAX_RESPONSE_BYTES",
    "MAX_TOKEN_BYTES",
    "TimeStampAuthority",
    "TimeStampRequest",
    "TimestampError",
    "parse_request",
    "parse_response",
    "rejection",
    "request",
    "response",
]

# A response is its status (at most 1024 characters of text) and a token.


class TimeStampRequest(NamedTuple):
    """What :func:`parse_request` keeps of a TimeStampReq."""

    imprint: bytes
    nonce: int | None
    cert_req: bool


def _check_now(now: datetime) -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise TimestampError("a time-stamp time must carry a time zone", failure="systemFailure")
    return now.astimezone(UTC)


def _check_imprint(imprint: bytes) -> bytes:
    if not isinstance(imprint, bytes | bytearray) or len(imprint) != IMPRINT_BYTES:
        raise TimestampError("a message imprint is a SHA-256 digest (32 bytes)")
    return bytes(imprint)


def _check_serial(serial: int) -> int:
    if isinstance(serial, bool) or not isinstance(serial, int) or not 0 < serial < MAX_SERIAL:
        raise TimestampError("a token serial number is a positive integer below 2**160")
    return serial


def _check_nonce(nonce: int | None) -> int | None:
    if nonce is None:
        return None
    if isinstance(nonce, bool) or not isinstance(nonce, int) or not 0 <= nonce < MAX_NONCE:
        raise TimestampError("a nonce is a non-negative integer below 2**256")
    return nonce


def _check_policy(policy: str) -> str:
    try:
        if not isinstance(policy, str):
            raise TypeError(policy)
        x509.ObjectIdentifier(policy)
        oid = _str(univ.ObjectIdentifier(policy))
    except _ASN1_ERRORS:
        raise TimestampError(f"policy {policy!r} is not an OID") from None
    if oid != policy:
        raise TimestampError(f"policy {policy!r} is not a canonical dotted OID")
    return policy


def _generalized_time(moment: datetime, digits: int) -> str:
    text = moment.strftime("%Y%m%d%H%M%S")
    fraction = f"{moment.microsecond:06d}"[:digits].rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


def _key_matches(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)
    except PARSE_ERRORS:
        return False


# --- the authority ----------------------------------------------------------------------


def _status_info(status: int, failure: str | None = None, text: str | None = None) -> bytes:
    info = rfc3161.PKIStatusInfo()
    info["status"] = status
    if text is not None:
        info["statusString"].append(char.UTF8String(text))
    if failure is not None:
        info["failInfo"] = rfc3161.PKIFailureInfo(failure)
    return _encode(info)


_DER_GRANTED = _status_info(0)


@dataclass(frozen=True)
class TimeStampAuthority:
    """HQ's TSA: its certificate and key, the policy it stamps under, and what it adds.

    ``certificate`` is PEM or DER and must be a TSA certificate (the critical EKU
    timeStamping and nothing else, as :func:`crypto.x509.issue_tsa_certificate` makes);
    ``private_key`` is its ECDSA P-256 key in PKCS#8 PEM, encrypted under ``passphrase``
    if one is given. ``policy`` is the TSA policy OID, dotted. ``accuracy`` (at least a
    microsecond), ``include_tsa_name`` and ``fraction_digits`` (0 to 6) shape TSTInfo;
    ``include_signing_time`` adds the signingTime attribute (= genTime, whole seconds).
    Raises :class:`TimestampError` when any of this is not acceptable.
    """

    certificate: bytes
    private_key: bytes = field(repr=False)
    policy: str
    accuracy: timedelta | None = None
    fraction_digits: int = 0
    include_tsa_name: bool = False
    include_signing_time: bool = True
    passphrase: bytes | None = field(default=None, repr=False, compare=False)
    _signer: Signer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            cert = load_certificate(self.certificate)
            key = load_private_key(self.private_key, self.passphrase)
        except CertificateError as exc:
            raise TimestampError(f"TSA: {exc}", failure="systemFailure") from exc
        if not _key_matches(cert, key):
            raise TimestampError("the TSA key does not belong to its certificate")
        _check_tsa_extensions(cert)
        _check_policy(self.policy)
        if self.accuracy is not None and (
            not isinstance(self.accuracy, timedelta) or self.accuracy < timedelta(microseconds=1)
        ):
            raise TimestampError("accuracy is a positive timedelta")
        if not isinstance(self.include_tsa_name, bool) or not isinstance(
            self.include_signing_time, bool
        ):
            raise TimestampError("include_tsa_name and include_signing_time are booleans")
        digits = self.fraction_digits
        if isinstance(digits, bool) or not isinstance(digits, int):
            raise TimestampError("fraction_digits is an integer")
        if not 0 <= digits <= MAX_FRACTION_DIGITS:
            raise TimestampError(f"fraction_digits is 0 to {MAX_FRACTION_DIGITS}")
        object.__setattr__(self, "_signer", Signer(self, cert, key))

    @property
    def cert_pem(self) -> bytes:
        """The TSA certificate in PEM (``-untrusted`` for ``openssl ts -verify``)."""
        return self._signer.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        message_imprint_sha256: bytes,
        *,
        serial: int,
        now: datetime,
        nonce: int | None = None,
        cert_req: bool = True,
    ) -> bytes:
        """A DER TimeStampToken over the SHA-256 digest ``message_imprint_sha256``.

        ``now`` is genTime (aware; truncated to the configured fraction digits) and must
        lie within the TSA certificate's validity. With ``cert_req`` (the default; a
        stored token then verifies on its own) the TSA certificate is in the token.
        Raises :class:`TimestampError`.
        """
        return self.issue_many(
            [message_imprint_sha256], serials=[serial], now=now, nonces=[nonce], cert_req=cert_req
        )[0]

    def issue_many(
        self,
        imprints: Sequence[bytes],
        *,
        serials: Sequence[int],
        now: datetime,
        nonces: Sequence[int | None] | None = None,
        cert_req: bool = True,
    ) -> list[bytes]:
        """One token per imprint, all at genTime ``now``, with the given serial numbers.

        ``serials`` (and ``nonces``, when given) run alongside ``imprints``; serials must
        differ. Everything is checked before anything is signed, so a batch is issued
        whole or not at all. Raises :class:`TimestampError`.
        """
        if isinstance(imprints, bytes | bytearray) or isinstance(serials, int):
            raise TimestampError("imprints and serials are sequences", failure="systemFailure")
        checked_imprints = [_check_imprint(imprint) for imprint in imprints]
        checked_serials = [_check_serial(serial) for serial in serials]
        checked_nonces = (
            [None] * len(checked_imprints)
            if nonces is None
            else [_check_nonce(nonce) for nonce in nonces]
        )
        if not len(checked_imprints) == len(checked_serials) == len(checked_nonces):
            raise TimestampError("imprints, serials and nonces differ in number")
        if len(set(checked_serials)) != len(checked_serials):
            raise TimestampError("serial numbers repeat within the batch")
        moment = _check_now(now)
        signer = self._signer
        if not signer.not_before <= moment <= signer.not_after:
            raise TimestampError(
                "genTime lies outside the TSA certificate's validity", failure="timeNotAvailable"
            )
        batch = signer.batch(
            _generalized_time(moment, self.fraction_digits),
            moment.replace(microsecond=0) if self.include_signing_time else None,
            cert_req=cert_req,
        )
        return [
            batch.token(imprint, serial, nonce)
            for imprint, serial, nonce in zip(
                checked_imprints, checked_serials, checked_nonces, strict=True
            )
        ]


# --- requests and responses -------------------------------------------------------------


def parse_request(der: bytes, *, policy: str | None = None) -> TimeStampRequest:
    """Read a DER TimeStampReq (RFC 3161 2.4.1): ``(imprint, nonce, cert_req)``.

    Only SHA-256 imprints are accepted (``failure`` badAlg otherwise), no extensions
    (unacceptedExtension). When ``policy`` is given, a request for another policy is
    refused (unacceptedPolicy); without it the requested policy is not looked at.
    Raises :class:`TimestampError`, whose ``failure`` is what to answer with
    (:func:`rejection`), on any bytes that are not such a request.
    """
    if not isinstance(der, bytes | bytearray | memoryview):
        raise TimestampError("a time-stamp request is given as bytes")
    data = bytes(der)
    if len(data) > MAX_REQUEST_BYTES:
        raise TimestampError("the time-stamp request is too large", failure="badDataFormat")
    try:
        request = _decode(data, rfc3161.TimeStampReq(), "the time-stamp request")
        if _int(request["version"]) != 1:
            raise TimestampError("the time-stamp request is not version 1")
        imprint = request["messageImprint"]
        if not _is_sha256(imprint["hashAlgorithm"]):
            raise TimestampError("the imprint is not SHA-256", failure="badAlg")
        hashed = _bytes(imprint["hashedMessage"])
        if len(hashed) != IMPRINT_BYTES:
            raise TimestampError("the SHA-256 imprint is not 32 bytes", failure="badDataFormat")
        if (
            policy is not None
            and _has(request, "reqPolicy")
            and _str(request["reqPolicy"]) != policy
        ):
            raise TimestampError("the requested policy is not ours", failure="unacceptedPolicy")
        nonce = _check_nonce(_int(request["nonce"])) if _has(request, "nonce") else None
        if _has(request, "extensions"):
            raise TimestampError(
                "request extensions are not supported", failure="unacceptedExtension"
            )
        cert_req = bool(request["certReq"])
    except _ASN1_ERRORS as exc:
        raise TimestampError(
            "the time-stamp request is malformed", failure="badDataFormat"
        ) from exc
    return TimeStampRequest(hashed, nonce, cert_req)


def response(token_der: bytes) -> bytes:
    """The TimeStampResp (status granted) carrying ``token_der``, as a TSA answers.

    ``openssl ts -reply -in RESP -text`` prints it. Raises :class:`TimestampError` when
    ``token_der`` is not a DER ContentInfo with SignedData.
    """
    if not isinstance(token_der, bytes | bytearray | memoryview):
        raise TimestampError("a token is given as bytes")
    token = bytes(token_der)
    if len(token) > MAX_TOKEN_BYTES:
        raise TimestampError("the token is too large")
    try:
        content_info = _decode(token, rfc5652.ContentInfo(), "the token")
        is_signed_data = _str(content_info["contentType"]) == _OID_SIGNED_DATA
    except _ASN1_ERRORS as exc:
        raise TimestampError("the token is malformed") from exc
    if not is_signed_data:
        raise TimestampError("the token is not SignedData")
    return _tlv(0x30, _DER_GRANTED + token)


def rejection(failure: str = "badRequest", text: str | None = None) -> bytes:
    """A TimeStampResp with status rejection, ``failure`` (a PKIFailureInfo name) and text.

    For a refused request: ``rejection(error.failure, str(error))``.
    """
    if failure not in _FAILURES:
        raise TimestampError(f"{failure!r} is not a PKIFailureInfo name")
    if text is not None and (not isinstance(text, str) or len(text) > 1024):
        raise TimestampError("the status text is a string of at most 1024 characters")
    return _tlv(0x30, _status_info(2, failure, text))


def request(
    message_imprint_sha256: bytes,
    *,
    nonce: int | None = None,
    cert_req: bool = True,
    policy: str | None = None,
) -> bytes:
    """A DER TimeStampReq v1 for the SHA-256 digest ``message_imprint_sha256``.

    What a mission sends HQ's TSA (and what ``openssl ts -query -digest`` makes). The
    hash algorithm's parameters are absent (RFC 5754 3). Raises :class:`TimestampError`
    for an imprint that is not 32 bytes, a bad nonce or a policy that is not an OID.
    """
    imprint = _check_imprint(message_imprint_sha256)
    checked_nonce = _check_nonce(nonce)
    if not isinstance(cert_req, bool):
        raise TimestampError("cert_req is a boolean")
    req = rfc3161.TimeStampReq()
    req["version"] = 1
    req["messageImprint"]["hashAlgorithm"] = _algorithm(_OID_SHA256)
    req["messageImprint"]["hashedMessage"] = imprint
    if policy is not None:
        req["reqPolicy"] = univ.ObjectIdentifier(_check_policy(policy))
    if checked_nonce is not None:
        req["nonce"] = checked_nonce
    if cert_req:
        req["certReq"] = True
    return _encode(req)


def parse_response(der: bytes) -> bytes:
    """The DER TimeStampToken a TimeStampResp grants (RFC 3161 2.4.2).

    A response with status granted or grantedWithMods must carry a token, and only
    then; any other status raises :class:`TimestampError` whose ``failure`` is the
    first PKIFailureInfo bit the TSA set (badRequest when it set none) and whose message
    carries the TSA's status text. The token itself is not verified here
    (:func:`crypto.tsa_verify.verify_token` does that). Raises :class:`TimestampError` on
    any bytes that are not such a response.
    """
    if not isinstance(der, bytes | bytearray | memoryview):
        raise TimestampError("a time-stamp response is given as bytes")
    data = bytes(der)
    if len(data) > MAX_RESPONSE_BYTES:
        raise TimestampError("the time-stamp response is too large", failure="badDataFormat")
    # The status is decoded; the token (a SignedData) is sliced out as it is, not decoded
    # and re-encoded: verify_token reads (and checks the DER of) it once, where needed.
    elements = _children(data, "the time-stamp response")
    if not 1 <= len(elements) <= 2 or (len(elements) == 2 and elements[1][0] != 0x30):
        raise TimestampError("the time-stamp response is malformed", failure="badDataFormat")
    try:
        status = _decode(elements[0], rfc3161.PKIStatusInfo(), "the time-stamp response status")
        code = _int(status["status"])
        if code in (0, 1):
            if len(elements) != 2:
                raise TimestampError("a granted time-stamp response carries no token")
            return elements[1]
        if len(elements) == 2:
            raise TimestampError("a refused time-stamp response carries a token")
        texts = []
        if _has(status, "statusString"):
            texts = [_str(text) for text in status["statusString"]]
        failure = "badRequest"
        if _has(status, "failInfo"):
            bits = list(status["failInfo"])
            names = {bit: name for name, bit in rfc3161.PKIFailureInfo.namedValues.items()}
            failure = next(
                (names[i] for i, bit in enumerate(bits) if bit and i in names), "badRequest"
            )
    except _ASN1_ERRORS as exc:
        raise TimestampError(
            "the time-stamp response is malformed", failure="badDataFormat"
        ) from exc
    detail = "; ".join(texts) if texts else "no reason given"
    raise TimestampError(f"the TSA refused the request (status {code}): {detail}", failure=failure)
