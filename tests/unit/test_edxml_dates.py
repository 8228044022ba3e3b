"""edXML dates: the formats the real files write, read without guessing; DueDate to
expires."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.bridges import edxml
from gateway.bridges.edxml.dates import end_of_day, format_date, format_timestamp

VN = edxml.VIETNAM


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2019/04/11", datetime(2019, 4, 11, tzinfo=VN)),  # the SDK
        ("2019-04-11", datetime(2019, 4, 11, tzinfo=VN)),  # ISO
        ("2019/4/1", datetime(2019, 4, 1, tzinfo=VN)),
        ("30/10/2020", datetime(2020, 10, 30, tzinfo=VN)),  # Bkav: dd/MM/yyyy
        ("01/02/2020", datetime(2020, 2, 1, tzinfo=VN)),  # year last: always day first
        ("30-10-2020", datetime(2020, 10, 30, tzinfo=VN)),
        ("2018/09/28 17:25:11", datetime(2018, 9, 28, 17, 25, 11, tzinfo=VN)),  # Timestamp
        ("2018/09/28 17:25", datetime(2018, 9, 28, 17, 25, tzinfo=VN)),
        ("2025-10-23T16:28:42Z", datetime(2025, 10, 23, 16, 28, 42, tzinfo=UTC)),
        ("2025-10-23T16:28:42+07:00", datetime(2025, 10, 23, 16, 28, 42, tzinfo=VN)),
        (
            "2025-10-23T16:28:42.123-0130",
            datetime(2025, 10, 23, 16, 28, 42, tzinfo=timezone(-timedelta(hours=1, minutes=30))),
        ),
        (" 2019/04/11 ", datetime(2019, 4, 11, tzinfo=VN)),
    ],
)
def test_dates_the_real_files_write(text: str, want: datetime) -> None:
    got = edxml.parse_datetime(text)
    assert got == want and got.utcoffset() == want.utcoffset()
    assert edxml.parse_date(text) == want.date()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "10/30/2020",  # MM/dd/yyyy: not Vietnamese, refused rather than misread
        "2019/13/01",
        "2014/02/30",  # as some sample Bussiness/DocumentIds write it
        "31/04/2020",
        "19/04/11",  # two-digit year: ambiguous
        "2019/04/11 25:00:00",
        "2019/04/11+99:00",
        "2019.04.11",
        "2019/04/11x",
    ],
)
def test_garbage_is_refused_with_edxml_error(text: str) -> None:
    with pytest.raises(edxml.EdxmlError, match=r"not a date|time zone"):
        edxml.parse_datetime(text)


@given(st.text(max_size=40))
def test_any_text_is_a_date_or_edxml_error(text: str) -> None:
    try:
        edxml.parse_datetime(text)
    except edxml.EdxmlError as exc:
        assert "\n" not in str(exc)


@given(st.dates(min_value=date(1000, 1, 1)))
def test_format_and_parse_round_trip(day: date) -> None:
    assert edxml.parse_date(format_date(day)) == day


def test_timestamps_are_written_in_vietnam_time() -> None:
    assert format_timestamp(datetime(2026, 12, 1, 20, 0, tzinfo=UTC)) == "2026/12/02 03:00:00"
    assert end_of_day(date(2026, 1, 31)).isoformat() == "2026-01-31T23:59:59+07:00"


def _doc_due(due: str) -> edxml.EdxmlDocument:
    ns = edxml.NS
    data = f"""<edXML:edXMLEnvelope xmlns:edXML="{ns}"><edXML:edXMLHeader><edXML:MessageHeader>
<edXML:From><edXML:OrganId>A</edXML:OrganId></edXML:From><edXML:To><edXML:OrganId>B</edXML:OrganId></edXML:To>
<edXML:DueDate>{due}</edXML:DueDate></edXML:MessageHeader></edXML:edXMLHeader></edXML:edXMLEnvelope>"""
    return edxml.parse_edxml(data.encode(), max_bytes=1 << 16)


def test_expires_uses_the_due_date_only_when_later_than_the_default() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    month = timedelta(days=30)
    far = _doc_due("2027/03/31")
    assert edxml.expires(far, now, month) == datetime(2027, 3, 31, 23, 59, 59, tzinfo=VN)
    assert edxml.expires(_doc_due("15/12/2026"), now, month) is None  # sooner: the default
    assert edxml.expires(_doc_due("15/12/2026"), now, timedelta(days=1)) is not None
    assert edxml.expires(_doc_due(""), now, month) is None
    odd = _doc_due("31/02/2027")
    assert odd.due_date is None and odd.due_date_text == "31/02/2027"
    assert odd.notes and "DueDate ignored" in odd.notes[0]
    assert edxml.expires(odd, now, month) is None
