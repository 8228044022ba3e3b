"""The announce gate of a rotation (routing/announce.py) and its record in the key ring
(gateway/site/keyring.py announce, announced_in, activate_by): who counts, when a key may
become active, the one reader of HQ's answer, and rings written before the fields."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.sections import MAX_ANNOUNCE_SECONDS
from config.site import ConfigError, load_site_config
from gateway.site.keyring import RING, generate_key, load_ring, publish_lock, save_ring
from gateway.site.keystore import KeyStoreError
from gateway.site.ring_states import announce, announced
from routing.announce import (
    MAX_ANSWER_BYTES,
    AnnounceAnswerError,
    FetchedByAll,
    activation_reason,
    encode_answer,
    fetched_by_all,
    parse_answer,
)
from routing.directory import Directory, SiteEntry
from tests.conftest import NOW
from tests.unit.test_keyring import ca, folder  # noqa: F401 (fixtures)

SITES = ("HQ", "M-PARIS", "M-HANOI", "M-LIMA")


def directory(serial: int = 7, disabled: tuple[str, ...] = ()) -> Directory:
    entries = tuple(
        SiteEntry(s, f"https://127.0.0.1:{8440 + i}", (), (), (), active=s not in disabled)
        for i, s in enumerate(SITES)
    )
    return Directory(serial=serial, issued=NOW, hub="HQ", sites=entries)


# -- who counts ------------------------------------------------------------------------


def test_the_lowest_fetch_of_the_missions_counts() -> None:
    assert fetched_by_all(directory(), {"M-PARIS": 7, "M-HANOI": 5, "M-LIMA": 6}) == 5


def test_a_mission_that_never_fetched_counts_as_version_zero() -> None:
    assert fetched_by_all(directory(), {"M-PARIS": 7, "M-HANOI": 7}) == 0


def test_hq_and_disabled_sites_do_not_count() -> None:
    d = directory(disabled=("M-LIMA",))
    assert fetched_by_all(d, {"HQ": 0, "M-PARIS": 7, "M-HANOI": 6}) == 6


def test_no_site_to_wait_for_means_the_current_version() -> None:
    d = directory(serial=9, disabled=("M-PARIS", "M-HANOI", "M-LIMA"))
    assert fetched_by_all(d, {}) == 9


def test_a_record_above_the_current_version_counts_as_the_current_one() -> None:
    # A record from before a rollback to an older published version, say: never above.
    assert fetched_by_all(directory(serial=7), dict.fromkeys(SITES[1:], 40)) == 7


@settings(max_examples=300, deadline=None)
@given(
    serial=st.integers(0, 50),
    fetched=st.dictionaries(st.sampled_from(SITES), st.integers(0, 60)),
    liar=st.sampled_from(SITES[1:]),
    lie=st.integers(0, 10**6),
)
def test_no_site_moves_the_answer_past_another_sites_record(
    serial: int, fetched: dict[str, int], liar: str, lie: int
) -> None:
    """Whatever one mission makes HQ record for itself, the answer is never above
    what any *other* mission has fetched (or never fetched: 0), nor above the serial."""
    d = directory(serial=serial)
    with_lie = {**fetched, liar: lie}
    answer = fetched_by_all(d, with_lie)
    assert 0 <= answer <= serial
    for other in SITES[1:]:
        if other != liar:
            assert answer <= with_lie.get(other, 0)


# -- when a key may become active ------------------------------------------------------


def test_activation_waits_for_every_site_or_the_deadline() -> None:
    deadline = NOW + timedelta(hours=1)
    assert activation_reason(7, deadline, 6, NOW) is None
    assert activation_reason(7, deadline, None, NOW) is None  # HQ not reachable
    assert activation_reason(7, deadline, 7, NOW) == "every site has fetched directory 7"
    assert activation_reason(7, deadline, 9, NOW) == "every site has fetched directory 7"
    passed = activation_reason(7, deadline, None, deadline)
    assert passed is not None and "deadline" in passed
    just_before = deadline - timedelta(microseconds=1)
    assert activation_reason(7, deadline, 6, just_before) is None


# -- the one reader of HQ's answer -----------------------------------------------------


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "exactly"),
        (b'{"serial": 3}', "exactly"),
        (b'{"serial": 3, "fetched_by_all": 2, "site": "M-PARIS"}', "exactly"),
        (b'{"serial": true, "fetched_by_all": 0}', "whole number"),
        (b'{"serial": 3.0, "fetched_by_all": 2}', "whole number"),
        (b'{"serial": 3, "fetched_by_all": -1}', "whole number"),
        (b'{"serial": "3", "fetched_by_all": 2}', "whole number"),
        (b'{"serial": 3, "fetched_by_all": 4}', "above"),
        (b'{"serial": 99999999999999999999, "fetched_by_all": 0}', "whole number"),
        (b"[" * 100_000, "longer"),
        (b'{"serial": 3, "fetched_by_all": 2}' + b" " * MAX_ANSWER_BYTES, "longer"),
    ],
)
def test_malformed_answers_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(AnnounceAnswerError, match=why):
        parse_answer(data)


def test_the_answer_size_bound_n_minus_one_n_n_plus_one() -> None:
    body = encode_answer(FetchedByAll(3, 2))
    for size, ok in ((MAX_ANSWER_BYTES - 1, True), (MAX_ANSWER_BYTES, True)):
        assert parse_answer(body.ljust(size)) == FetchedByAll(3, 2), (size, ok)
    with pytest.raises(AnnounceAnswerError, match="longer"):
        parse_answer(body.ljust(MAX_ANSWER_BYTES + 1))


def test_deep_nesting_within_the_size_bound_is_refused_cleanly() -> None:
    with pytest.raises(AnnounceAnswerError):
        parse_answer(b"[" * (MAX_ANSWER_BYTES - 1))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**53), st.integers(0, 2**53))
def test_answers_round_trip(a: int, b: int) -> None:
    answer = FetchedByAll(max(a, b), min(a, b))
    assert parse_answer(encode_answer(answer)) == answer


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.from_regex(rb"\{[ -~]{0,60}\}", fullmatch=True)))
def test_any_bytes_parse_or_are_refused_with_the_typed_error(data: bytes) -> None:
    try:
        answer = parse_answer(data)
    except AnnounceAnswerError:
        return
    assert 0 <= answer.fetched_by_all <= answer.serial


# -- the ring's record -----------------------------------------------------------------


def test_announce_records_the_first_announcement_only(folder: Path) -> None:  # noqa: F811
    ring = load_ring(folder)
    old = ring.active("signing")
    new = generate_key(ring, "signing", now=NOW)
    deadline = NOW + timedelta(hours=1)
    assert announced(ring) == []
    overlap = timedelta(minutes=5)
    changed = announce(ring, new.id, serial=4, deadline=deadline, overlap=overlap)
    assert [(k.announced_in, k.activate_by, k.overlap_seconds) for k in changed] == [
        (4, deadline.isoformat(), 300.0)
    ]
    later = deadline + timedelta(hours=5)
    assert announce(ring, new.id, serial=9, deadline=later, overlap=overlap * 2) == []
    with pytest.raises(KeyStoreError, match="only a next key"):
        announce(ring, old.id, serial=4, deadline=deadline, overlap=overlap)
    save_ring(ring)
    again = load_ring(folder)
    assert [k.id for k in announced(again)] == [new.id]
    assert again.get(new.id).deadline == deadline
    assert again.get(new.id).announced_in == 4
    assert again.get(new.id).overlap_seconds == 300.0


def test_a_ring_written_before_the_announce_fields_loads(folder: Path) -> None:  # noqa: F811
    ring = load_ring(folder)
    new = generate_key(ring, "encryption", now=NOW)
    save_ring(ring)
    path = folder / RING
    body = json.loads(path.read_text())
    for entry in body["keys"]:
        for name in ("announced_in", "activate_by", "overlap_seconds"):
            entry.pop(name)
    path.write_text(json.dumps(body))
    loaded = load_ring(folder)
    k = loaded.get(new.id)
    assert k.announced_in == 0 and k.deadline is None and k.overlap_seconds is None
    assert announced(loaded) == []  # a next key from before waits for a rotate or activate


WHEN = "2026-12-01T10:00:00+00:00"


@pytest.mark.parametrize(
    ("announced_in", "activate_by", "overlap"),
    [
        (-1, "", None),
        ("4", WHEN, None),
        (True, WHEN, None),
        (4, "tomorrow", None),
        (4, "2026-12-01T10:00:00", None),  # no time zone
        (4, "", None),  # a serial without a deadline
        (0, WHEN, None),  # a deadline without a serial
        (4, 1234, None),
        (4, WHEN, -1),
        (4, WHEN, "60"),
        (4, WHEN, True),
        (4, WHEN, 1e300),
    ],
)
def test_damaged_announce_fields_are_refused(
    folder: Path,  # noqa: F811
    announced_in: object,
    activate_by: object,
    overlap: object,
) -> None:
    ring = load_ring(folder)
    new = generate_key(ring, "signing", now=NOW)
    save_ring(ring)
    path = folder / RING
    body = json.loads(path.read_text())
    entry = next(e for e in body["keys"] if e["id"] == new.id)
    entry["announced_in"], entry["activate_by"] = announced_in, activate_by
    entry["overlap_seconds"] = overlap
    path.write_text(json.dumps(body))
    with pytest.raises(KeyStoreError, match="is damaged"):
        load_ring(folder)


@settings(max_examples=150, deadline=None)
@given(
    announced_in=st.one_of(st.integers(-5, 2**60), st.text(max_size=8), st.none(), st.booleans()),
    activate_by=st.one_of(
        st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
        st.text(max_size=30),
        st.integers(),
        st.none(),
    ),
    overlap=st.one_of(st.none(), st.floats(allow_nan=False), st.integers(), st.text(max_size=4)),
)
def test_any_announce_fields_load_or_are_refused_as_damaged(
    tmp_path_factory: pytest.TempPathFactory,
    announced_in: object,
    activate_by: object,
    overlap: object,
) -> None:
    keys = tmp_path_factory.mktemp("ring")
    (keys / RING).write_text(_ring_json(announced_in, activate_by, overlap))
    try:
        ring = load_ring(keys)
    except KeyStoreError as exc:
        assert "is damaged" in str(exc)
        return
    k = ring.get("next-one")
    assert type(k.announced_in) is int and k.announced_in >= 0
    assert (k.deadline is None) == (k.announced_in == 0)
    assert k.overlap_seconds is None or k.overlap_seconds >= 0


def _ring_json(announced_in: object, activate_by: object, overlap: object) -> str:
    """A ring of one active key per kind (ids need not match files to load) and one
    next signing key carrying the given announce fields."""
    times = {"created": NOW.isoformat(), "expires": (NOW + timedelta(days=9)).isoformat()}
    entries = [
        {"kind": kind, "id": f"{kind}-1", "state": "active", **times}
        for kind in ("signing", "encryption", "tls")
    ]
    entries.append(
        {
            "kind": "signing",
            "id": "next-one",
            "state": "next",
            **times,
            "announced_in": announced_in,
            "activate_by": activate_by,
            "overlap_seconds": overlap,
        }
    )
    return json.dumps({"site": "M-PARIS", "keys": entries})


# -- [keys] announce_seconds -----------------------------------------------------------

HUB_TOML = (
    '[site]\nid = "HQ"\nrole = "hub"\nlisten = "127.0.0.1:1"\n'
    'endpoint = "https://127.0.0.1:1"\nhub = "HQ"\nhub_endpoint = "https://127.0.0.1:1"\n'
)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (-1, False),
        (0, True),
        (1, True),
        (MAX_ANNOUNCE_SECONDS - 1, True),
        (MAX_ANNOUNCE_SECONDS, True),
        (MAX_ANNOUNCE_SECONDS + 1, False),
        ("nan", False),
    ],
)
def test_announce_seconds_bounds(tmp_path: Path, value: object, ok: bool) -> None:
    (tmp_path / "valise.toml").write_text(HUB_TOML)
    # A renewal lead longer than the longest announcement (config/site.py _check_keys).
    env = {"VALISE_KEYS_ANNOUNCE_SECONDS": str(value), "VALISE_KEYS_TLS_RENEW_DAYS": "31"}
    if ok:
        assert load_site_config(tmp_path, env).keys.announce_seconds == float(str(value))
    else:
        with pytest.raises(ConfigError, match="announce_seconds"):
            load_site_config(tmp_path, env)


def test_announce_seconds_defaults_to_an_hour(tmp_path: Path) -> None:
    (tmp_path / "valise.toml").write_text(HUB_TOML)
    assert load_site_config(tmp_path, {}).keys.announce_seconds == 3600.0


# -- one publication at a time per site ----------------------------------------------


async def test_the_publish_lock_serialises_and_times_out(tmp_path: Path) -> None:
    order: list[str] = []

    async def hold(name: str, seconds: float) -> None:
        async with publish_lock(tmp_path):
            order.append(f"{name} in")
            await asyncio.sleep(seconds)
            order.append(f"{name} out")

    await asyncio.gather(hold("a", 0.2), hold("b", 0))
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    async with publish_lock(tmp_path):
        with pytest.raises(TimeoutError):
            async with publish_lock(tmp_path, timeout=0.1):
                pass  # never reached: the lock is held
    async with publish_lock(tmp_path, timeout=0.1):  # free again
        order.append("c")
    assert order[-1] == "c"
