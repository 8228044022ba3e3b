"""Every limit of the edXML bridge, named with its unit.

Rules:
- The streaming parser holds at most MAX_HEADER_BYTES of markup (everything but
  attachment content) and one read chunk at a time; attachment content goes to disk.
- Counters are ours, not libxml2's: elements, depth and header text are counted as
  the document streams in, and the document is refused at the first one past its limit.
"""

from __future__ import annotations

from envelope.limits import MAX_PARTS

# Read size of the streaming parser (bytes).
CHUNK_BYTES = 64 * 1024
# Everything that is not ContentTransferEncoded text: tags, attributes, header text,
# whitespace, comments (bytes). Real headers are 2-30 KB.
MAX_HEADER_BYTES = 4 * 1024 * 1024
# Text content outside attachments, all elements together (characters).
MAX_HEADER_TEXT_CHARS = 1024 * 1024
MAX_ELEMENTS = 10_000
MAX_DEPTH = 24
# Attachments in one document when the caller names no other bound: one sealed part
# each, and the kept header is one more part.
MAX_ATTACHMENTS = MAX_PARTS - 1
# Bounded unzip defaults (an operator may pass others).
UNZIP_MAX_TOTAL_BYTES = 512 * 1024 * 1024
UNZIP_MAX_ENTRIES = 64
UNZIP_MAX_RATIO = 200
