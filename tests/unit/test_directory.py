"""The signed directory: round trip, forgery, rollback, key states; receipts."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.keys import SigningKey
from envelope.errors import EnvelopeError
from envelope.receipt import Receipt, parse_receipt, write_receipt
from routing.directory import (
    Directory,
    DirectoryError,
    KeyState,
    SiteEntry,
    accept_update,
    parse_directory,
    write_directory,
)
from tests.conftest import NOW, Site

DIRECTORY_KEY = SigningKey.from_seed(bytes([77]) * 32)


def entry(s: Site, port: int) -> SiteEntry:
    return SiteEntry(
        site=s.site,
        endpoint=f"https://127.0.0.1:{port}",
        signing=((s.signing.public, KeyState.ACTIVE),),
        encryption=((s.decryption.public, KeyState.ACTIVE),),
        tls=((f"{port:064x}", KeyState.ACTIVE),),  # a pin per site: pins are unique
    )


@pytest.fixture()
def directory(hq: Site, paris: Site, hanoi: Site) -> Directory:
    return Directory(
        serial=3,
        issued=NOW,
        hub="HQ",
        sites=(entry(hq, 8443), entry(paris, 8444), entry(hanoi, 8445)),
    )


def test_round_trip_and_lookup(directory: Directory, paris: Site) -> None:
    data = write_directory(directory, DIRECTORY_KEY)
    parsed = parse_directory(data, DIRECTORY_KEY.public)
    assert parsed == directory
    site = parsed.site("M-PARIS")
    assert site.active_encryption_key() == paris.decryption.public
    assert site.verify_keys() == {paris.signing.key_id: paris.signing.public}
    assert parsed.site_for_pin(f"{8443:064x}") == "HQ"
    with pytest.raises(DirectoryError):
        parsed.site("M-NOWHERE")


def test_forged_or_foreign_directory_is_refused(directory: Directory) -> None:
    data = bytearray(write_directory(directory, DIRECTORY_KEY))
    other = SigningKey.from_seed(bytes([78]) * 32)
    with pytest.raises(DirectoryError, match="not signed by the directory key"):
        parse_directory(write_directory(directory, other), DIRECTORY_KEY.public)
    i = data.index(b"8444")
    data[i] = ord("9")  # redirect a mission's endpoint
    with pytest.raises(DirectoryError, match="does not verify"):
        parse_directory(bytes(data), DIRECTORY_KEY.public)


def test_rollback_is_refused(directory: Directory) -> None:
    new = parse_directory(write_directory(directory, DIRECTORY_KEY), DIRECTORY_KEY.public)
    old = parse_directory(
        write_directory(replace(directory, serial=2), DIRECTORY_KEY), DIRECTORY_KEY.public
    )
    assert accept_update(None, old)
    assert accept_update(old, new)
    assert not accept_update(new, new)
    with pytest.raises(DirectoryError, match="rollback"):
        accept_update(new, old)


def test_revoked_and_next_keys_do_not_verify(directory: Directory, paris: Site) -> None:
    site = replace(directory.site("M-PARIS"), signing=((paris.signing.public, KeyState.REVOKED),))
    assert site.verify_keys() == {}
    nxt = replace(site, encryption=((paris.decryption.public, KeyState.NEXT),))
    with pytest.raises(DirectoryError):
        nxt.active_encryption_key()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_directory_parser_raises_only_directory_errors(data: bytes) -> None:
    with contextlib.suppress(DirectoryError):
        parse_directory(data, DIRECTORY_KEY.public)


def test_receipt_round_trip_and_garbage() -> None:
    r = Receipt("01a23000-0000-7000-8000-000000000000", bytes(range(32)), "M-PARIS", NOW)
    assert parse_receipt(write_receipt(r)) == r
    with pytest.raises(EnvelopeError):
        parse_receipt(write_receipt(r).replace(b"M-PARIS", b"m-paris"))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_receipt_parser_raises_only_typed_errors(data: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        parse_receipt(data)
