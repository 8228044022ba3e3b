"""Every limit of format v1, named, with its unit. Each is tested at N-1, N and N+1.

Rules: a parser checks the byte limits before it allocates by them; counts are
checked before the schema so that an oversized document fails fast and says why.
"""

from __future__ import annotations

# Framing.
MAX_HEAD_XML_BYTES = 1024 * 1024
MAX_SEALED_HEADER_BYTES = 256 * 1024
MAX_PUBLIC_KEY_DOC_BYTES = 16 * 1024
MAX_PART_BYTES = 2**40

# XML shape (every document Valise parses).
MAX_XML_DEPTH = 6
MAX_XML_ELEMENTS = 2048
MAX_XML_TEXT_CHARS = 4096
MAX_XML_ATTRIBUTE_CHARS = 256
MAX_XML_ATTRIBUTES = 8

# Content.
MAX_DESTINATIONS = 256
MAX_RECIPIENT_STANZAS = 256
MAX_PARTS = 256
MAX_HOPS = 16
MAX_SUBJECT_CHARS = 998
MAX_NAME_BYTES = 255
MAX_ORIGINATOR_CHARS = 320
