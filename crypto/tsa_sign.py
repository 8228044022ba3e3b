"""Signing RFC 3161 tokens for :class:`crypto.tsa.TimeStampAuthority`.

:class:`Signer` encodes once, with pyasn1 from the pyasn1-modules schemas, the DER that
every token of an authority shares (TSTInfo's head, the SignerInfo's head, the static
signed attributes, the SignedData's head, the certificate); a :class:`Batch` adds what
the tokens issued together share (genTime, signingTime, whether the certificate goes
in); :meth:`Batch.token` joins them with each token's own imprint, serial and nonce as
plain DER and signs. The profile is crypto/tsa.py's.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pyasn1.type import univ, useful  # type: ignore[import-untyped]
from pyasn1_modules import rfc2634, rfc3161, rfc5035, rfc5280, rfc5652  # type: ignore[import-untyped]

from crypto.tsa_asn1 import (
    _OID_CONTENT_TYPE,
    _OID_ECDSA_SHA256,
    _OID_MESSAGE_DIGEST,
    _OID_SHA256,
    _OID_SIGNED_DATA,
    _OID_SIGNING_CERTIFICATE_V2,
    _OID_SIGNING_TIME,
    _OID_TST_INFO,
    _algorithm,
    _Asn1,
    _decode,
    _encode,
    _tlv,
)


class Profile(Protocol):
    """What a signer reads of its authority (a :class:`crypto.tsa.TimeStampAuthority`)."""

    @property
    def policy(self) -> str: ...

    @property
    def accuracy(self) -> timedelta | None: ...

    @property
    def include_tsa_name(self) -> bool: ...


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


_DER_CONTENT_TYPE_SIGNED_DATA = _encode(univ.ObjectIdentifier(_OID_SIGNED_DATA))
_DER_ECONTENT_TYPE = _encode(univ.ObjectIdentifier(_OID_TST_INFO))
_DER_SHA256 = _encode(_algorithm(_OID_SHA256))
_DER_ECDSA_SHA256 = _encode(_algorithm(_OID_ECDSA_SHA256))


def _der_uint(n: int) -> bytes:
    """A non-negative DER INTEGER (a leading zero octet when the top bit is set)."""
    return _tlv(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def _der_set_of(elements: list[bytes]) -> bytes:
    """DER SET OF: the encodings in ascending order (X.690 11.6)."""
    return _tlv(0x31, b"".join(sorted(elements)))


class Signer:
    """An authority's key, and the DER of what all its tokens share, encoded once.

    pyasn1 encodes each piece from the pyasn1-modules schemas; a token joins them with
    what is its own (imprint, serial, nonce), which is plain DER: an OCTET STRING, and
    INTEGERs. :func:`verify_token` re-encodes every token with pyasn1 and compares, so
    the tests that verify issued tokens also check this assembly byte for byte.
    """

    def __init__(
        self, tsa: Profile, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
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

    def batch(self, gen_time: str, signing_time: datetime | None, *, cert_req: bool) -> Batch:
        attributes = list(self.static_attributes)
        if signing_time is not None:
            attributes.append(
                _encode(_attribute(_OID_SIGNING_TIME, _encode(_signing_time(signing_time))))
            )
        return Batch(
            self,
            _encode(useful.GeneralizedTime(gen_time)),
            attributes,
            self.certificates if cert_req else b"",
        )


class Batch:
    """What the tokens of one batch share: genTime, signingTime, whether to add the cert."""

    def __init__(
        self, signer: Signer, gen_time: bytes, attributes: list[bytes], certificates: bytes
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
