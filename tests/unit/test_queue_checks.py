"""The doctor's queue checks (gateway/service/doctor_checks.py) at their thresholds, why a
received document waits (gateway/relay/waiting.py), and [relay] warn_deferred_seconds."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.sections import MAX_WARN_DEFERRED_SECONDS
from config.site import ConfigError, load_site_config
from crypto.keys import DecryptionKey
from envelope.receipt import RECEIPT_CLASS
from gateway.relay.waiting import receipt_blocker, waiting_reason
from gateway.service.doctor_checks import (
    FAILED_WINDOW,
    Status,
    Waiting,
    deferred_check,
    failed_check,
    receipts_awaited_check,
    received_check,
)
from gateway.store.base import TODO_STATES
from gateway.store.queries import _read
from routing.directory import Directory, KeyState, SiteEntry

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def mid(n: int) -> str:
    return f"01900000-0000-7000-8000-{n:012x}"


def _w(n: int, ago: timedelta, who: str = "HQ", reason: str = "") -> Waiting:
    return Waiting(mid(n), who, NOW - ago, reason)


# -- deferred ------------------------------------------------------------------------


def test_deferred_under_the_threshold_is_ok() -> None:
    check = deferred_check([_w(1, HOUR), _w(2, timedelta(minutes=5))], NOW, HOUR)
    assert check.status is Status.OK and "2 messages deferred" in check.detail


def test_deferred_over_the_threshold_names_how_many_the_oldest_its_peer_and_reason() -> None:
    items = [
        _w(1, timedelta(minutes=5), "HQ", "connection refused"),
        _w(2, 3 * HOUR, "M-HANOI", "HQ answered 503"),
        _w(3, 5 * HOUR, "M-HANOI", "TLS handshake failed"),
        _w(3, 5 * HOUR, "M-PARIS", "TLS handshake failed"),  # same message, other hop
    ]
    check = deferred_check(items, NOW, HOUR)
    assert check.status is Status.WARN
    assert check.detail.startswith("2 messages deferred longer than 60 min")
    assert f"oldest {mid(3)} to M-HANOI, waiting 5 h: TLS handshake failed" in check.detail
    assert "valise queue list --state deferred" in check.detail


def test_nothing_deferred_is_ok() -> None:
    assert deferred_check([], NOW, HOUR).status is Status.OK


# -- failed --------------------------------------------------------------------------


def test_failures_within_the_day_warn_with_the_command_to_list_them() -> None:
    items = [
        _w(1, 2 * HOUR, "HQ", "expired"),
        _w(2, HOUR, "HQ", "refused by HQ: origin signature refused"),
        _w(3, FAILED_WINDOW + HOUR, "HQ", "older"),
    ]
    check = failed_check(items, NOW)
    assert check.status is Status.WARN
    assert check.detail.startswith("2 messages failed in the last 24 h")
    assert f"latest {mid(2)} to HQ: refused by HQ" in check.detail
    assert "valise queue list --state failed" in check.detail


def test_only_old_failures_are_ok() -> None:
    check = failed_check([_w(3, FAILED_WINDOW + timedelta(seconds=1))], NOW)
    assert check.status is Status.OK


# -- receipts awaited and documents received here ----------------------------------------


def test_a_message_forwarded_long_ago_without_a_receipt_warns() -> None:
    assert receipts_awaited_check([_w(1, HOUR / 2)], NOW, HOUR).status is Status.OK
    check = receipts_awaited_check([_w(1, HOUR / 2), _w(2, 2 * HOUR)], NOW, HOUR)
    assert check.status is Status.WARN and mid(2) in check.detail and mid(1) not in check.detail
    assert f"valise status {mid(2)}" in check.detail


def test_a_receipt_deferred_too_long_warns_with_its_reason() -> None:
    why = "receipt deferred: M-PARIS has no active encryption key"
    fresh = _w(1, timedelta(minutes=1), "M-PARIS", why)
    assert received_check([fresh], NOW, HOUR).status is Status.OK
    check = received_check([fresh, _w(2, 2 * HOUR, "M-PARIS", why)], NOW, HOUR)
    assert check.status is Status.WARN
    assert f"oldest {mid(2)} from M-PARIS, 2 h: {why}" in check.detail
    assert check.detail.startswith("1 document(s) received here not delivered")


# -- why a received document waits -------------------------------------------------------


def _directory(*entries: SiteEntry) -> Directory:
    return Directory(1, NOW, "HQ", entries)


def _site(site: str, *states: KeyState) -> SiteEntry:
    keys = tuple((DecryptionKey.generate().public, s) for s in states)
    return SiteEntry(site, f"https://{site.lower()}", (), keys, ())


def test_a_receipt_waits_while_the_origin_has_no_active_encryption_key() -> None:
    d = _directory(
        _site("M-PARIS", KeyState.REVOKED),
        _site("M-HANOI", KeyState.REVOKED, KeyState.ACTIVE),
        _site("M-ROME", KeyState.NEXT),
    )
    assert receipt_blocker(d, "M-PARIS") == "M-PARIS has no active encryption key"
    assert receipt_blocker(d, "M-ROME") == "M-ROME has no active encryption key"
    assert receipt_blocker(d, "M-HANOI") is None
    assert receipt_blocker(d, "M-NOWHERE") is None  # refused at once, not deferred
    reason = waiting_reason("M-PARIS", "document", d, opened=False)
    assert reason == "receipt deferred: M-PARIS has no active encryption key"
    assert "hand-off" in waiting_reason("M-HANOI", "document", d, opened=True)
    assert "not opened yet" in waiting_reason("M-HANOI", "document", d, opened=False)
    assert "receipt for a message sent from here" in waiting_reason(
        "M-PARIS", RECEIPT_CLASS, d, opened=False
    )
    assert "not opened yet" in waiting_reason("M-PARIS", "document", None, opened=False)


# -- the store's "still to do" --------------------------------------------------------------


def test_the_store_todo_states_are_base_todo_states() -> None:
    """The queue query names no state list of its own: "still to do" is TODO_STATES,
    passed as :todo_states (gateway/store/operator.py), on every backend."""
    queue = (_read("queries", "operator.sql") or {})["queue"]
    assert "d.state = ANY(:todo_states)" in queue
    assert re.search(r"d\.state IN \(", queue) is None
    assert {"queued", "sending"} <= set(TODO_STATES)


# -- [relay] warn_deferred_seconds ---------------------------------------------------------

SITE_TOML = """
[site]
id = "M-PARIS"
role = "mission"
listen = "127.0.0.1:8444"
endpoint = "https://127.0.0.1:8444"
hub = "HQ"
hub_endpoint = "https://127.0.0.1:8443"
"""


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("site")
    (d / "valise.toml").write_text(SITE_TOML)
    return d


def test_warn_deferred_seconds_defaults_to_an_hour(site_dir: Path) -> None:
    assert load_site_config(site_dir, {}).relay.warn_deferred_seconds == 3600.0


@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.text(max_size=12),
    )
)
def test_warn_deferred_seconds_is_a_positive_finite_bounded_number(
    site_dir: Path, value: str
) -> None:
    env = {"VALISE_RELAY_WARN_DEFERRED_SECONDS": value}
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if 0 < number <= MAX_WARN_DEFERRED_SECONDS:
        assert load_site_config(site_dir, env).relay.warn_deferred_seconds == number
    else:
        with pytest.raises(ConfigError, match=r"\[relay\] warn_deferred_seconds"):
            load_site_config(site_dir, env)


# -- held (review 10, F1) --------------------------------------------------------------


def test_held_under_the_threshold_is_ok_over_it_warns_with_the_oldest_and_why() -> None:
    from gateway.service.doctor_checks import held_check

    waiting = "waiting for an encryption key of M-HANOI"
    assert held_check([_w(1, HOUR / 2, "HQ", waiting)], NOW, HOUR).status is Status.OK
    check = held_check([_w(1, HOUR / 2, "HQ", waiting), _w(2, 3 * HOUR, "HQ", waiting)], NOW, HOUR)
    assert check.status is Status.WARN
    assert mid(2) in check.detail and waiting in check.detail and mid(1) not in check.detail
    assert "1 message held longer than" in check.detail


# -- a kept-receipts journal set aside (gateway/relay/kept_journal.py) -------------------


def test_a_refused_kept_receipts_journal_is_reported_until_removed(tmp_path: Path) -> None:
    from gateway.relay.kept_journal import NAME
    from gateway.service.doctor_checks import Status, refused_journal_check

    refused = tmp_path / f"{NAME}.refused"
    assert refused_journal_check(refused) is None
    refused.write_text("{}")
    check = refused_journal_check(refused)
    assert check is not None and check.status is Status.WARN
    assert str(refused) in check.detail and "may not have been sent" in check.detail
    refused.unlink()
    refused.symlink_to(tmp_path / "elsewhere")  # a dangling link is reported too
    assert refused_journal_check(refused) is not None
