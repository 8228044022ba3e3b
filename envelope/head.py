"""The envelope head: canonical XML out, hardened parse in.

Rules:
- :func:`assemble_head` (over :func:`serialize_signed`, :func:`serialize_signature`
  and :func:`serialize_trace`) is the only writer. :func:`parse_head` parses with the
  hardened parser, which requires the exact canonical bytes (exc-c14n, no text
  between elements: :class:`NonCanonical` otherwise), then checks the format's
  rules. The application uses only values of the verified model.
- The origin signs ``SIGNATURE_LABEL || <signed>...</signed>``: the exact bytes of
  the ``signed`` element as they stand in the file.
- The envelope digest (receipts, timestamps) is SHA-256 over the byte range from
  ``<signed>`` to ``</signature>``; hop records are outside it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from lxml.etree import _Element

from crypto.recipes import SIGNATURE_BYTES, WRAP_BYTES, plaintext_size
from envelope import limits
from envelope import xmlsafe as x
from envelope.errors import LimitExceeded, SchemaError
from envelope.model import Head, HopRecord, Manifest, RecipientStanza, RoutingHeader, Segment
from envelope.values import (
    check_doc_class,
    check_dossier,
    check_key_id,
    check_message_id,
    check_priority,
    check_site_id,
    format_time,
    parse_time,
)

FORMAT_VERSION = "1"
SIGNATURE_LABEL = b"valise/v1/signature\x00"
_ENVELOPE_OPEN = x.start("envelope", [("version", FORMAT_VERSION)], root=True)
_ENVELOPE_OPEN_BYTES = _ENVELOPE_OPEN.encode()


@dataclass(frozen=True)
class ParsedHead:
    """A head read from bytes, with the exact byte ranges that were signed."""

    head: Head
    signed_xml: bytes
    signature_xml: bytes

    @property
    def signed_message(self) -> bytes:
        return SIGNATURE_LABEL + self.signed_xml

    @property
    def digest(self) -> bytes:
        return envelope_digest(self.signed_xml, self.signature_xml)


def envelope_digest(signed_xml: bytes, signature_xml: bytes) -> bytes:
    return hashlib.sha256(signed_xml + signature_xml).digest()


# -- writing ----------------------------------------------------------------------


def serialize_routing(r: RoutingHeader) -> str:
    # Every routing value is pattern-checked (check_fields) and so needs no escaping;
    # f-strings keep sealing fast.
    out = [
        f"<routing><id>{r.message_id}</id><origin>{r.origin}</origin>",
        *(f"<to>{site}</to>" for site in r.destinations),
        f"<created>{format_time(r.created)}</created><expires>{format_time(r.expires)}</expires>",
        f"<priority>{r.priority.value}</priority><class>{r.doc_class}</class>",
    ]
    if r.dossier is not None:
        out.append(f"<dossier>{r.dossier}</dossier>")
    if r.in_reply_to is not None:
        out.append(f"<in-reply-to>{r.in_reply_to}</in-reply-to>")
    out.append("</routing>")
    return "".join(out)


def _segment(name: str, s: Segment) -> str:
    # Attributes in exc-c14n order: length, sha256.
    return f'<{name} length="{s.length}" sha256="{s.sha256.hex()}"></{name}>'


def serialize_signed(
    routing: RoutingHeader,
    recipients: tuple[RecipientStanza, ...],
    manifest: Manifest,
    *,
    check: bool = True,
) -> bytes:
    """The exact bytes of the ``<signed>`` element. Raises :class:`SchemaError`.

    ``check=False`` is for a caller that has already run :func:`check_fields` on
    these values.
    """
    if check:
        check_fields(routing, recipients, manifest)
    stanzas = "".join(
        f'<recipient key="{s.key_id}" site="{s.site}">{x.b64encode(s.wrapped)}</recipient>'
        for s in recipients
    )
    parts = "".join(_segment("part", s) for s in manifest.parts)
    return (
        "<signed>"
        + serialize_routing(routing)
        + f"<recipients>{stanzas}</recipients>"
        + f"<manifest>{_segment('sealed-header', manifest.sealed_header)}{parts}</manifest>"
        + "</signed>"
    ).encode()


def serialize_signature(key_id: str, signature: bytes) -> bytes:
    check_key_id(key_id)
    if len(signature) != SIGNATURE_BYTES:
        raise SchemaError(f"a signature is {SIGNATURE_BYTES} bytes")
    return x.leaf("signature", x.b64encode(signature), [("key", key_id)]).encode()


def serialize_trace(trace: tuple[HopRecord, ...]) -> bytes:
    if len(trace) > limits.MAX_HOPS:
        raise LimitExceeded(f"more than {limits.MAX_HOPS} hop records")
    hops = "".join(
        x.leaf(
            "hop",
            x.b64encode(h.signature),
            [
                ("site", check_site_id(h.site)),
                ("key", check_key_id(h.key_id)),
                ("at", format_time(h.at)),
                ("from", check_site_id(h.received_from)),
            ],
        )
        for h in trace
    )
    return f"<trace>{hops}</trace>".encode()


def assemble_head(signed_xml: bytes, signature_xml: bytes, trace_xml: bytes) -> bytes:
    return _ENVELOPE_OPEN.encode() + signed_xml + signature_xml + trace_xml + b"</envelope>"


# -- the format's rules, beyond the schema -----------------------------------------


def check_fields(
    r: RoutingHeader, recipients: tuple[RecipientStanza, ...], manifest: Manifest
) -> None:
    """Check every rule a valid head obeys. Raises :class:`SchemaError` / :class:`LimitExceeded`."""
    check_message_id(r.message_id)
    check_site_id(r.origin)
    if not r.destinations:
        raise SchemaError("an envelope needs at least one destination")
    if len(r.destinations) > limits.MAX_DESTINATIONS:
        raise LimitExceeded(f"more than {limits.MAX_DESTINATIONS} destinations")
    for site in r.destinations:
        check_site_id(site)
    if len(set(r.destinations)) != len(r.destinations):
        raise SchemaError("a destination is listed twice")
    if r.expires <= r.created:
        raise SchemaError("expires must be later than created")
    check_priority(r.priority)
    check_doc_class(r.doc_class)
    if r.dossier is not None:
        check_dossier(r.dossier)
    if r.in_reply_to is not None:
        check_message_id(r.in_reply_to)
    _check_recipients(r.destinations, recipients)
    _check_manifest(manifest)


def _check_recipients(destinations: tuple[str, ...], stanzas: tuple[RecipientStanza, ...]) -> None:
    if len(stanzas) > limits.MAX_RECIPIENT_STANZAS:
        raise LimitExceeded(f"more than {limits.MAX_RECIPIENT_STANZAS} recipient stanzas")
    seen: set[tuple[str, str]] = set()
    for s in stanzas:
        check_site_id(s.site)
        check_key_id(s.key_id)
        if s.site not in destinations:
            raise SchemaError(f"recipient stanza for {s.site}, which is not a destination")
        if (s.site, s.key_id) in seen:
            raise SchemaError(f"two recipient stanzas for {s.site} key {s.key_id}")
        if len(s.wrapped) != WRAP_BYTES:
            raise SchemaError(f"a wrapped key is {WRAP_BYTES} bytes")
        seen.add((s.site, s.key_id))
    missing = set(destinations) - {site for site, _ in seen}
    if missing:
        raise SchemaError(f"no recipient stanza for destination {sorted(missing)[0]}")


def _check_manifest(m: Manifest) -> None:
    if len(m.parts) > limits.MAX_PARTS:
        raise LimitExceeded(f"more than {limits.MAX_PARTS} parts")
    for index, s in enumerate(m.segments):
        if len(s.sha256) != 32:
            raise SchemaError("a segment digest is 32 bytes")
        try:
            size = plaintext_size(s.length)
        except ValueError:
            raise SchemaError(f"segment {index} length {s.length} is impossible") from None
        bound = limits.MAX_SEALED_HEADER_BYTES if index == 0 else limits.MAX_PART_BYTES
        if size > bound:
            raise LimitExceeded(f"segment {index} exceeds {bound} bytes")


# -- reading ----------------------------------------------------------------------


def parse_head(data: bytes) -> ParsedHead:
    """Parse and check an envelope head. Raises an :class:`EnvelopeError` subclass."""
    root = x.parse(data, root="envelope", max_bytes=limits.MAX_HEAD_XML_BYTES)
    # The schema fixed the order of every child, so read them by position.
    signed, sig_el, trace_el = root
    routing_el, recipients_el, manifest_el = signed
    routing = _read_routing(routing_el)
    recipients = tuple(
        RecipientStanza(
            site=r.get("site", ""),
            key_id=r.get("key", ""),
            wrapped=x.b64decode(x.text(r), "a wrapped key"),
        )
        for r in recipients_el
    )
    sealed_el, *part_els = manifest_el
    manifest = Manifest(
        sealed_header=_read_segment(sealed_el),
        parts=tuple(_read_segment(p) for p in part_els),
    )
    trace = tuple(_read_hop(h) for h in trace_el)
    head = Head(
        routing=routing,
        recipients=recipients,
        manifest=manifest,
        signature_key_id=sig_el.get("key", ""),
        signature=x.b64decode(x.text(sig_el), "the signature"),
        trace=trace,
    )
    check_fields(routing, recipients, manifest)
    if len(head.signature) != SIGNATURE_BYTES:
        raise SchemaError(f"a signature is {SIGNATURE_BYTES} bytes")
    if len(trace) > limits.MAX_HOPS:
        raise LimitExceeded(f"more than {limits.MAX_HOPS} hop records")
    # The document is canonical (checked by the parser), so the signed element and
    # the signature are plain byte ranges: the root start tag is fixed, and "</"
    # cannot occur inside text, where "<" is always escaped.
    if not data.startswith(_ENVELOPE_OPEN_BYTES):
        raise SchemaError("the envelope start tag is not the v1 form")
    signed_end = data.index(b"</signed>") + len(b"</signed>")
    signature_end = data.index(b"</signature>", signed_end) + len(b"</signature>")
    return ParsedHead(
        head,
        data[len(_ENVELOPE_OPEN_BYTES) : signed_end],
        data[signed_end:signature_end],
    )


_TO = x.qualified("to")
_DOSSIER = x.qualified("dossier")


def _read_routing(el: _Element) -> RoutingHeader:
    # Schema order: id, origin, to+, created, expires, priority, class, dossier?, in-reply-to?
    items = [(c.tag, c.text or "") for c in el]
    n_to = sum(1 for tag, _ in items if tag == _TO)
    created, expires, priority, doc_class, *optional = (t for _, t in items[2 + n_to :])
    tags = [tag for tag, _ in items[6 + n_to :]]
    dossier = optional.pop(0) if tags and tags[0] == _DOSSIER else None
    return RoutingHeader(
        message_id=items[0][1],
        origin=items[1][1],
        destinations=tuple(t for _, t in items[2 : 2 + n_to]),
        created=parse_time(created, "created"),
        expires=parse_time(expires, "expires"),
        priority=check_priority(priority),
        doc_class=doc_class,
        dossier=dossier,
        in_reply_to=optional[0] if optional else None,
    )


def _read_segment(el: _Element) -> Segment:
    return Segment(length=int(el.get("length", "0")), sha256=bytes.fromhex(el.get("sha256", "")))


def _read_hop(el: _Element) -> HopRecord:
    return HopRecord(
        site=el.get("site", ""),
        key_id=el.get("key", ""),
        at=parse_time(el.get("at", ""), "hop time"),
        received_from=el.get("from", ""),
        signature=x.b64decode(x.text(el), "a hop signature"),
    )
