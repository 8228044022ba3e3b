"""RFC 3161 time-stamping: HQ's time-stamp authority, and a verifier for its tokens.

HQ stamps every envelope it relays or delivers: a TimeStampToken over the envelope
digest (SHA-256), signed with the TSA's own key, whose certificate the site CA issued
(:func:`crypto.x509.issue_tsa_certificate`). Tokens are kept with the messages;
``openssl ts -verify -data FILE -in TOKEN -token_in -CAfile ca.pem`` verifies them, as
does :func:`verify_token`.

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
  its own imprint, serial and nonce as plain DER (an OCTET STRING, INTEGERs, lengths).
  So a batch (:meth:`TimeStampAuthority.issue_many`) costs little more than its
  signatures (measured: about 0.1 ms a token, against 1.8 ms when every token was built
  wholly through pyasn1).
- Verifying decodes with pyasn1 and insists on DER: every layer must re-encode to the
  very bytes given, so that the bytes checked are the bytes signed.
- Pure: no files, no sockets, no clock (``now`` is a parameter). Every failure, on any
  input bytes, is a :class:`TimestampError`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from pyasn1.codec.ber import encoder as ber_encoder  # type: ignore[import-untyped]
from pyasn1.codec.der import decoder, encoder  # type: ignore[import-untyped]
from pyasn1.error import PyAsn1Error  # type: ignore[import-untyped]
from pyasn1.type import char, univ, useful  # type: ignore[import-untyped]
from pyasn1_modules import rfc2634, rfc3161, rfc5035, rfc5280, rfc5652  # type: ignore[import-untyped]

from crypto.errors import CryptoError
from crypto.x509 import _PARSE_ERRORS, CertificateError, _load_certificate, _load_private_key

__all__ = [
    "MAX_REQUEST_BYTES",
    "MAX_TOKEN_BYTES",
    "TimeStampAuthority",
    "TimeStampRequest",
    "TimestampError",
    "TokenInfo",
    "parse_request",
    "rejection",
    "response",
    "verify_token",
]

MAX_TOKEN_BYTES = 64 * 1024
MAX_REQUEST_BYTES = 16 * 1024
IMPRINT_BYTES = 32
MAX_SERIAL = 1 << 160
MAX_NONCE = 1 << 256
MAX_FRACTION_DIGITS = 6

# pyasn1 is untyped: its objects are ``Any`` here, and reach typed code only through the
# small converters below (``_str``, ``_int``, ``_bytes``, ``_encode``, ``_has``).
_Asn1 = Any

_OID_SHA256 = "2.16.840.1.101.3.4.2.1"
_OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_OID_TST_INFO = "1.2.840.113549.1.9.16.1.4"
_OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_OID_SIGNING_TIME = "1.2.840.113549.1.9.5"
_OID_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"

_FAILURES = (
    "badAlg",
    "badRequest",
    "badDataFormat",
    "timeNotAvailable",
    "unacceptedPolicy",
    "unacceptedExtension",
    "addInfoNotAvailable",
    "systemFailure",
)

# What pyasn1 may raise on hostile input besides its own PyAsn1Error (its decoders are
# plain Python: a malformed length or tag can surface as any of these).
_ASN1_ERRORS = (
    PyAsn1Error,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    AttributeError,
    OverflowError,
    RecursionError,
    UnicodeError,
)

_GENERALIZED_TIME_RE = re.compile(r"(\d{14})(?:\.(\d*[1-9]))?Z")


class TimestampError(CryptoError):
    """A time-stamp request, token or authority is not acceptable.

    ``failure`` names the RFC 3161 PKIFailureInfo bit that a TSA answers with
    (:func:`rejection`); it means little for a refused token.
    """

    def __init__(self, message: str, *, failure: str = "badRequest") -> None:
        super().__init__(message)
        self.failure = failure if failure in _FAILURES else "badRequest"


class TimeStampRequest(NamedTuple):
    """What :func:`parse_request` keeps of a TimeStampReq."""

    imprint: bytes
    nonce: int | None
    cert_req: bool


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


# --- small typed helpers ----------------------------------------------------------------


def _str(value: _Asn1) -> str:
    return str(value)


def _int(value: _Asn1) -> int:
    return int(value)


def _bytes(value: _Asn1) -> bytes:
    return bytes(value)


# pyasn1's DER encoder rewrites times: it drops every zero among the first three digits
# of a fraction (".05Z" becomes ".5Z", another time) and refuses a fourth digit. Times are
# encoded as given instead (genTime is checked by _parse_generalized_time), so that a
# token re-encodes to the bytes it came in.
_TIME_ENCODER = ber_encoder.OctetStringEncoder()
_DER = encoder.Encoder(
    {
        **encoder.TAG_MAP,
        useful.GeneralizedTime.tagSet: _TIME_ENCODER,
        useful.UTCTime.tagSet: _TIME_ENCODER,
    },
    {
        **encoder.TYPE_MAP,
        useful.GeneralizedTime.typeId: _TIME_ENCODER,
        useful.UTCTime.typeId: _TIME_ENCODER,
    },
)


def _encode(value: _Asn1) -> bytes:
    return bytes(_DER(value))


_ABSENT = object()


def _has(value: _Asn1, name: str) -> bool:
    """Whether the optional component ``name`` of a decoded SEQUENCE is present."""
    return _present(value.getComponentByName(name, default=_ABSENT, instantiate=False))


def _present(component: _Asn1) -> bool:
    # Not ``value[name].isValue``: reading a component makes an absent one, and so does
    # encoding (which _decode does): a SEQUENCE of optional components (Accuracy) then
    # turns up empty, and counts as a value. DER has no empty SEQUENCE where an
    # OPTIONAL one can be left out, and _decode has checked DER: empty means absent.
    if component is _ABSENT or not component.isValue:
        return False
    if isinstance(component, univ.Sequence | univ.Set):
        return any(
            _present(component.getComponentByPosition(i, default=_ABSENT, instantiate=False))
            for i in range(len(component.componentType))
        )
    return True


def _decode(der: bytes, spec: _Asn1, what: str) -> _Asn1:
    """Decode ``der`` as ``spec``, wholly and in DER (it must re-encode to the same bytes)."""
    try:
        value, rest = decoder.decode(der, asn1Spec=spec)
        if rest:
            raise TimestampError(f"{what}: trailing bytes after the DER", failure="badDataFormat")
        if _encode(value) != der:
            raise TimestampError(f"{what} is not in DER", failure="badDataFormat")
    except _ASN1_ERRORS as exc:
        raise TimestampError(f"{what} is not readable ASN.1", failure="badDataFormat") from exc
    return value


def _tlv(tag: int, content: bytes) -> bytes:
    """One DER element with a single-octet tag."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def _algorithm(oid: str) -> _Asn1:
    alg = rfc5280.AlgorithmIdentifier()
    alg["algorithm"] = univ.ObjectIdentifier(oid)
    return alg


def _is_sha256(alg: _Asn1) -> bool:
    """SHA-256 with its parameters absent or NULL (RFC 5754 3: accept both)."""
    if _str(alg["algorithm"]) != _OID_SHA256:
        return False
    return not _has(alg, "parameters") or _bytes(alg["parameters"]) == b"\x05\x00"


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


def _parse_generalized_time(text: str) -> datetime:
    """genTime as RFC 3161 2.4.2 wants it: UTC, seconds, no trailing zeros in fractions."""
    match = _GENERALIZED_TIME_RE.fullmatch(text)
    if match is None:
        raise TimestampError(f"genTime {text!r} is not YYYYMMDDhhmmss[.f]Z")
    try:
        moment = datetime.strptime(match.group(1), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        raise TimestampError(f"genTime {text!r} is not a date") from None
    fraction = match.group(2) or ""
    return moment.replace(microsecond=int(fraction[:6].ljust(6, "0")))


def _signing_time(moment: datetime) -> _Asn1:
    """RFC 5652 11.3: UTCTime from 1950 to 2049, GeneralizedTime otherwise."""
    if 1950 <= moment.year < 2050:
        return useful.UTCTime(moment.strftime("%y%m%d%H%M%SZ"))
    return useful.GeneralizedTime(moment.strftime("%Y%m%d%H%M%SZ"))


def _accuracy(accuracy: timedelta) -> _Asn1:
    micros_total = accuracy // timedelta(microseconds=1)
    seconds, rest = divmod(micros_total, 1_000_000)
    millis, micros = divmod(rest, 1000)
    value = rfc3161.Accuracy()
    if seconds:
        value["seconds"] = seconds
    if millis:
        value["millis"] = millis
    if micros:
        value["micros"] = micros
    return value


def _attribute(oid: str, value_der: bytes) -> _Asn1:
    attr = rfc5652.Attribute()
    attr["attrType"] = univ.ObjectIdentifier(oid)
    attr["attrValues"].append(univ.Any(value_der))
    return attr


def _directory_name(name: _Asn1) -> _Asn1:
    general = rfc5280.GeneralName()
    general["directoryName"]["rdnSequence"] = name["rdnSequence"]
    return general


def _key_matches(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)
    except _PARSE_ERRORS:
        return False


def _check_tsa_extensions(cert: x509.Certificate) -> None:
    """RFC 3161 2.3: EKU exactly id-kp-timeStamping, critical; keyUsage for signing only.

    As OpenSSL checks a TSA certificate (X509_PURPOSE_TIMESTAMP_SIGN), so that what
    :func:`verify_token` accepts, ``openssl ts -verify`` accepts too.
    """
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise TimestampError("the TSA certificate has no extendedKeyUsage") from None
    except _PARSE_ERRORS as exc:
        raise TimestampError("the TSA certificate's extensions are malformed") from exc
    if not eku.critical:
        raise TimestampError("the TSA certificate's extendedKeyUsage is not critical")
    _check_eku(eku.value)
    try:
        usage: x509.KeyUsage | None = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    _check_key_usage(usage)
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return
    if constraints.ca:
        raise TimestampError("the TSA certificate is a CA certificate")


def _check_eku(eku: x509.ExtendedKeyUsage) -> None:
    if list(eku) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise TimestampError("the TSA certificate's extendedKeyUsage is not only timeStamping")


def _check_key_usage(usage: x509.KeyUsage | None) -> None:
    if usage is None:
        return
    signing = usage.digital_signature or usage.content_commitment
    other = (
        usage.key_encipherment
        or usage.data_encipherment
        or usage.key_agreement
        or usage.key_cert_sign
        or usage.crl_sign
    )
    if not signing or other:
        raise TimestampError("the TSA certificate's keyUsage is not digitalSignature only")


# --- the authority ----------------------------------------------------------------------


_DER_CONTENT_TYPE_SIGNED_DATA = _encode(univ.ObjectIdentifier(_OID_SIGNED_DATA))
_DER_ECONTENT_TYPE = _encode(univ.ObjectIdentifier(_OID_TST_INFO))
_DER_SHA256 = _encode(_algorithm(_OID_SHA256))
_DER_ECDSA_SHA256 = _encode(_algorithm(_OID_ECDSA_SHA256))


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
    _signer: _Signer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            cert = _load_certificate(self.certificate)
            key = _load_private_key(self.private_key, self.passphrase)
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
        object.__setattr__(self, "_signer", _Signer(self, cert, key))

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


def _der_uint(n: int) -> bytes:
    """A non-negative DER INTEGER (a leading zero octet when the top bit is set)."""
    return _tlv(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def _der_set_of(elements: list[bytes]) -> bytes:
    """DER SET OF: the encodings in ascending order (X.690 11.6)."""
    return _tlv(0x31, b"".join(sorted(elements)))


class _Signer:
    """An authority's key, and the DER of what all its tokens share, encoded once.

    pyasn1 encodes each piece from the pyasn1-modules schemas; a token joins them with
    what is its own (imprint, serial, nonce), which is plain DER: an OCTET STRING, and
    INTEGERs. :func:`verify_token` re-encodes every token with pyasn1 and compares, so
    the tests that verify issued tokens also check this assembly byte for byte.
    """

    def __init__(
        self, tsa: TimeStampAuthority, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
    ) -> None:
        self.cert = cert
        self.key = key
        self.not_before = cert.not_valid_before_utc
        self.not_after = cert.not_valid_after_utc
        cert_der = cert.public_bytes(serialization.Encoding.DER)
        tbs = _decode(cert_der, rfc5280.Certificate(), "the TSA certificate")["tbsCertificate"]

        # TSTInfo: version, policy, then messageImprint's hashAlgorithm ...
        self.tst_head = _encode(univ.Integer(1)) + _encode(univ.ObjectIdentifier(tsa.policy))
        # ... after genTime: accuracy; after the nonce: tsa [0] (the subject, a directoryName).
        self.tst_accuracy = b"" if tsa.accuracy is None else _encode(_accuracy(tsa.accuracy))
        self.tst_tsa = b""
        if tsa.include_tsa_name:
            info = rfc3161.TSTInfo()
            info["tsa"]["directoryName"]["rdnSequence"] = tbs["subject"]["rdnSequence"]
            self.tst_tsa = _encode(info["tsa"])

        sid = rfc5652.IssuerAndSerialNumber()
        sid["issuer"] = tbs["issuer"]
        sid["serialNumber"] = tbs["serialNumber"]
        # SignerInfo up to its signed attributes: version 1, sid, digestAlgorithm.
        self.signer_info_head = _encode(univ.Integer(1)) + _encode(sid) + _DER_SHA256

        issuer_serial = rfc2634.IssuerSerial()
        issuer_serial["issuer"].append(_directory_name(tbs["issuer"]))
        issuer_serial["serialNumber"] = tbs["serialNumber"]
        cert_id = rfc5035.ESSCertIDv2()  # hashAlgorithm: the default, SHA-256
        cert_id["certHash"] = hashlib.sha256(cert_der).digest()
        cert_id["issuerSerial"] = issuer_serial
        signing_certificate = rfc5035.SigningCertificateV2()
        signing_certificate["certs"].append(cert_id)
        self.static_attributes = [
            _encode(_attribute(_OID_CONTENT_TYPE, _DER_ECONTENT_TYPE)),
            _encode(_attribute(_OID_SIGNING_CERTIFICATE_V2, _encode(signing_certificate))),
        ]
        self.message_digest_type = _encode(univ.ObjectIdentifier(_OID_MESSAGE_DIGEST))

        # SignedData up to encapContentInfo: version 3, digestAlgorithms {SHA-256}.
        self.signed_data_head = _encode(univ.Integer(3)) + _der_set_of([_DER_SHA256])
        # certificates [0] IMPLICIT SET OF CertificateChoices: the TSA certificate.
        self.certificates = _tlv(0xA0, cert_der)

    def batch(self, gen_time: str, signing_time: datetime | None, *, cert_req: bool) -> _Batch:
        attributes = list(self.static_attributes)
        if signing_time is not None:
            attributes.append(
                _encode(_attribute(_OID_SIGNING_TIME, _encode(_signing_time(signing_time))))
            )
        return _Batch(
            self,
            _encode(useful.GeneralizedTime(gen_time)),
            attributes,
            self.certificates if cert_req else b"",
        )


class _Batch:
    """What the tokens of one batch share: genTime, signingTime, whether to add the cert."""

    def __init__(
        self, signer: _Signer, gen_time: bytes, attributes: list[bytes], certificates: bytes
    ) -> None:
        self.signer = signer
        self.gen_time = gen_time
        self.attributes = attributes
        self.certificates = certificates

    def token(self, imprint: bytes, serial: int, nonce: int | None) -> bytes:
        signer = self.signer
        tst_info = _tlv(
            0x30,
            signer.tst_head
            + _tlv(0x30, _DER_SHA256 + _tlv(0x04, imprint))  # messageImprint
            + _der_uint(serial)
            + self.gen_time
            + signer.tst_accuracy
            + (b"" if nonce is None else _der_uint(nonce))
            + signer.tst_tsa,
        )
        message_digest = _tlv(
            0x30,
            signer.message_digest_type + _tlv(0x31, _tlv(0x04, hashlib.sha256(tst_info).digest())),
        )
        signed = _der_set_of([*self.attributes, message_digest])
        signature = signer.key.sign(signed, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        signer_info = _tlv(
            0x30,
            signer.signer_info_head
            + b"\xa0"  # signedAttrs [0] IMPLICIT: the SET re-tagged, same length
            + signed[1:]
            + _DER_ECDSA_SHA256
            + _tlv(0x04, signature),
        )
        encap = _tlv(0x30, _DER_ECONTENT_TYPE + _tlv(0xA0, _tlv(0x04, tst_info)))
        signed_data = _tlv(
            0x30,
            signer.signed_data_head + encap + self.certificates + _tlv(0x31, signer_info),
        )
        return _tlv(0x30, _DER_CONTENT_TYPE_SIGNED_DATA + _tlv(0xA0, signed_data))


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


# --- verifying --------------------------------------------------------------------------


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
        ca = _load_certificate(ca_cert_pem)
        extra = None if tsa_certificate is None else _load_certificate(tsa_certificate)
    except CertificateError as exc:
        raise TimestampError(f"verifying a token: {exc}") from exc
    try:
        is_ca = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, *_PARSE_ERRORS):
        is_ca = False
    if not is_ca:
        raise TimestampError("the trust anchor given is not a CA certificate")
    try:
        return _verify(token, bytes(data_digest_sha256), ca, extra, nonce, policy)
    except (*_ASN1_ERRORS, *_PARSE_ERRORS) as exc:
        raise TimestampError("the token is malformed") from exc


def _verify(
    token: bytes,
    digest: bytes,
    ca: x509.Certificate,
    extra: x509.Certificate | None,
    nonce: int | None,
    policy: str | None,
) -> TokenInfo:
    content_info = _decode(token, rfc5652.ContentInfo(), "the token")
    if _str(content_info["contentType"]) != _OID_SIGNED_DATA:
        raise TimestampError("the token is not SignedData")
    signed_data = _decode(_bytes(content_info["content"]), rfc5652.SignedData(), "SignedData")
    if _int(signed_data["version"]) != 3:
        raise TimestampError("the token's SignedData is not version 3")
    algorithms = signed_data["digestAlgorithms"]
    if len(algorithms) != 1 or not _is_sha256(algorithms[0]):
        raise TimestampError("the token's digest algorithm is not SHA-256 alone")
    encap = signed_data["encapContentInfo"]
    if _str(encap["eContentType"]) != _OID_TST_INFO or not _has(encap, "eContent"):
        raise TimestampError("the token does not encapsulate a TSTInfo")
    tst_der = _bytes(encap["eContent"])
    tst_info = _decode(tst_der, rfc3161.TSTInfo(), "TSTInfo")
    signer_infos = signed_data["signerInfos"]
    if len(signer_infos) != 1:
        raise TimestampError("the token does not have exactly one signer")
    signer_info = signer_infos[0]

    # The signer and its algorithms.
    if not _is_sha256(signer_info["digestAlgorithm"]):
        raise TimestampError("the signer's digest algorithm is not SHA-256")
    signature_algorithm = signer_info["signatureAlgorithm"]
    if _str(signature_algorithm["algorithm"]) != _OID_ECDSA_SHA256 or _has(
        signature_algorithm, "parameters"
    ):
        raise TimestampError("the token is not signed with ECDSA-SHA256")
    if not _has(signer_info, "signedAttrs"):
        raise TimestampError("the token has no signed attributes")
    attributes = _attributes(signer_info["signedAttrs"])

    # The signed attributes.
    content_type = _single(attributes, _OID_CONTENT_TYPE, "contentType")
    if _str(_decode(content_type, univ.ObjectIdentifier(), "contentType")) != _OID_TST_INFO:
        raise TimestampError("the contentType attribute is not id-ct-TSTInfo")
    message_digest = _single(attributes, _OID_MESSAGE_DIGEST, "messageDigest")
    if _bytes(_decode(message_digest, univ.OctetString(), "messageDigest")) != (
        hashlib.sha256(tst_der).digest()
    ):
        raise TimestampError("the messageDigest attribute does not match the TSTInfo")
    cert_id = _signing_cert_id(attributes)

    # The signer's certificate: the one signingCertificateV2 names.
    cert_der, cert_asn1 = _find_certificate(signed_data, extra, _bytes(cert_id["certHash"]))
    try:
        cert = _load_certificate(cert_der)
    except CertificateError as exc:
        raise TimestampError(f"the TSA certificate: {exc}") from exc
    _check_issuer_serial(cert_id, cert_asn1)
    _check_sid(signer_info, cert_asn1, cert)

    # The signature over the signed attributes (DER SET OF, as re-encoded = as given).
    signed = b"\x31" + _encode(signer_info["signedAttrs"])[1:]
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(
        public.curve, ec.SECP256R1
    ):
        raise TimestampError("the TSA key is not ECDSA P-256")
    try:
        public.verify(_bytes(signer_info["signature"]), signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise TimestampError("the token's signature does not verify") from None

    # TSTInfo.
    info = _read_tst_info(tst_info, digest, cert_asn1)
    if nonce is not None and info.nonce != nonce:
        raise TimestampError("the token's nonce is not the one asked for")
    if policy is not None and info.policy != policy:
        raise TimestampError("the token's policy is not the one expected")

    # The certificate: a TSA certificate under the CA, valid at genTime.
    _check_tsa_extensions(cert)
    _check_chain(cert, ca, info.gen_time)
    subject = cert.subject.rfc4514_string()
    return TokenInfo(
        gen_time=info.gen_time,
        serial=info.serial,
        policy=info.policy,
        message_imprint=digest,
        nonce=info.nonce,
        accuracy=info.accuracy,
        tsa_name=subject,
        tsa_certificate=cert.public_bytes(serialization.Encoding.PEM),
    )


def _attributes(signed_attrs: _Asn1) -> dict[str, list[bytes]]:
    """The signed attributes by type; RFC 5652 5.3 allows each type once."""
    attributes: dict[str, list[bytes]] = {}
    for attribute in signed_attrs:
        oid = _str(attribute["attrType"])
        if oid in attributes:
            raise TimestampError(f"the signed attribute {oid} occurs twice")
        attributes[oid] = [_bytes(value) for value in attribute["attrValues"]]
    return attributes


def _single(attributes: dict[str, list[bytes]], oid: str, name: str) -> bytes:
    values = attributes.get(oid)
    if values is None:
        raise TimestampError(f"the token has no {name} attribute")
    if len(values) != 1:
        raise TimestampError(f"the {name} attribute does not have exactly one value")
    return values[0]


def _signing_cert_id(attributes: dict[str, list[bytes]]) -> _Asn1:
    """The first ESSCertIDv2 of signingCertificateV2: the signer's (RFC 5816, RFC 5035)."""
    value = _single(attributes, _OID_SIGNING_CERTIFICATE_V2, "signingCertificateV2")
    signing_certificate = _decode(
        value, rfc5035.SigningCertificateV2(), "the signingCertificateV2 attribute"
    )
    certs = signing_certificate["certs"]
    if len(certs) == 0:
        raise TimestampError("signingCertificateV2 names no certificate")
    cert_id = certs[0]
    # An absent hashAlgorithm decodes as its default, SHA-256.
    if _str(cert_id["hashAlgorithm"]["algorithm"]) != _OID_SHA256:
        raise TimestampError("signingCertificateV2 does not use SHA-256")
    return cert_id


def _find_certificate(
    signed_data: _Asn1, extra: x509.Certificate | None, cert_hash: bytes
) -> tuple[bytes, _Asn1]:
    """The DER and the TBSCertificate of the certificate whose SHA-256 is ``cert_hash``."""
    if _has(signed_data, "certificates"):
        for choice in signed_data["certificates"]:
            if choice.getName() != "certificate":
                continue
            der = _encode(choice["certificate"])
            if hashlib.sha256(der).digest() == cert_hash:
                return der, choice["certificate"]["tbsCertificate"]
    if extra is not None:
        der = extra.public_bytes(serialization.Encoding.DER)
        if hashlib.sha256(der).digest() == cert_hash:
            parsed = _decode(der, rfc5280.Certificate(), "the TSA certificate")
            return der, parsed["tbsCertificate"]
    raise TimestampError("the token's signing certificate is not in it (nor given)")


def _check_issuer_serial(cert_id: _Asn1, tbs: _Asn1) -> None:
    if not _has(cert_id, "issuerSerial"):
        return
    issuer_serial = cert_id["issuerSerial"]
    names = issuer_serial["issuer"]
    issuer = _encode(tbs["issuer"])
    if (
        len(names) != 1
        or names[0].getName() != "directoryName"
        or _encode(names[0]["directoryName"]["rdnSequence"]) != issuer
        or _int(issuer_serial["serialNumber"]) != _int(tbs["serialNumber"])
    ):
        raise TimestampError("signingCertificateV2's issuer and serial are not the certificate's")


def _check_sid(signer_info: _Asn1, tbs: _Asn1, cert: x509.Certificate) -> None:
    sid = signer_info["sid"]
    version = _int(signer_info["version"])
    if sid.getName() == "issuerAndSerialNumber":
        named = sid["issuerAndSerialNumber"]
        if version != 1:
            raise TimestampError("a SignerInfo with issuerAndSerialNumber is version 1")
        if _encode(named["issuer"]) != _encode(tbs["issuer"]) or _int(
            named["serialNumber"]
        ) != _int(tbs["serialNumber"]):
            raise TimestampError("the SignerInfo names another certificate")
        return
    if version != 3:
        raise TimestampError("a SignerInfo with subjectKeyIdentifier is version 3")
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        raise TimestampError(
            "the SignerInfo names a key identifier the certificate lacks"
        ) from None
    if _bytes(sid["subjectKeyIdentifier"]) != ski:
        raise TimestampError("the SignerInfo names another certificate")


class _TstFields(NamedTuple):
    gen_time: datetime
    serial: int
    policy: str
    nonce: int | None
    accuracy: timedelta | None


def _read_tst_info(tst_info: _Asn1, digest: bytes, tbs: _Asn1) -> _TstFields:
    if _int(tst_info["version"]) != 1:
        raise TimestampError("TSTInfo is not version 1")
    imprint = tst_info["messageImprint"]
    if not _is_sha256(imprint["hashAlgorithm"]):
        raise TimestampError("the token's imprint is not SHA-256")
    if _bytes(imprint["hashedMessage"]) != digest:
        raise TimestampError("the token does not stamp this digest")
    gen_time = _parse_generalized_time(_bytes(tst_info["genTime"]).decode("ascii"))
    accuracy = None
    if _has(tst_info, "accuracy"):
        value = tst_info["accuracy"]
        parts = [
            _int(value[name]) if _has(value, name) else 0
            for name in ("seconds", "millis", "micros")
        ]
        if parts[0] < 0 or parts[0] > 1 << 32:
            raise TimestampError("the token's accuracy is out of range")
        accuracy = timedelta(seconds=parts[0], milliseconds=parts[1], microseconds=parts[2])
    if _has(tst_info, "tsa"):
        name = tst_info["tsa"]
        if name.getName() != "directoryName" or _encode(
            name["directoryName"]["rdnSequence"]
        ) != _encode(tbs["subject"]):
            raise TimestampError("the token's tsa name is not its certificate's subject")
    if _has(tst_info, "extensions"):
        for extension in tst_info["extensions"]:
            if bool(extension["critical"]):
                raise TimestampError("the token has a critical extension")
    return _TstFields(
        gen_time=gen_time,
        serial=_int(tst_info["serialNumber"]),
        policy=_str(tst_info["policy"]),
        nonce=_int(tst_info["nonce"]) if _has(tst_info, "nonce") else None,
        accuracy=accuracy,
    )


def _eku_validator(_policy: Policy, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage) -> None:
    _check_eku(eku)


def _key_usage_validator(
    _policy: Policy, _cert: x509.Certificate, usage: x509.KeyUsage | None
) -> None:
    _check_key_usage(usage)


def _basic_constraints_validator(
    _policy: Policy, _cert: x509.Certificate, constraints: x509.BasicConstraints | None
) -> None:
    if constraints is not None and constraints.ca:
        raise TimestampError("the TSA certificate is a CA certificate")


def _check_chain(cert: x509.Certificate, ca: x509.Certificate, at: datetime) -> None:
    """The TSA certificate is issued by the CA and both are valid at ``at`` (RFC 5280)."""
    leaf_policy = (
        ExtensionPolicy.permit_all()
        .require_present(x509.ExtendedKeyUsage, Criticality.CRITICAL, _eku_validator)
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _key_usage_validator)
        .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, _basic_constraints_validator)
    )
    verifier = (
        PolicyBuilder()
        .store(Store([ca]))
        .time(at)
        .max_chain_depth(0)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=leaf_policy)
        .build_client_verifier()
    )
    try:
        verifier.verify(cert, [])
    except VerificationError as exc:
        raise TimestampError(f"the TSA certificate does not chain to the CA: {exc}") from exc
