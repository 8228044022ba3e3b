"""Strict readers for what a client writes in a URL or a header: counts, times, cursors.

Rules:
- Every route reads its integers, times and cursors here, and nowhere else.
- A count is ASCII digits only (``str.isdigit`` also takes "²" and "٣"), no sign,
  no spaces, no leading zero (one spelling per number: /parts/00 is not a second
  name of /parts/0), at most MAX_COUNT_DIGITS of them, within the caller's bounds.
- A time is RFC 3339 (the OpenAPI ``date-time`` format) with its zone, and it must
  stay a real moment once in UTC: "9999-12-31T23:59:59-14:00" is past what Python's
  datetime holds, and is refused here instead of overflowing in a later step.
- A cursor is what :func:`cursor_of` gave: microseconds since the epoch (at most
  MAX_CURSOR_DIGITS digits, so every one is a representable moment), "_", and a
  message id. Anything matching CURSOR_PATTERN is a cursor the API can use, so the
  OpenAPI document states it exactly.
- Every refusal raises :class:`ParamError`, a one-line message in our own words.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from envelope.values import MESSAGE_ID_RE

MAX_COUNT_DIGITS = 9
MAX_CURSOR_DIGITS = 17  # 10**17 microseconds after 1970 is in year 5138: always a datetime
CURSOR_PATTERN = rf"^(?:0|[1-9][0-9]{{0,{MAX_CURSOR_DIGITS - 1}}})_{MESSAGE_ID_RE.pattern}$"
_CURSOR_RE = re.compile(CURSOR_PATTERN)
_COUNT_RE = re.compile(rf"0|[1-9][0-9]{{0,{MAX_COUNT_DIGITS - 1}}}")
# RFC 3339 section 5.6 date-time; the leap second 60 is refused below with the rest.
TIME_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_TIME_RE = re.compile(TIME_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ParamError(ValueError):
    """A parameter a client got wrong. One line, in the API's words."""


def parse_count(text: str, low: int, high: int, what: str) -> int:
    """``text`` as an integer ``low``..``high``. Raises :class:`ParamError`."""
    if _COUNT_RE.fullmatch(text) is None or not low <= int(text) <= high:
        raise ParamError(f"{what} must be an integer {low}..{high}")
    return int(text)


def parse_time(text: str, what: str) -> datetime:
    """``text`` (RFC 3339, with a zone) as an aware UTC datetime, to the microsecond.
    Raises :class:`ParamError`."""
    if _TIME_RE.fullmatch(text) is None:
        raise ParamError(f"{what} must be an RFC 3339 time with a zone, e.g. 2030-01-31T12:00:00Z")
    date, _, rest = text.upper().partition("T")
    clock, zone = (rest[:-1], "+00:00") if rest.endswith("Z") else (rest[:-6], rest[-6:])
    whole, _, fraction = clock.partition(".")
    try:
        hh, mm = int(zone[1:3]), int(zone[4:6])
        if hh > 23 or mm > 59:
            raise ValueError(zone)
        offset = timedelta(hours=hh, minutes=mm) * (-1 if zone[0] == "-" else 1)
        local = datetime.fromisoformat(f"{date}T{whole}").replace(
            microsecond=int((fraction + "000000")[:6]), tzinfo=UTC
        )
        return local - offset  # OverflowError past year 9999 or before year 1
    except (ValueError, OverflowError):
        raise ParamError(f"{what} {text!r} is not a real moment") from None


def cursor_of(received: datetime, message_id: str) -> str:
    """The cursor that resumes after (``received``, ``message_id``)."""
    micros = (received - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}_{message_id}"


def parse_cursor(text: str) -> tuple[datetime, str]:
    """(received, message id) of a cursor. Raises :class:`ParamError`."""
    if _CURSOR_RE.fullmatch(text) is None:
        raise ParamError("the cursor is not one this API gave")
    micros, _, message_id = text.partition("_")
    return _EPOCH + timedelta(microseconds=int(micros)), message_id
