"""Base64 decoded to a file, chunk by chunk.

Rules:
- The file is new and ours: created with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600.
- Whitespace (line wrapping) is dropped; fewer than four characters are carried to the
  next chunk; anything else than the base64 alphabet, or data after the padding, is an
  :class:`EdxmlError`. At most one chunk is held in memory.
- Size and SHA-256 of the decoded bytes are computed as they are written.
"""

from __future__ import annotations

import binascii
import hashlib
import os
from pathlib import Path

from gateway.bridges.edxml.errors import EdxmlError

_WHITESPACE = b" \t\r\n"
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_FLAGS |= getattr(os, "O_CLOEXEC", 0)


def create_private(path: Path) -> int:
    """A new file at ``path`` (0600, never through a symlink); its descriptor."""
    return os.open(path, _FLAGS, 0o600)


class Base64File:
    """Decodes base64 text fed in pieces into a new file at ``path``."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what
        self.size = 0
        self._hash = hashlib.sha256()
        self._carry = b""
        self._padded = False
        self._file = os.fdopen(create_private(path), "wb")

    def feed(self, text: bytes) -> None:
        compact = text.translate(None, _WHITESPACE)
        if not compact:
            return
        if self._padded:
            raise EdxmlError(f"{self.what}: base64 goes on after its padding")
        data = self._carry + compact
        cut = len(data) - len(data) % 4
        self._carry = data[cut:]
        if cut:
            self._decode(data[:cut])

    def _decode(self, chunk: bytes) -> None:
        try:
            out = binascii.a2b_base64(chunk, strict_mode=True)
        except binascii.Error:
            raise EdxmlError(f"{self.what}: ContentTransferEncoded is not base64") from None
        self._padded = chunk.endswith(b"=")
        self._file.write(out)
        self._hash.update(out)
        self.size += len(out)

    def finish(self) -> str:
        """Close the file; the hex SHA-256. Raises if base64 characters are left over."""
        self._file.close()
        if self._carry:
            raise EdxmlError(f"{self.what}: base64 text ends with a truncated group")
        return self._hash.hexdigest()

    def discard(self) -> None:
        """Close and delete the file (after an error)."""
        self._file.close()
        self.path.unlink(missing_ok=True)
