"""Peer formats on the same payloads: XMLDSig (AS4), S/MIME (AS2) and age.

Key types:
- peer.xmldsig.4k: ECDSA P-256 with a self-signed P-256 certificate (signxml, enveloped).
- peer.smime.4k: the signer is ECDSA P-256 (the faster of the two choices AS2 allows, so the
  peer is not handicapped); the recipient is RSA-2048, the only key type
  PKCS7EnvelopeBuilder encrypts to.
- peer.age.64m: an X25519 recipient.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pyrage
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import XMLSigner, XMLVerifier, methods

from bench.common import Bench, Settings, mb_per_second, ops_per_second

_AS4_DOC = (
    '<Messaging xmlns="urn:valise:bench:as4">'
    "<UserMessage><MessageId>bench@hq</MessageId><From>HQ-BENCH</From><To>M-001</To>"
    '<Payload mimeType="application/octet-stream">{payload}</Payload>'
    "</UserMessage></Messaging>"
)


def self_signed(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, cn: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def xmldsig_bench(payload: bytes, settings: Settings) -> Bench:
    """One sign + verify pair of an enveloped ECDSA P-256 XMLDSig over the payload in base64."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed(key, "bench-xmldsig-p256")
    doc = _AS4_DOC.format(payload=base64.b64encode(payload).decode()).encode()
    signer = XMLSigner(method=methods.enveloped, signature_algorithm="ecdsa-sha256")
    verifier = XMLVerifier()

    def pair() -> None:
        signed = signer.sign(etree.fromstring(doc), key=key, cert=[cert])
        verifier.verify(etree.tostring(signed), x509_cert=cert)

    pair()  # fails loudly if the setup is wrong
    return Bench("peer.xmldsig.4k", "pair/s", lambda: ops_per_second(pair, settings.budget))


def smime_bench(payload: bytes, settings: Settings) -> Bench:
    """One S/MIME detached signature (SHA-256, P-256) then encryption (RSA-2048), as AS2."""
    sign_key = ec.generate_private_key(ec.SECP256R1())
    sign_cert = self_signed(sign_key, "bench-smime-p256")
    recipient_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    recipient_cert = self_signed(recipient_key, "bench-smime-rsa2048")
    smime = serialization.Encoding.SMIME

    def sign_and_encrypt() -> bytes:
        signed = (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(payload)
            .add_signer(sign_cert, sign_key, hashes.SHA256())
            .sign(smime, [pkcs7.PKCS7Options.DetachedSignature])
        )
        return (
            pkcs7.PKCS7EnvelopeBuilder()
            .set_data(signed)
            .add_recipient(recipient_cert)
            .encrypt(smime, [])
        )

    pkcs7.pkcs7_decrypt_smime(sign_and_encrypt(), recipient_cert, recipient_key, [])
    return Bench(
        "peer.smime.4k", "msg/s", lambda: ops_per_second(sign_and_encrypt, settings.budget)
    )


def age_bench(data: bytes) -> Bench:
    """age (pyrage) encryption of ``data`` in memory to one X25519 recipient."""
    identity = pyrage.x25519.Identity.generate()
    recipients = [identity.to_public()]
    if pyrage.decrypt(pyrage.encrypt(data[:100_000], recipients), [identity]) != data[:100_000]:
        raise SystemExit("bench: age did not round-trip")
    return Bench(
        "peer.age.64m",
        "MB/s",
        lambda: mb_per_second(lambda: pyrage.encrypt(data, recipients), len(data)),
    )
