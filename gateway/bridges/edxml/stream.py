"""Parse an edXML document from a file, streaming, attachment content to disk.

Rules:
- Memory is bounded whatever the input: one read chunk, the header tree (at most
  MAX_HEADER_BYTES of markup) and no attachment whole; base64 is decoded to new
  files in ``out_dir`` as it streams (see b64.py).
- One hardened lxml parser builds the header tree: no DTD (refused before it, see
  scanner.py; and checked again after), no entity expansion, no network, no huge-tree
  mode, comments and processing instructions dropped. Elements (MAX_ELEMENTS), depth
  (MAX_DEPTH) and header text (MAX_HEADER_TEXT_CHARS) are counted here as the tree
  grows, and attachments against ``max_attachments`` before each file is opened.
- Bad input raises :class:`EdxmlError` (one line) and nothing else; the files this
  call created are deleted first. ``OSError`` from ``out_dir`` or ``source`` is ours
  and passes through (the files are deleted then too).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lxml import etree

from gateway.bridges.edxml.b64 import Base64File
from gateway.bridges.edxml.errors import EdxmlError
from gateway.bridges.edxml.limits import (
    CHUNK_BYTES,
    MAX_DEPTH,
    MAX_ELEMENTS,
    MAX_HEADER_BYTES,
    MAX_HEADER_TEXT_CHARS,
)
from gateway.bridges.edxml.scanner import Splitter


@dataclass(frozen=True)
class ContentFile:
    """One ContentTransferEncoded, decoded: the n-th in document order."""

    path: Path
    size: int
    sha256: str


def hardened_parser(**events: object) -> etree.XMLPullParser:
    return etree.XMLPullParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
        **events,  # type: ignore[arg-type]
    )


class _Collector:
    """The splitter's sink: builds the header tree and the content files."""

    def __init__(self, out_dir: Path, max_attachments: int) -> None:
        self.out_dir, self.max_attachments = out_dir, max_attachments
        self.files: list[ContentFile] = []
        self._open: Base64File | None = None
        self._made: list[Path] = []
        self._parser = hardened_parser(events=("start", "end"))
        self._token = secrets.token_hex(6)
        self._markup_bytes = self._elements = self._depth = self._text = 0

    def markup(self, data: bytes) -> None:
        self._markup_bytes += len(data)
        if self._markup_bytes > MAX_HEADER_BYTES:
            raise EdxmlError(
                f"the edXML header (all but attachment content) exceeds {MAX_HEADER_BYTES} bytes"
            )
        try:
            self._parser.feed(data)
        except etree.XMLSyntaxError as exc:
            raise EdxmlError(f"not well-formed XML: {exc.msg}") from None
        self._count(self._parser.read_events())

    def _count(self, events: Iterable[tuple[str, object]]) -> None:
        for event, el in events:
            assert isinstance(el, etree._Element)
            if event == "start":
                self._elements += 1
                self._depth += 1
                if self._elements > MAX_ELEMENTS:
                    raise EdxmlError(f"more than {MAX_ELEMENTS} elements")
                if self._depth > MAX_DEPTH:
                    raise EdxmlError(f"elements nested deeper than {MAX_DEPTH}")
                continue
            self._depth -= 1
            self._text += len(el.text or "") + sum(len(c.tail or "") for c in el)
            if self._text > MAX_HEADER_TEXT_CHARS:
                raise EdxmlError(f"more than {MAX_HEADER_TEXT_CHARS} characters of header text")

    def open_content(self) -> None:
        n = len(self.files) + 1
        if n > self.max_attachments:
            raise EdxmlError(f"more than {self.max_attachments} attachments")
        path = self.out_dir / f"edxml-{self._token}-{n:04d}.part"
        self._made.append(path)
        self._open = Base64File(path, f"attachment {n}")

    def content(self, data: bytes) -> None:
        assert self._open is not None
        self._open.feed(data)

    def close_content(self) -> None:
        assert self._open is not None
        done, self._open = self._open, None
        sha256 = done.finish()
        self.files.append(ContentFile(done.path, done.size, sha256))

    def tree(self) -> etree._Element:
        try:
            root = self._parser.close()
        except etree.XMLSyntaxError as exc:
            raise EdxmlError(f"not well-formed XML: {exc.msg}") from None
        self._count(self._parser.read_events())
        if root is None or not isinstance(root.tag, str):
            raise EdxmlError("not well-formed XML: no root element")
        info = root.getroottree().docinfo
        if info.doctype or info.internalDTD is not None:
            raise EdxmlError("DTDs are not allowed in edXML")
        return root

    def discard(self) -> None:
        if self._open is not None:
            self._open.discard()
        for path in self._made:
            path.unlink(missing_ok=True)


def split_stream(
    source: BinaryIO, out_dir: Path, *, max_attachments: int, max_bytes: int | None = None
) -> tuple[etree._Element, list[ContentFile]]:
    """The header tree of the edXML document read from ``source`` (every
    ContentTransferEncoded left empty) and its decoded contents, in document order.
    Raises :class:`EdxmlError`; on any error the content files are deleted."""
    sink = _Collector(out_dir, max_attachments)
    splitter = Splitter(sink, max_pending=MAX_HEADER_BYTES)
    total = 0
    try:
        while chunk := source.read(CHUNK_BYTES):
            total += len(chunk)
            if max_bytes is not None and total > max_bytes:
                raise EdxmlError(f"edXML document exceeds {max_bytes} bytes")
            splitter.feed(chunk)
        if total == 0:
            raise EdxmlError("not well-formed XML: the document is empty")
        splitter.close()
        return sink.tree(), sink.files
    except EdxmlError:
        sink.discard()
        raise
    except (etree.LxmlError, ValueError, TypeError, UnicodeError, LookupError) as exc:
        sink.discard()
        raise EdxmlError(f"not acceptable edXML: {exc}") from None
    except BaseException:
        sink.discard()
        raise
