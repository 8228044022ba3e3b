"""The small values of the format: site ids, message ids, times, tokens.

Each ``check_*`` function returns its argument unchanged or raises
:class:`SchemaError` (the value came from a document) — callers building a new
envelope convert that into :class:`UsageError`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum

from envelope.errors import SchemaError

SITE_ID_RE = re.compile(r"[A-Z][A-Z0-9-]{1,31}")
MESSAGE_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
KEY_ID_RE = re.compile(r"[0-9a-f]{32}")
DOC_CLASS_RE = re.compile(r"[a-z][a-z0-9-]{0,63}")
DOSSIER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:-]{0,127}")
TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
DEFAULT_CLASS = "document"


class Priority(StrEnum):
    """Message precedence, highest first (the diplomatic precedence ladder)."""

    FLASH = "flash"
    IMMEDIATE = "immediate"
    PRIORITY = "priority"
    ROUTINE = "routine"


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise SchemaError(f"{what} {value!r} is not valid")
    return value


def check_site_id(value: str) -> str:
    return _check(SITE_ID_RE, value, "site id")


def check_message_id(value: str) -> str:
    return _check(MESSAGE_ID_RE, value, "message id")


def check_key_id(value: str) -> str:
    return _check(KEY_ID_RE, value, "key id")


def check_doc_class(value: str) -> str:
    return _check(DOC_CLASS_RE, value, "document class")


def check_dossier(value: str) -> str:
    return _check(DOSSIER_RE, value, "dossier id")


def check_priority(value: str) -> Priority:
    try:
        return Priority(value)
    except ValueError:
        raise SchemaError(
            f"priority {value!r} is not one of flash, immediate, priority, routine"
        ) from None


def format_time(moment: datetime) -> str:
    """Second-precision UTC, the only time form of the format."""
    if moment.tzinfo is None:
        raise SchemaError("times must carry a time zone")
    m = moment.astimezone(UTC)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}Z"


def parse_time(text: str, what: str = "time") -> datetime:
    if TIME_RE.fullmatch(text) is None:
        raise SchemaError(f"{what} {text!r} is not of the form YYYY-MM-DDTHH:MM:SSZ")
    try:
        return datetime(
            int(text[0:4]),
            int(text[5:7]),
            int(text[8:10]),
            int(text[11:13]),
            int(text[14:16]),
            int(text[17:19]),
            tzinfo=UTC,
        )
    except ValueError:
        raise SchemaError(f"{what} {text!r} is not a real date") from None


def truncate_to_second(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def new_message_id(moment: datetime, random_bytes: bytes) -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then 74 random bits."""
    if len(random_bytes) < 10:
        raise ValueError("a UUIDv7 needs 10 random bytes")
    millis = int(moment.timestamp() * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(random_bytes[:10], "big")
    rand_a = (rand >> 68) & 0xFFF
    rand_b = rand & ((1 << 62) - 1)
    value = (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
