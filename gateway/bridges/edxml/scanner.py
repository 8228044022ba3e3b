"""Splits an edXML byte stream into markup and attachment content, chunk by chunk.

libxml2 holds a text node whole (and refuses one over 10 MB without huge-tree mode),
and a parser target loses the prefixes a faithful header needs. So the stream is cut
before it reaches the parser: the text of every ``ContentTransferEncoded`` element
goes to the sink as content (to be base64-decoded to disk), everything else goes to
the sink as markup, unchanged, for one hardened lxml parser to build the header tree.

Rules:
- A token (tag, comment, processing instruction, CDATA section) is held until it is
  complete, and at most ``max_pending`` bytes are held; text and content pass through
  as they come. An unfinished token is not scanned again from its start when more
  bytes come: the scan resumes where it stopped (inside or outside a quoted
  attribute value), so scanning is linear in the input.
- ``<!`` other than a comment or CDATA section (DOCTYPE, ENTITY, ELEMENT, ATTLIST) is
  refused here, before any parser sees it; so is an encoding other than UTF-8.
- Inside ``ContentTransferEncoded`` only text is allowed, and of references only
  whitespace character references (``&#13;``, ``&#xA;`` ...): markup or any other
  reference there is refused. Every element whose local name is
  ``ContentTransferEncoded`` is cut so; the tree tells later where it stood.
- Anything else that is not well-formed is passed on for libxml2 to refuse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from gateway.bridges.edxml.errors import EdxmlError
from gateway.bridges.edxml.names import CONTENT

_CONTENT_STOP = re.compile(rb"[<&]")
_WHITESPACE_REF = re.compile(rb"&#(?:x0*(?:9|a|A|d|D|20)|0*(?:9|10|13|32));")
_TAG_STOP = re.compile(rb"[\"'>]")
_NAME = re.compile(rb"[^\s/>]+")
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([^"']*)["']""")
_CDATA = b"<![CDATA["
_COMMENT = b"<!--"
# What the rest of a read may be while a whitespace reference is still coming: any
# prefix of one (zero padding included), so where a read ends never decides.
_REF_PREFIX = re.compile(rb"&(?:#(?:x0*[0-9a-fA-F]{0,2}|0*[0-9]{0,2})?)?")
_END_TAG_WAIT = 1024  # bytes to wait for the ">" of the closing tag before refusing


class Sink(Protocol):
    def markup(self, data: bytes) -> None: ...
    def open_content(self) -> None: ...
    def content(self, data: bytes) -> None: ...
    def close_content(self) -> None: ...


@dataclass
class _Resume:
    """Where the scan of the unfinished token at the buffer's start goes on."""

    at: int = 0  # offset from the token's "<": everything before it is scanned
    quote: bytes = b""  # inside an attribute value opened by this quote ("" outside)


class Splitter:
    """Feed bytes in; the sink gets markup and content in document order."""

    def __init__(self, sink: Sink, *, max_pending: int) -> None:
        self._sink, self._max_pending = sink, max_pending
        self._buf = b""
        self._end_tag: re.Pattern[bytes] | None = None
        self._first = True
        self._resume = _Resume()

    def feed(self, chunk: bytes) -> None:
        if self._first and chunk:
            self._first = False
            check_utf8_start(chunk)
        self._buf += chunk
        self._run(final=False)

    def close(self) -> None:
        self._run(final=True)
        if self._end_tag is not None:
            raise EdxmlError("not well-formed XML: the document ends inside ContentTransferEncoded")
        if self._buf:
            self._sink.markup(self._buf)
            self._buf = b""

    def _run(self, *, final: bool) -> None:
        buf, pos = self._buf, 0
        while pos < len(buf):
            step = (
                self._content(buf, pos, final) if self._end_tag else self._markup(buf, pos, final)
            )
            if step < 0:
                break
            pos = step
        self._buf = buf[pos:]
        if len(self._buf) > self._max_pending:
            raise EdxmlError(f"a markup token longer than {self._max_pending} bytes")

    # Each step returns the position after what it consumed, or -1 to wait for more.

    def _content(self, buf: bytes, pos: int, final: bool) -> int:
        stop = _CONTENT_STOP.search(buf, pos)
        if stop is None:
            self._sink.content(buf[pos:])
            return len(buf)
        if stop.start() > pos:
            self._sink.content(buf[pos : stop.start()])
            return stop.start()
        if buf[pos] == ord("&"):
            ref = _WHITESPACE_REF.match(buf, pos)
            if ref is not None:
                return ref.end()
            if not final and _REF_PREFIX.fullmatch(buf, pos) is not None:
                return -1
            raise EdxmlError("ContentTransferEncoded holds a reference; only base64 is allowed")
        assert self._end_tag is not None
        end = self._end_tag.match(buf, pos)
        if end is not None:
            self._sink.close_content()
            self._sink.markup(buf[pos : end.end()])
            self._end_tag = None
            return end.end()
        if not final and b">" not in buf[pos : pos + _END_TAG_WAIT]:
            return -1
        raise EdxmlError("ContentTransferEncoded holds markup; only base64 text is allowed")

    def _markup(self, buf: bytes, pos: int, final: bool) -> int:
        lt = buf.find(b"<", pos)
        if lt < 0:
            self._sink.markup(buf[pos:])
            return len(buf)
        if lt > pos:
            self._sink.markup(buf[pos:lt])
            return lt
        end = _token_end(buf, pos, final, self._resume)
        if end < 0:
            if final:  # an unfinished token: libxml2 says what is wrong with it
                self._sink.markup(buf[pos:])
                return len(buf)
            return -1
        self._resume = _Resume()
        token = buf[pos:end]
        if token.startswith(b"<?xml") and token[5:6].isspace():
            _check_encoding(token)
        self._sink.markup(token)
        name = _NAME.match(token, 1) if token[1:2] not in (b"/", b"!", b"?") else None
        if name is not None and name.group().rsplit(b":", 1)[-1] == CONTENT.encode():
            self._sink.open_content()
            if token.endswith(b"/>"):
                self._sink.close_content()
            else:
                self._end_tag = re.compile(rb"</" + re.escape(name.group()) + rb"\s*>")
        return end


def _token_end(buf: bytes, pos: int, final: bool, resume: _Resume) -> int:
    """The end of the markup token at ``pos`` (a ``<``), or -1 if it is not all here;
    then ``resume`` says where to go on when more bytes come (the token will start
    the buffer: offsets are from its ``<``)."""
    head = buf[pos : pos + len(_CDATA)]
    if head.startswith(_COMMENT):
        return _find_end(buf, pos, b"-->", len(_COMMENT), resume)
    if head.startswith(_CDATA):
        return _find_end(buf, pos, b"]]>", len(_CDATA), resume)
    if head.startswith(b"<!"):
        partial = _CDATA.startswith(head) or _COMMENT.startswith(head[:4])
        if partial and not final:
            return -1
        raise EdxmlError(
            "DTD and entity declarations (DOCTYPE, ENTITY, ELEMENT, ATTLIST) are not allowed"
            " in edXML"
        )
    if head.startswith(b"<?"):
        return _find_end(buf, pos, b"?>", 2, resume)
    if len(head) < 2:
        return -1
    i, quote = pos + max(1, resume.at), resume.quote
    while True:
        if quote:
            close = buf.find(quote, i)
            if close < 0:
                resume.at, resume.quote = len(buf) - pos, quote
                return -1
            i, quote = close + 1, b""
        stop = _TAG_STOP.search(buf, i)
        if stop is None:
            resume.at, resume.quote = len(buf) - pos, b""
            return -1
        if buf[stop.start()] == ord(">"):
            return stop.end()
        i, quote = stop.end(), buf[stop.start() : stop.end()]


def _find_end(buf: bytes, pos: int, end: bytes, skip: int, resume: _Resume) -> int:
    """The end of a token closed by ``end``, searched from ``skip`` bytes in or where
    the last search stopped (less what could be the start of ``end``)."""
    found = buf.find(end, pos + max(skip, resume.at))
    if found < 0:
        resume.at = max(skip, len(buf) - pos - (len(end) - 1))
        return -1
    return found + len(end)


def check_utf8_start(start: bytes) -> None:
    """Refuse a document whose first bytes say UTF-16 or UTF-32 (a BOM, or a NUL)."""
    if start[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in start[:4]:
        raise EdxmlError("edXML must be UTF-8 (the document is UTF-16 or UTF-32)")


def check_declaration(data: bytes) -> None:
    """Refuse a document whose XML declaration names an encoding other than UTF-8."""
    start = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    if start.startswith(b"<?xml") and start[5:6].isspace():
        end = start.find(b"?>")
        _check_encoding(start[: end + 2] if end >= 0 else start[:200])


def _check_encoding(declaration: bytes) -> None:
    found = _ENCODING.search(declaration)
    if found is not None and found.group(1).lower() not in (b"utf-8", b"utf8"):
        name = found.group(1).decode("ascii", "replace")[:20]
        raise EdxmlError(f"edXML must be UTF-8, not {name}")
