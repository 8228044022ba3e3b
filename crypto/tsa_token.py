"""RFC 3161 time-stamping: reading and checking a token, the pyasn1 half of
:mod:`crypto.tsa_verify` (whose docstring states the profile and the rules), imported
when a token is first verified: every layer decoded with pyasn1 and re-encoded to the
very bytes given (DER), the signature, the certificate and its chain checked.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)
from pyasn1.type import univ  # type: ignore[import-untyped]
from pyasn1_modules import rfc3161, rfc5035, rfc5280, rfc5652  # type: ignore[import-untyped]

from crypto.tsa_asn1 import (
    _ASN1_ERRORS,
    _OID_CONTENT_TYPE,
    _OID_ECDSA_SHA256,
    _OID_MESSAGE_DIGEST,
    _OID_SHA256,
    _OID_SIGNED_DATA,
    _OID_SIGNING_CERTIFICATE_V2,
    _OID_TST_INFO,
    _Asn1,
    _bytes,
    _check_eku,
    _check_key_usage,
    _check_tsa_extensions,
    _decode,
    _encode,
    _has,
    _int,
    _is_sha256,
    _str,
)
from crypto.tsa_errors import (
    TimestampError,
)
from crypto.tsa_verify import TokenInfo
from crypto.x509_read import PARSE_ERRORS, CertificateError, load_certificate

_GENERALIZED_TIME_RE = re.compile(r"(\d{14})(?:\.(\d*[1-9]))?Z")


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


# What reading a hostile token may raise besides TimestampError: verify_token turns it
# into "the token is malformed".
MALFORMED = (*_ASN1_ERRORS, *PARSE_ERRORS)


def verify(
    token: bytes,
    digest: bytes,
    ca: x509.Certificate,
    extra: x509.Certificate | None,
    nonce: int | None,
    policy: str | None,
) -> TokenInfo:
    """:func:`crypto.tsa_verify.verify_token` once its arguments are checked. Raises
    TimestampError, or one of MALFORMED."""
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
        cert = load_certificate(cert_der)
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
