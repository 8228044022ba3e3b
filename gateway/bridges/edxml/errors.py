"""The errors of the edXML bridge.

Rules:
- Every refusal of a peer's document (or of a kept header or ZIP part) is an
  :class:`EdxmlError` whose message is one line saying why; nothing else escapes the
  parsers for bad input. Local I/O failures (a full disk) stay ``OSError``: they are
  ours, not the sender's.
"""

from __future__ import annotations


class EdxmlError(ValueError):
    """The bytes are not an edXML document this gateway accepts. One line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class ZipBombError(EdxmlError):
    """A ZIP attachment this gateway will not unpack: more entries, more bytes or a
    higher compression ratio than allowed, an encrypted entry, or an unreadable
    archive. One line."""
