"""The public key document of a site (``SITE.pub.xml``).

It names the site, its signing and encryption public keys with their ids, and a
validity window, and is self-signed by the signing key over
``PUBLIC_KEY_LABEL || <keys>...</keys>`` (proof of possession; trust in the key
itself comes from how the document was obtained, later from HQ's directory).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from crypto.errors import KeyFormatError, SignatureError
from crypto.keys import ENCRYPTION_ALG, SIGNING_ALG, EncryptionKey, SigningKey, VerifyKey
from crypto.recipes import sign, verify
from envelope import limits
from envelope import xmlsafe as x
from envelope.errors import SchemaError, SignatureInvalid
from envelope.values import check_site_id, format_time, parse_time

PUBLIC_KEY_LABEL = b"valise/v1/public-key\x00"


@dataclass(frozen=True)
class PublicKeyDoc:
    site: str
    signing: VerifyKey
    encryption: EncryptionKey
    valid_from: datetime
    valid_until: datetime

    def is_valid_at(self, moment: datetime) -> bool:
        return self.valid_from <= moment < self.valid_until


def _keys_xml(doc: PublicKeyDoc) -> bytes:
    check_site_id(doc.site)
    if doc.valid_until <= doc.valid_from:
        raise SchemaError("valid-until must be later than valid-from")
    return (
        "<keys>"
        + x.leaf("site", doc.site)
        + x.leaf(
            "signing-key",
            x.b64encode(doc.signing.raw),
            [("id", doc.signing.key_id), ("alg", SIGNING_ALG)],
        )
        + x.leaf(
            "encryption-key",
            x.b64encode(doc.encryption.raw),
            [("id", doc.encryption.key_id), ("alg", ENCRYPTION_ALG)],
        )
        + x.leaf("valid-from", format_time(doc.valid_from))
        + x.leaf("valid-until", format_time(doc.valid_until))
        + "</keys>"
    ).encode()


def _assemble(keys_xml: bytes, signature: bytes) -> bytes:
    return (
        x.start("public-key", [("version", "1")], root=True).encode()
        + keys_xml
        + x.leaf("signature", x.b64encode(signature)).encode()
        + b"</public-key>"
    )


def write_public_key_doc(doc: PublicKeyDoc, signer: SigningKey) -> bytes:
    """Serialise and self-sign. ``signer`` must hold the document's signing key."""
    if signer.public.raw != doc.signing.raw:
        raise SchemaError("the document must be signed by its own signing key")
    keys_xml = _keys_xml(doc)
    return _assemble(keys_xml, sign(signer, PUBLIC_KEY_LABEL + keys_xml))


def parse_public_key_doc(data: bytes) -> PublicKeyDoc:
    """Parse and check a public key document. Raises an :class:`EnvelopeError` subclass."""
    root = x.parse(data, root="public-key", max_bytes=limits.MAX_PUBLIC_KEY_DOC_BYTES)
    keys = x.child(root, "keys")
    signing_el = x.child(keys, "signing-key")
    encryption_el = x.child(keys, "encryption-key")
    if signing_el.get("alg") != SIGNING_ALG or encryption_el.get("alg") != ENCRYPTION_ALG:
        raise SchemaError("key algorithms are fixed by format v1")
    try:
        signing = VerifyKey.from_bytes(x.b64decode(x.text(signing_el), "the signing key"))
        encryption = EncryptionKey.from_bytes(
            x.b64decode(x.text(encryption_el), "the encryption key")
        )
    except KeyFormatError as exc:
        raise SchemaError(str(exc)) from None
    if signing_el.get("id") != signing.key_id or encryption_el.get("id") != encryption.key_id:
        raise SchemaError("a key id is not the digest of its key")
    doc = PublicKeyDoc(
        site=x.text(x.child(keys, "site")),
        signing=signing,
        encryption=encryption,
        valid_from=parse_time(x.text(x.child(keys, "valid-from")), "valid-from"),
        valid_until=parse_time(x.text(x.child(keys, "valid-until")), "valid-until"),
    )
    signature = x.b64decode(x.text(x.child(root, "signature")), "the signature")
    keys_xml = _keys_xml(doc)
    if _assemble(keys_xml, signature) != data:  # the parser checked exc-c14n; this is our form
        raise SchemaError("the public key document is not in the v1 form")
    try:
        verify(signing, signature, PUBLIC_KEY_LABEL + keys_xml)
    except SignatureError:
        raise SignatureInvalid("the public key document's self-signature does not verify") from None
    return doc
