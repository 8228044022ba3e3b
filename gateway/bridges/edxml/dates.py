"""Dates as edXML writes them, read without guessing.

Rules:
- Accepted: ``yyyy/MM/dd`` and ``yyyy-MM-dd`` (year first: the SDK and ISO), and
  ``dd/MM/yyyy`` or ``dd-MM-yyyy`` (year last: the Vietnamese order, as Bkav writes
  PromulgationDate). A date with the year last is always day first: Vietnam does not
  write ``MM/dd``, so ``10/30/2020`` is refused (month 30), never read as 30 October.
- Any of them may carry a time ``HH:mm[:ss[.fff]]`` after a space or ``T`` and a zone
  ``Z`` / ``±HH:MM``; without a zone the time is Vietnam time (UTC+07:00).
- A value that is none of these raises :class:`EdxmlError`; the caller decides whether
  the field matters (a bad DueDate is ignored and noted, see EDXML.md).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone

from gateway.bridges.edxml.errors import EdxmlError

VIETNAM = timezone(timedelta(hours=7), "ICT")
_SEP = r"[/-]"
_TIME = r"(?:[ T](?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.\d{1,9})?)?)?"
_ZONE = r"\s*(?P<z>Z|[+-]\d{2}:?\d{2})?"
_YEAR_FIRST = re.compile(
    rf"(?P<y>\d{{4}}){_SEP}(?P<m>\d{{1,2}}){_SEP}(?P<d>\d{{1,2}}){_TIME}{_ZONE}"
)
_YEAR_LAST = re.compile(
    rf"(?P<d>\d{{1,2}}){_SEP}(?P<m>\d{{1,2}}){_SEP}(?P<y>\d{{4}}){_TIME}{_ZONE}"
)


def _match(value: str) -> re.Match[str]:
    text = value.strip()
    found = _YEAR_FIRST.fullmatch(text) or _YEAR_LAST.fullmatch(text)
    if found is None:
        raise EdxmlError(f"{value[:40]!r} is not a date (yyyy/MM/dd, dd/MM/yyyy or ISO)")
    return found


def _zone(found: re.Match[str]) -> timezone:
    z = found["z"]
    if not z:
        return VIETNAM
    if z == "Z":
        return UTC
    sign = -1 if z[0] == "-" else 1
    hours, minutes = int(z[1:3]), int(z[-2:])
    if hours > 23 or minutes > 59:
        raise EdxmlError(f"{z!r} is not a time zone")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def parse_datetime(value: str) -> datetime:
    """``value`` as an aware datetime (Vietnam time when it names no zone; midnight
    when it has no time). Raises :class:`EdxmlError`."""
    found = _match(value)
    try:
        day = date(int(found["y"]), int(found["m"]), int(found["d"]))
        at = time(int(found["h"] or 0), int(found["mi"] or 0), int(found["s"] or 0))
    except ValueError:
        raise EdxmlError(f"{value[:40]!r} is not a date (no such day or time)") from None
    return datetime.combine(day, at, tzinfo=_zone(found))


def parse_date(value: str) -> date:
    """The calendar day ``value`` names, as written (a time or zone is dropped).
    Raises :class:`EdxmlError`."""
    return parse_datetime(value).date()


def format_date(day: date) -> str:
    """``yyyy/MM/dd``, as the SDK writes dates."""
    return f"{day.year:04d}/{day.month:02d}/{day.day:02d}"


def format_timestamp(at: datetime) -> str:
    """``yyyy/MM/dd HH:mm:ss`` in Vietnam time, as the SDK writes TraceHeader/Timestamp."""
    local = at.astimezone(VIETNAM)
    return f"{format_date(local.date())} {local:%H:%M:%S}"


def end_of_day(day: date) -> datetime:
    """23:59:59 of ``day``, Vietnam time: the end of a DueDate."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=VIETNAM)
