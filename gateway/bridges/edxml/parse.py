"""The two doors in: an edXML file streamed to disk, or bytes in memory.

Rules:
- Both raise :class:`EdxmlError` (one line) for any input, and nothing else but
  ``OSError`` for local I/O trouble; property tests hold them to that.
- What is accepted can be read back: the kept header (``header_xml``, the tree
  written again, which escaping can make longer than the markup it came from) is
  read as the receiver reads it (skeleton.declared_parts, with its MAX_HEADER_BYTES
  and hardening) and must describe the same attachments, or the document is refused.
- :func:`parse_edxml_file` leaves one new file per attachment in ``out_dir`` (named
  by it, 0600) and deletes them itself when it refuses the document; after success
  they are the caller's.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from lxml import etree

from gateway.bridges.edxml.errors import EdxmlError
from gateway.bridges.edxml.limits import MAX_ATTACHMENTS, MAX_HEADER_BYTES
from gateway.bridges.edxml.model import DeclaredPart, EdxmlDocument
from gateway.bridges.edxml.reader import read_document
from gateway.bridges.edxml.skeleton import declared_parts
from gateway.bridges.edxml.stream import ContentFile, split_stream


def _read(root: etree._Element, files: Sequence[ContentFile], keep_data: bool) -> EdxmlDocument:
    try:
        doc = read_document(root, files, keep_data=keep_data)
        _check_read_back(doc)
        return doc
    except EdxmlError:
        raise
    except (etree.LxmlError, ValueError, TypeError, UnicodeError, LookupError) as exc:
        raise EdxmlError(f"not acceptable edXML: {exc}") from None


def _check_read_back(doc: EdxmlDocument) -> None:
    """The receiver reads the kept header as the sender did (see the rules)."""
    if len(doc.header_xml) > MAX_HEADER_BYTES:
        raise EdxmlError(
            f"the edXML header, written back with its escapes, is {len(doc.header_xml)} bytes,"
            f" more than {MAX_HEADER_BYTES}"
        )
    sent = tuple(
        DeclaredPart(a.content_id, a.name, a.description, a.media_type, a.declared_types)
        for a in doc.attachments
    )
    if declared_parts(doc.header_xml) != sent:
        raise EdxmlError("the kept edXML header would describe its attachments differently")


def _parse(
    raw: BinaryIO, out_dir: Path, max_attachments: int, max_bytes: int | None, keep_data: bool
) -> EdxmlDocument:
    root, files = split_stream(raw, out_dir, max_attachments=max_attachments, max_bytes=max_bytes)
    try:
        return _read(root, files, keep_data)
    except BaseException:
        for f in files:
            f.path.unlink(missing_ok=True)
        raise


def parse_edxml_file(
    source: Path, out_dir: Path, *, max_attachments: int, max_bytes: int | None = None
) -> EdxmlDocument:
    """Parse the edXML document in ``source``, each attachment decoded into a new file
    in ``out_dir`` (``Attachment.path``). Memory stays bounded whatever the size.
    Raises :class:`EdxmlError`."""
    with open(source, "rb") as raw:
        return _parse(raw, out_dir, max_attachments, max_bytes, keep_data=False)


def parse_edxml(
    data: bytes,
    *,
    max_bytes: int,
    out_dir: Path | None = None,
    max_attachments: int = MAX_ATTACHMENTS,
) -> EdxmlDocument:
    """Parse an edXML document held in memory. With ``out_dir`` the attachments are
    files there (as :func:`parse_edxml_file`); without, their bytes are in
    ``Attachment.data`` and no file is left. Raises :class:`EdxmlError`."""
    if len(data) > max_bytes:
        raise EdxmlError(f"edXML document of {len(data)} bytes exceeds {max_bytes}")
    if out_dir is not None:
        return _parse(io.BytesIO(data), out_dir, max_attachments, None, keep_data=False)
    with tempfile.TemporaryDirectory(prefix="valise-edxml-") as scratch:
        return _parse(io.BytesIO(data), Path(scratch), max_attachments, None, keep_data=True)
