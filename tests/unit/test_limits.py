"""Every named limit of envelope/limits.py, at N-1, N and N+1.

At N-1 and N the limit itself must not fire (another check may still reject the
contrived input, which is fine); at N+1 it must, as :class:`LimitExceeded`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from crypto.recipes import WRAP_BYTES, ciphertext_size
from envelope import limits
from envelope.errors import EnvelopeError, LimitExceeded
from envelope.framing import MAGIC, read_prefix
from envelope.head import check_fields, parse_head, serialize_trace
from envelope.keydoc import parse_public_key_doc
from envelope.model import (
    HopRecord,
    Manifest,
    PartInfo,
    RecipientStanza,
    RoutingHeader,
    SealedHeader,
    Segment,
)
from envelope.sealed import check_sealed, parse_sealed
from envelope.xmlsafe import NAMESPACE
from tests.conftest import NOW

NS = f'xmlns="{NAMESPACE}"'


def _doc(body: str, root: str = "sealed") -> bytes:
    return f'<{root} {NS} version="1">{body}</{root}>'.encode()


def _nested(depth: int) -> bytes:
    # depth counts the root: depth 1 is just <sealed/>.
    inner = "".join("<part>" for _ in range(depth - 1)) + "".join(
        "</part>" for _ in range(depth - 1)
    )
    return _doc(inner)


def _routing(destinations: int) -> RoutingHeader:
    return RoutingHeader(
        message_id="01a23000-0000-7000-8000-000000000000",
        origin="HQ",
        destinations=tuple(f"M-{i:04d}" for i in range(destinations)),
        created=NOW,
        expires=NOW.replace(year=2027),
    )


def _stanzas(r: RoutingHeader, extra: int = 0) -> tuple[RecipientStanza, ...]:
    base = tuple(RecipientStanza(s, "0" * 32, bytes(WRAP_BYTES)) for s in r.destinations)
    more = tuple(
        RecipientStanza(r.destinations[0], f"{i + 1:032x}", bytes(WRAP_BYTES)) for i in range(extra)
    )
    return base + more


_SEG = Segment(ciphertext_size(1), bytes(32))
_MANIFEST = Manifest(_SEG, ())


def _check_destinations(n: int) -> None:
    r = _routing(n)
    check_fields(r, _stanzas(r), _MANIFEST)


def _check_stanzas(n: int) -> None:
    r = _routing(1)
    check_fields(r, _stanzas(r, extra=n - 1), _MANIFEST)


def _check_manifest_parts(n: int) -> None:
    r = _routing(1)
    check_fields(r, _stanzas(r), Manifest(_SEG, tuple(_SEG for _ in range(n))))


def _check_part_bytes(n: int) -> None:
    r = _routing(1)
    check_fields(r, _stanzas(r), Manifest(_SEG, (Segment(ciphertext_size(n), bytes(32)),)))
    check_sealed(SealedHeader(parts=(PartInfo("a", "text/plain", n),)))


def _check_sealed_header_bytes(n: int) -> None:
    r = _routing(1)
    check_fields(r, _stanzas(r), Manifest(Segment(ciphertext_size(n), bytes(32)), ()))


def _hops(n: int) -> None:
    hop = HopRecord("HQ", "0" * 32, NOW, "M-PARIS", bytes(64))
    serialize_trace(tuple(hop for _ in range(n)))


def _sealed(**kw: object) -> SealedHeader:
    return replace(SealedHeader(parts=()), **kw)  # type: ignore[arg-type]


CASES: dict[str, tuple[int, Callable[[int], object]]] = {
    "MAX_HEAD_XML_BYTES": (limits.MAX_HEAD_XML_BYTES, lambda n: parse_head(b" " * n)),
    "MAX_HEAD_XML_BYTES (prefix)": (
        limits.MAX_HEAD_XML_BYTES,
        lambda n: read_prefix(MAGIC + n.to_bytes(4, "big")),
    ),
    "MAX_SEALED_HEADER_BYTES (parse)": (
        limits.MAX_SEALED_HEADER_BYTES,
        lambda n: parse_sealed(b" " * n),
    ),
    "MAX_SEALED_HEADER_BYTES (manifest)": (
        limits.MAX_SEALED_HEADER_BYTES,
        _check_sealed_header_bytes,
    ),
    "MAX_PUBLIC_KEY_DOC_BYTES": (
        limits.MAX_PUBLIC_KEY_DOC_BYTES,
        lambda n: parse_public_key_doc(b" " * n),
    ),
    "MAX_PART_BYTES": (limits.MAX_PART_BYTES, _check_part_bytes),
    "MAX_XML_DEPTH": (limits.MAX_XML_DEPTH, lambda n: parse_sealed(_nested(n))),
    "MAX_XML_ELEMENTS": (
        limits.MAX_XML_ELEMENTS,
        lambda n: parse_sealed(_doc("<subject></subject>" * (n - 1))),
    ),
    "MAX_XML_TEXT_CHARS": (
        limits.MAX_XML_TEXT_CHARS,
        lambda n: parse_sealed(_doc(f"<part><name>{'a' * n}</name></part>")),
    ),
    "MAX_XML_ATTRIBUTE_CHARS": (
        limits.MAX_XML_ATTRIBUTE_CHARS,
        lambda n: parse_sealed(_doc(f'<subject x="{"a" * n}"></subject>')),
    ),
    "MAX_XML_ATTRIBUTES": (
        limits.MAX_XML_ATTRIBUTES,
        lambda n: parse_sealed(
            _doc("<subject " + " ".join(f'a{i:02d}="1"' for i in range(n)) + "></subject>")
        ),
    ),
    "MAX_DESTINATIONS": (limits.MAX_DESTINATIONS, _check_destinations),
    "MAX_RECIPIENT_STANZAS": (limits.MAX_RECIPIENT_STANZAS, _check_stanzas),
    "MAX_PARTS (manifest)": (limits.MAX_PARTS, _check_manifest_parts),
    "MAX_PARTS (sealed header)": (
        limits.MAX_PARTS,
        lambda n: check_sealed(
            SealedHeader(parts=tuple(PartInfo("a", "text/plain", 0) for _ in range(n)))
        ),
    ),
    "MAX_HOPS": (limits.MAX_HOPS, _hops),
    "MAX_SUBJECT_CHARS": (
        limits.MAX_SUBJECT_CHARS,
        lambda n: check_sealed(_sealed(subject="s" * n)),
    ),
    "MAX_ORIGINATOR_CHARS": (
        limits.MAX_ORIGINATOR_CHARS,
        lambda n: check_sealed(_sealed(originator="o" * n)),
    ),
}


def _limit_fires(fn: Callable[[int], object], n: int) -> bool:
    try:
        fn(n)
    except LimitExceeded:
        return True
    except EnvelopeError:
        return False
    return False


@pytest.mark.parametrize("name", sorted(CASES))
def test_limit_at_n_minus_1_n_and_n_plus_1(name: str) -> None:
    n, fn = CASES[name]
    assert not _limit_fires(fn, n - 1), f"{name} fired at N-1"
    assert not _limit_fires(fn, n), f"{name} fired at N"
    assert _limit_fires(fn, n + 1), f"{name} did not fire at N+1"


def test_name_byte_limit() -> None:
    from envelope.errors import SchemaError

    n = limits.MAX_NAME_BYTES
    for size in (n - 1, n):
        check_sealed(SealedHeader(parts=(PartInfo("a" * size, "text/plain", 0),)))
    with pytest.raises(SchemaError):
        check_sealed(SealedHeader(parts=(PartInfo("a" * (n + 1), "text/plain", 0),)))


def test_limits_hold_for_real_documents_at_the_maximum() -> None:
    """A head with MAX_DESTINATIONS stanzas stays within the byte and element limits."""
    from envelope.head import serialize_signed

    r = _routing(limits.MAX_DESTINATIONS)
    signed = serialize_signed(r, _stanzas(r), Manifest(_SEG, tuple(_SEG for _ in range(256))))
    assert len(signed) < limits.MAX_HEAD_XML_BYTES
    assert signed.count(b"<") // 2 < limits.MAX_XML_ELEMENTS
