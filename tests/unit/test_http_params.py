"""The HTTP API's strict readers, the expiry bound, and the document agreeing with both."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.bridges.http.openapi import document
from gateway.bridges.http.params import (
    MAX_COUNT_DIGITS,
    ParamError,
    cursor_of,
    parse_count,
    parse_cursor,
    parse_time,
)
from gateway.bridges.integrators import IntegratorError, check_idempotency_key
from gateway.relay.submit import ExpiresRefused, check_expires

MID = "01a24e0f-660a-76cd-be02-c0b7af5d9d3e"


@pytest.mark.parametrize("text", ["²", "٣", "+5", "-1", " 5", "5 ", "0x5", "", "1_0", "5\n"])
def test_a_count_is_ascii_digits_only(text: str) -> None:
    with pytest.raises(ParamError):
        parse_count(text, 0, 500, "limit")


@pytest.mark.parametrize("text", ["00", "01", "007", "0" * MAX_COUNT_DIGITS])
def test_a_count_has_one_spelling_no_leading_zero(text: str) -> None:
    """/parts/00 and /parts/0 would be two names of one resource."""
    with pytest.raises(ParamError):
        parse_count(text, 0, 500, "a part number")


def test_a_count_at_its_bounds() -> None:
    assert parse_count("1", 1, 500, "limit") == 1 and parse_count("500", 1, 500, "limit") == 500
    assert parse_count("0", 0, 500, "a part number") == 0
    for text in ("0", "501", "9" * (MAX_COUNT_DIGITS + 1)):
        with pytest.raises(ParamError, match=r"1\.\.500"):
            parse_count(text, 1, 500, "limit")


@pytest.mark.parametrize(
    "text",
    [
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "2030-02-30T00:00:00Z",
        "2030-01-01T24:00:00Z",
        "2030-01-01T23:59:60Z",
        "2030-01-01T00:00:00+24:00",
        "2030-01-01T00:00:00",
        "2030-01-01 00:00:00Z",
        "２０３０-01-01T00:00:00Z",
        "2030-01-01T00:00:00Z\n",
    ],
)
def test_a_time_that_is_not_a_real_moment_is_refused(text: str) -> None:
    with pytest.raises(ParamError):
        parse_time(text, "expires")


def test_times_in_every_rfc_3339_spelling() -> None:
    want = datetime(2030, 1, 1, 10, 0, 0, 123456, tzinfo=UTC)
    for text in (
        "2030-01-01T10:00:00.123456Z",
        "2030-01-01t10:00:00.1234567z",
        "2030-01-01T12:00:00.123456+02:00",
        "2030-01-01T09:30:00.123456-00:30",
    ):
        assert parse_time(text, "t") == want, text
    assert parse_time("9999-12-31T23:59:59+14:00", "t").year == 9999


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(5000, 1, 1), timezones=st.just(UTC)
    )
)
def test_a_cursor_round_trips(moment: datetime) -> None:
    cursor = cursor_of(moment, MID)
    assert parse_cursor(cursor) == (moment, MID)
    assert re.fullmatch(_doc_schema("Cursor")["pattern"], cursor)


@pytest.mark.parametrize(
    "text",
    [
        "WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzE0OjAwIiwieCJd",  # the old base64 JSON, overflowing
        f"-1_{MID}",
        f"01_{MID}",
        f"{'9' * 18}_{MID}",
        "5_x",
        f"5_{MID}\n",
    ],
)
def test_a_cursor_not_given_by_the_api_is_refused(text: str) -> None:
    with pytest.raises(ParamError):
        parse_cursor(text)


def test_the_expiry_bound_at_n_minus_1_n_and_n_plus_1() -> None:
    now, longest = datetime(2030, 1, 1, tzinfo=UTC), timedelta(days=90)
    second = timedelta(seconds=1)
    assert check_expires(now + longest - second, now, longest)
    assert check_expires(now + longest, now, longest)
    with pytest.raises(ExpiresRefused, match="more than 90 days ahead"):
        check_expires(now + longest + second, now, longest)
    with pytest.raises(ExpiresRefused, match="not in the future"):
        check_expires(now, now, longest)


# -- the document says what the server reads ----------------------------------------------


def _doc_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = document()["components"]["schemas"][name]
    return schema


def _documented(schema: dict[str, Any], value: str) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(value)


def _submit_header(name: str) -> dict[str, Any]:
    params = document()["paths"]["/v1/documents"]["post"]["parameters"]
    schema: dict[str, Any] = next(p["schema"] for p in params if p["name"] == name)
    return schema


@pytest.mark.parametrize(
    "key", ["order-42", "é", "a b", " ", "", "x" * 255, "x" * 256, "tab\t", "~!"]
)
def test_the_documented_idempotency_key_is_the_one_the_server_takes(key: str) -> None:
    try:
        check_idempotency_key(key)
        taken = True
    except IntegratorError:
        taken = False
    assert _documented(_submit_header("Idempotency-Key"), key) is taken


@pytest.mark.parametrize(
    "cursor",
    [f"0_{MID}", f"1700000000000000_{MID}", "abc", "", f"01_{MID}", "WyIwMDAxIiwieCJd"],
)
def test_the_documented_cursor_is_the_one_the_server_takes(cursor: str) -> None:
    try:
        parse_cursor(cursor)
        taken = True
    except ParamError:
        taken = False
    assert _documented(_doc_schema("Cursor"), cursor) is taken


@pytest.mark.parametrize(
    "expires",
    ["2030-01-01T00:00:00Z", "2030-02-30T00:00:00Z", "2030-01-01T00:00:00", "soon", ""],
)
def test_a_documented_expiry_is_one_the_time_reader_checks(expires: str) -> None:
    if _documented(_submit_header("Valise-Expires"), expires):
        try:
            parse_time(expires, "expires")
        except ParamError:
            assert "02-30" in expires  # a real date is beyond a pattern; the reader says 422


def test_the_multipart_form_requires_its_metadata_and_a_file() -> None:
    body = document()["paths"]["/v1/documents"]["post"]["requestBody"]["content"]
    form = body["multipart/form-data"]
    assert form["schema"]["required"] == ["metadata", "file"]
    assert form["encoding"]["metadata"]["contentType"] == "application/json"


def test_to_takes_the_sites_the_document_is_served_with() -> None:
    doc = document(["M-PARIS", "HQ"])
    assert doc["components"]["schemas"]["SiteId"]["enum"] == ["HQ", "M-PARIS"]
    assert "enum" not in document()["components"]["schemas"]["SiteId"]
