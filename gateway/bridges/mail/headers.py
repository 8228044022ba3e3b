"""Text from a sealed header made safe for a mail header. Pure.

A remote site chooses the subject and the part names of what it seals; at the
destination they become ``Subject:`` and the ``filename`` of each attachment. The
``email`` package is no safe door for them: it *decodes* an RFC 2047 encoded word
it is handed (``=?utf-8?q?x=0D=0ABcc:_y?=``) and writes the CR LF it found raw, which
adds a header, and it refuses (raises) a value holding a Unicode line break (U+2028,
NEL). So:

Rules:
- Characters that break a line or steer the display are replaced by U+FFFD:
  C0/C1 controls, DEL, the Unicode line and paragraph separators, the bidi marks
  (ALM, LRM, RLM), embedding, override and isolate controls
  (``invoice\\u202efdp.exe``) and lone surrogates: the set inbox file names lose
  too, one definition (gateway/relay/envelope_io.py ``DISPLAY_UNSAFE_CHARS``).
- A subject is written by :func:`subject_header` itself, never parsed by ``email``:
  as it is when it is short printable ASCII holding no ``=?``; otherwise as base64
  encoded words (RFC 2047, UTF-8), each at most 75 characters, a character never cut
  in two, folded one per line. A reader decodes them once and sees the text as sent.
- A file name (:func:`safe_filename`) also loses ``/ \\ : * ? " < > |`` (so that it
  holds no path, encoded word or quoting: the set gateway/relay/envelope_io.py's
  ``safe_name`` takes out of inbox file names) and is capped at MAX_FILENAME_CHARS.
"""

from __future__ import annotations

import base64
import re

from gateway.relay.envelope_io import DISPLAY_UNSAFE_CHARS

PLAIN_SUBJECT_CHARS = 200  # longer ASCII subjects are encoded (and so folded)
WORD_BYTES = 42  # UTF-8 bytes per word: 12 + 56 base64 characters, 77 with "Subject: "
MAX_FILENAME_CHARS = 200
REPLACEMENT = "\ufffd"
_UNSAFE_TEXT = re.compile(f"[{DISPLAY_UNSAFE_CHARS}]")
_UNSAFE_NAME = re.compile(r'[/\\:*?"<>|]')
_PLAIN = re.compile(r"[\x20-\x7e]*")


def clean_text(text: str) -> str:
    """``text`` with every line-breaking or display-steering character replaced."""
    return _UNSAFE_TEXT.sub(REPLACEMENT, text)


def _words(text: str) -> list[str]:
    words: list[str] = []
    chunk = b""
    for char in text:
        data = char.encode("utf-8")
        if len(chunk) + len(data) > WORD_BYTES:
            words.append(chunk.decode("utf-8", "replace"))
            chunk = b""
        chunk += data
    if chunk or not words:
        words.append(chunk.decode("utf-8", "replace"))
    return words


def encoded_words(text: str) -> str:
    """``text`` as base64 encoded words (RFC 2047), folded: one word per line."""
    return "\r\n ".join(
        f"=?utf-8?b?{base64.b64encode(w.encode('utf-8')).decode('ascii')}?=" for w in _words(text)
    )


def subject_header(subject: str) -> str:
    """The value of a ``Subject:`` line for ``subject`` (no line ending)."""
    text = clean_text(subject)
    if len(text) <= PLAIN_SUBJECT_CHARS and "=?" not in text and _PLAIN.fullmatch(text):
        return text
    return encoded_words(text)


def safe_filename(name: str) -> str:
    """``name`` as an attachment's file name: no line break, quote or encoded word."""
    cleaned = _UNSAFE_NAME.sub("_", clean_text(name)).strip()
    return cleaned[:MAX_FILENAME_CHARS] or "part"
