"""RFC 3161 time-stamping: what the authority and the verifier share.

What :mod:`crypto.tsa` (HQ's time-stamp authority) and :mod:`crypto.tsa_verify` share.

Internal to those two modules: the error, the limits and OIDs of the one profile they
speak, the typed converters over pyasn1 (which is untyped), DER in and out (decoding
wholly and in DER only, so that the bytes checked are the bytes signed), and the checks
a TSA certificate must pass both to issue and to verify (RFC 3161 2.3, as OpenSSL reads
them).

Rules:
- pyasn1 objects are ``Any`` (``_Asn1``) and reach typed code only through ``_str``,
  ``_int``, ``_bytes``, ``_encode`` and ``_has``.
- Every failure, on any input bytes, is a :class:`TimestampError`; anything pyasn1 may
  raise on hostile input is in ``_ASN1_ERRORS`` and is turned into one.
- Pure: no files, no sockets, no clock.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyasn1.codec.ber import encoder as ber_encoder  # type: ignore[import-untyped]
from pyasn1.codec.der import decoder, encoder  # type: ignore[import-untyped]
from pyasn1.error import PyAsn1Error  # type: ignore[import-untyped]
from pyasn1.type import univ, useful  # type: ignore[import-untyped]
from pyasn1_modules import rfc5280  # type: ignore[import-untyped]

from crypto.tsa_errors import (
    TimestampError,
)
from crypto.x509_read import PARSE_ERRORS

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


def _children(der: bytes, what: str) -> list[bytes]:
    """The elements (whole TLVs) inside the DER SEQUENCE ``der``, without decoding them:
    for a response whose token is passed on as it is (decoding and re-encoding a
    SignedData costs milliseconds). Lengths must be definite and minimal, as in DER."""

    def tlv_end(pos: int) -> tuple[int, int, int]:
        if pos + 2 > len(der):
            raise TimestampError(f"{what} is truncated", failure="badDataFormat")
        tag, first = der[pos], der[pos + 1]
        if first < 0x80:
            start, length = pos + 2, first
        else:
            n = first & 0x7F
            raw = der[pos + 2 : pos + 2 + n]
            if not 1 <= n <= 4 or len(raw) != n or raw[0] == 0:
                raise TimestampError(f"{what}: a length is not DER", failure="badDataFormat")
            start, length = pos + 2 + n, int.from_bytes(raw, "big")
            if length < 0x80:
                raise TimestampError(f"{what}: a length is not DER", failure="badDataFormat")
        if start + length > len(der):
            raise TimestampError(f"{what} is truncated", failure="badDataFormat")
        return tag, start, start + length

    tag, start, end = tlv_end(0)
    if tag != 0x30 or end != len(der):
        raise TimestampError(f"{what} is not one DER SEQUENCE", failure="badDataFormat")
    out = []
    pos = start
    while pos < end:
        _, _, child_end = tlv_end(pos)
        out.append(der[pos:child_end])
        pos = child_end
    return out


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


def _check_tsa_extensions(cert: x509.Certificate) -> None:
    """RFC 3161 2.3: EKU exactly id-kp-timeStamping, critical; keyUsage for signing only.

    As OpenSSL checks a TSA certificate (X509_PURPOSE_TIMESTAMP_SIGN), so that what
    :func:`verify_token` accepts, ``openssl ts -verify`` accepts too.
    """
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise TimestampError("the TSA certificate has no extendedKeyUsage") from None
    except PARSE_ERRORS as exc:
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
