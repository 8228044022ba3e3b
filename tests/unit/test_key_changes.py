"""Key state changes on the directory (routing/key_changes.py): the transitions, the
refusals, the invariants under random sequences, and a signed round trip."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.keys import DecryptionKey, SigningKey
from routing.directory import (
    Directory,
    DirectoryError,
    KeyState,
    SiteEntry,
    parse_directory,
    write_directory,
)
from routing.key_changes import KINDS, KeyChange, apply_changes, apply_site_update, key_site
from tests.conftest import NOW

DIRECTORY_KEY = SigningKey.from_seed(bytes([77]) * 32)
SITES = ("HQ", "M-PARIS")
LATER = NOW + timedelta(hours=1)

N = KeyState.NEXT
A = KeyState.ACTIVE
RING = KeyState.RETIRING
RED = KeyState.RETIRED
REV = KeyState.REVOKED


def _pin(n: int) -> str:
    return hashlib.sha256(f"tls key {n}".encode()).hexdigest()


# Key pools per site: index 0 is the key each site starts with (active).
SIGNING = {
    s: [SigningKey.from_seed(bytes([i * 10 + n + 1]) * 32) for n in range(4)]
    for i, s in enumerate(SITES)
}
ENCRYPTION = {
    s: [DecryptionKey.from_seed(bytes([i * 10 + n + 101]) * 96) for n in range(4)]
    for i, s in enumerate(SITES)
}
PINS = {s: [_pin(i * 10 + n) for n in range(4)] for i, s in enumerate(SITES)}


def key_id(site: str, kind: str, n: int) -> str:
    if kind == "signing":
        return SIGNING[site][n].key_id
    if kind == "encryption":
        return ENCRYPTION[site][n].key_id
    return PINS[site][n]


def public(site: str, kind: str, n: int) -> bytes:
    if kind == "signing":
        return SIGNING[site][n].public.raw
    if kind == "encryption":
        return ENCRYPTION[site][n].public.raw
    return b""


def change(site: str, kind: str, n: int, state: KeyState) -> KeyChange:
    return KeyChange(site, kind, key_id(site, kind, n), state, public(site, kind, n))


def entry(site: str) -> SiteEntry:
    return SiteEntry(
        site=site,
        endpoint=f"https://{site.lower()}.example:8443",
        signing=((SIGNING[site][0].public, A),),
        encryption=((ENCRYPTION[site][0].public, A),),
        tls=((PINS[site][0], A),),
    )


def base() -> Directory:
    return Directory(serial=5, issued=NOW, hub="HQ", sites=tuple(entry(s) for s in SITES))


def states(d: Directory, site: str, kind: str) -> list[tuple[str, KeyState]]:
    e = d.site(site)
    if kind == "tls":
        return list(e.tls)
    keys = e.signing if kind == "signing" else e.encryption
    return [(k.key_id, s) for k, s in keys]


def state_of(d: Directory, site: str, kind: str, n: int) -> KeyState | None:
    return dict(states(d, site, kind)).get(key_id(site, kind, n))


# -- transitions ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_key_goes_next_active_retiring_retired(kind: str) -> None:
    d0 = base()
    d1 = apply_changes(d0, [change("M-PARIS", kind, 1, N)], now=LATER)
    assert d1.serial == 6 and d1.issued == LATER and d1.hub == "HQ"
    assert states(d1, "M-PARIS", kind) == [
        (key_id("M-PARIS", kind, 0), A),
        (key_id("M-PARIS", kind, 1), N),
    ]
    # Activating demotes the old active key of the same kind (and only that kind).
    d2 = apply_changes(d1, [change("M-PARIS", kind, 1, A)], now=LATER)
    assert d2.serial == 7
    assert states(d2, "M-PARIS", kind) == [
        (key_id("M-PARIS", kind, 0), RING),
        (key_id("M-PARIS", kind, 1), A),
    ]
    for other in KINDS:
        if other != kind:
            assert states(d2, "M-PARIS", other) == states(d0, "M-PARIS", other)
    assert d2.site("HQ") == d0.site("HQ")
    d3 = apply_changes(d2, [change("M-PARIS", kind, 0, RED)], now=LATER)
    assert d3.serial == 8
    assert state_of(d3, "M-PARIS", kind, 0) is RED
    assert state_of(d3, "M-PARIS", kind, 1) is A
    # A retired key can still be revoked, and nothing else.
    d4 = apply_changes(d3, [change("M-PARIS", kind, 0, REV)], now=LATER)
    assert state_of(d4, "M-PARIS", kind, 0) is REV and d4.serial == 9


@pytest.mark.parametrize("start", [N, A, RING, RED])
def test_any_state_can_be_revoked(start: KeyState) -> None:
    path = {
        N: [(1, N)],
        A: [(1, N), (1, A)],
        RING: [(1, N), (1, A), (2, N), (2, A)],
        RED: [(1, N), (1, A), (2, N), (2, A), (1, RED)],
    }[start]
    d = apply_changes(base(), [change("HQ", "signing", n, s) for n, s in path], now=LATER)
    assert d.serial == 6  # one version for the whole batch
    assert state_of(d, "HQ", "signing", 1) is start
    revoked = apply_changes(d, [change("HQ", "signing", 1, REV)], now=LATER)
    assert state_of(revoked, "HQ", "signing", 1) is REV
    assert revoked.serial == d.serial + 1


def test_a_new_key_can_be_revoked_as_published_next_in_the_same_batch() -> None:
    d = apply_changes(base(), [change("HQ", "tls", 1, N), change("HQ", "tls", 1, REV)], now=LATER)
    assert state_of(d, "HQ", "tls", 1) is REV and d.serial == 6


def test_revoking_the_active_key_leaves_no_active_key() -> None:
    d = apply_changes(base(), [change("M-PARIS", "encryption", 0, REV)], now=LATER)
    with pytest.raises(DirectoryError, match="no active encryption key"):
        d.site("M-PARIS").active_encryption_key()
    # A next key then becomes active without demoting anything.
    d2 = apply_changes(
        d,
        [change("M-PARIS", "encryption", 1, N), change("M-PARIS", "encryption", 1, A)],
        now=LATER,
    )
    assert d2.site("M-PARIS").active_encryption_key() == ENCRYPTION["M-PARIS"][1].public
    assert state_of(d2, "M-PARIS", "encryption", 0) is REV


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_state_again_is_a_no_op(kind: str) -> None:
    d0 = base()
    assert apply_changes(d0, [change("M-PARIS", kind, 0, A)], now=LATER) is d0
    assert apply_changes(d0, [], now=LATER) is d0
    d1 = apply_changes(d0, [change("M-PARIS", kind, 1, N)], now=LATER)
    again = apply_changes(d1, [change("M-PARIS", kind, 1, N)], now=LATER + timedelta(hours=1))
    assert again is d1 and again.serial == d1.serial and again.issued == LATER
    # Changes that cancel out to nothing new also keep the version.
    assert (
        apply_changes(d1, [change("HQ", kind, 0, A), change("M-PARIS", kind, 1, N)], now=LATER)
        is d1
    )


# -- refusals ---------------------------------------------------------------------------


def _retired_and_revoked() -> Directory:
    """M-PARIS signing: key 0 retired, key 1 active, key 2 revoked."""
    steps = [(1, N), (1, A), (0, RED), (2, N), (2, REV)]
    return apply_changes(base(), [change("M-PARIS", "signing", n, s) for n, s in steps], now=LATER)


@pytest.mark.parametrize(
    ("n", "state", "reason"),
    [
        (0, A, "is retired; it cannot become active"),
        (0, RING, "is retired; it cannot become retiring"),
        (0, N, "is retired; it cannot become next"),
        (2, A, "is revoked; it cannot become active"),
        (2, N, "is revoked; it cannot become next"),
        (2, RING, "is revoked"),
        (2, RED, "is revoked"),
        (1, N, "is active; it cannot become next"),
        (1, RED, "is active; it cannot become retired"),
        (3, A, "a new key is published as next first"),
        (3, RING, "a new key is published as next first"),
        (3, RED, "a new key is published as next first"),
        (3, REV, "a new key is published as next first"),
    ],
)
def test_invalid_transitions_are_refused(n: int, state: KeyState, reason: str) -> None:
    d = _retired_and_revoked()
    snapshot = replace(d)
    with pytest.raises(DirectoryError, match=reason):
        apply_changes(d, [change("M-PARIS", "signing", n, state)], now=LATER)
    assert d == snapshot and d.serial == snapshot.serial


def test_a_next_key_cannot_skip_to_retiring_or_retired() -> None:
    d = apply_changes(base(), [change("HQ", "encryption", 1, N)], now=LATER)
    for state in (RING, RED):
        with pytest.raises(DirectoryError, match="is next; it cannot become"):
            apply_changes(d, [change("HQ", "encryption", 1, state)], now=LATER)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        # The id is not the digest of the public key sent with it.
        (
            KeyChange(
                "M-PARIS",
                "signing",
                SIGNING["M-PARIS"][1].key_id,
                N,
                SIGNING["M-PARIS"][2].public.raw,
            ),
            "is not its digest",
        ),
        (
            KeyChange("M-PARIS", "encryption", "00" * 16, N, ENCRYPTION["M-PARIS"][1].public.raw),
            "is not its digest",
        ),
        # Not a key at all.
        (KeyChange("M-PARIS", "signing", "00" * 16, N, b"short"), "new signing key"),
        (KeyChange("M-PARIS", "encryption", "00" * 16, N, b""), "new encryption key"),
        (
            replace(change("HQ", "signing", 1, N), site="M-NOWHERE"),
            "site M-NOWHERE is not in directory serial 5",
        ),
        (KeyChange("M-PARIS", "ssh", "00" * 16, N), "unknown key kind 'ssh'"),
    ],
)
def test_bad_changes_are_refused(bad: KeyChange, reason: str) -> None:
    d = base()
    snapshot = replace(d)
    with pytest.raises(DirectoryError, match=reason):
        apply_changes(d, [bad], now=LATER)
    assert d == snapshot


def test_a_refused_change_applies_nothing_of_its_batch() -> None:
    d = base()
    snapshot = replace(d)
    batch = [
        change("M-PARIS", "signing", 1, N),
        change("M-PARIS", "signing", 1, A),
        change("HQ", "tls", 1, N),
        change("HQ", "tls", 0, RED),  # active -> retired: refused
    ]
    with pytest.raises(DirectoryError, match="is active; it cannot become retired"):
        apply_changes(d, batch, now=LATER)
    assert d == snapshot and d.serial == 5
    assert state_of(d, "M-PARIS", "signing", 1) is None and state_of(d, "HQ", "tls", 1) is None


# -- random sequences --------------------------------------------------------------------

_changes = st.lists(
    st.tuples(
        st.sampled_from((*SITES, *SITES, "M-NOWHERE")),
        st.sampled_from((*KINDS, *KINDS, "ssh")),
        st.integers(0, 3),
        st.sampled_from(list(KeyState)),
        st.sampled_from((False, False, False, True)),  # the public key of another key
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(_changes)
def test_random_sequences_keep_the_invariants(
    steps: list[tuple[str, str, int, KeyState, bool]],
) -> None:
    d = base()
    ever: dict[tuple[str, str, str], set[KeyState]] = {}  # (site, kind, id) -> states seen

    def record(directory: Directory) -> None:
        for e in directory.sites:
            for kind in KINDS:
                for kid, s in states(directory, e.site, kind):
                    ever.setdefault((e.site, kind, kid), set()).add(s)

    record(d)
    for site, kind, n, state, wrong_public in steps:
        real_site = site if site in SITES else "HQ"
        real_kind = kind if kind in KINDS else "signing"
        pub = public(real_site, real_kind, (n + 1) % 4 if wrong_public else n)
        c = KeyChange(site, kind, key_id(real_site, real_kind, n), state, pub)
        snapshot = replace(d)
        try:
            new = apply_changes(d, [c], now=LATER)
        except DirectoryError:
            assert d == snapshot  # refused: nothing changed
            continue
        if new is d:
            assert new.serial == snapshot.serial
            continue
        assert new.serial == d.serial + 1  # serial only goes up, one per version
        for e in new.sites:
            for kind_ in KINDS:
                now_states = states(new, e.site, kind_)
                assert [s for _, s in now_states].count(A) <= 1
                for kid, s in now_states:
                    seen = ever.get((e.site, kind_, kid), set())
                    if seen & {RED, REV}:
                        # never resurrected: once retired only revoked may follow
                        assert s in (RED, REV), (kid, seen, s)
                    if REV in seen:
                        assert s is REV
                # no key disappears
                assert {kid for kid, _ in states(d, e.site, kind_)} <= {
                    kid for kid, _ in now_states
                }
        record(new)
        d = new


# -- queries ------------------------------------------------------------------------------


def test_usable_keys_are_next_active_and_retiring_only() -> None:
    steps = [(1, N), (1, A), (0, RED), (2, N), (2, A), (3, N)]
    d = apply_changes(
        base(),
        [change("M-PARIS", kind, n, s) for kind in ("signing", "tls") for n, s in steps],
        now=LATER,
    )
    # Key 3 stays next, 2 is active, 1 retiring, 0 retired; then revoke 3.
    d = apply_changes(d, [change("M-PARIS", "signing", 3, REV)], now=LATER)
    paris = d.site("M-PARIS")
    keys = SIGNING["M-PARIS"]
    assert paris.verify_keys() == {keys[1].key_id: keys[1].public, keys[2].key_id: keys[2].public}
    assert paris.tls_pins == (PINS["M-PARIS"][1], PINS["M-PARIS"][2], PINS["M-PARIS"][3])
    assert d.site_for_pin(PINS["M-PARIS"][0]) is None
    assert d.site_for_pin(PINS["M-PARIS"][3]) == "M-PARIS"

    assert paris.refusal(keys[0].key_id) == f"signing key {keys[0].key_id} of M-PARIS is retired"
    assert paris.refusal(keys[3].key_id) == f"signing key {keys[3].key_id} of M-PARIS is revoked"
    pin = PINS["M-PARIS"][0]
    assert paris.refusal(pin) == f"tls key {pin} of M-PARIS is retired"
    assert paris.refusal("ff" * 16) == f"key {'ff' * 16} is not a key of M-PARIS"

    assert key_site(d, keys[0].key_id) == ("M-PARIS", "signing", RED)
    assert key_site(d, keys[2].key_id) == ("M-PARIS", "signing", A)
    assert key_site(d, PINS["M-PARIS"][3]) == ("M-PARIS", "tls", N)
    hq_enc = ENCRYPTION["HQ"][0].key_id
    assert key_site(d, hq_enc) == ("HQ", "encryption", A)
    assert key_site(d, "ff" * 16) is None


# -- signed round trip ----------------------------------------------------------------------


def test_changed_states_survive_signing_and_the_schema() -> None:
    d = base()
    d = apply_changes(
        d,
        [
            change("M-PARIS", "signing", 1, N),
            change("M-PARIS", "signing", 1, A),  # 0 -> retiring
            change("M-PARIS", "signing", 2, N),
            change("M-PARIS", "encryption", 1, N),
            change("M-PARIS", "encryption", 1, A),
            change("M-PARIS", "encryption", 0, RED),
            change("M-PARIS", "tls", 1, N),
            change("M-PARIS", "tls", 1, A),
            change("M-PARIS", "tls", 0, RED),
            change("M-PARIS", "tls", 2, N),
            change("M-PARIS", "tls", 2, REV),
        ],
        now=LATER,
    )
    data = write_directory(d, DIRECTORY_KEY)
    parsed = parse_directory(data, DIRECTORY_KEY.public)
    assert parsed == d and parsed.serial == 6
    assert states(parsed, "M-PARIS", "signing") == [
        (key_id("M-PARIS", "signing", 0), RING),
        (key_id("M-PARIS", "signing", 1), A),
        (key_id("M-PARIS", "signing", 2), N),
    ]
    assert states(parsed, "M-PARIS", "encryption") == [
        (key_id("M-PARIS", "encryption", 0), RED),
        (key_id("M-PARIS", "encryption", 1), A),
    ]
    assert parsed.site("M-PARIS").tls == (
        (PINS["M-PARIS"][0], RED),
        (PINS["M-PARIS"][1], A),
        (PINS["M-PARIS"][2], REV),
    )
    for pin, state in parsed.site("M-PARIS").tls:
        assert f'<tls-pin state="{state.value}">{pin}</tls-pin>'.encode() in data
    assert f'id="{key_id("M-PARIS", "encryption", 0)}" state="retired"'.encode() in data
    # A changed state is covered by the signature.
    forged = data.replace(
        f'<tls-pin state="retired">{PINS["M-PARIS"][0]}'.encode(),
        f'<tls-pin state="active">{PINS["M-PARIS"][0]}'.encode(),
    )
    assert forged != data
    with pytest.raises(DirectoryError, match="does not verify"):
        parse_directory(forged, DIRECTORY_KEY.public)
    # A state the schema does not know is refused.
    unknown = data.replace(b'state="retired"', b'state="dormant"', 1)
    with pytest.raises(DirectoryError):
        parse_directory(unknown, DIRECTORY_KEY.public)


def test_a_site_update_may_not_leave_it_without_an_active_encryption_key() -> None:
    """Review 10, F2: a mission revoking its own encryption key with no replacement
    would hold every message sent to it (and, before the split, to others with it)."""
    alone = [change("M-PARIS", "encryption", 0, REV)]
    with pytest.raises(DirectoryError, match="no active encryption key"):
        apply_site_update(base(), alone, now=LATER)
    replaced = [
        change("M-PARIS", "encryption", 1, N),
        change("M-PARIS", "encryption", 1, A),
        change("M-PARIS", "encryption", 0, REV),
    ]
    d = apply_site_update(base(), replaced, now=LATER)
    assert d.site("M-PARIS").active_encryption_key() == ENCRYPTION["M-PARIS"][1].public
    # HQ revoked it (not a site update): the site may then publish anything.
    revoked = apply_changes(base(), alone, now=LATER)
    again = apply_site_update(revoked, [change("M-PARIS", "signing", 1, N)], now=LATER)
    assert state_of(again, "M-PARIS", "signing", 1) is N


@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(list(KeyState))), max_size=6))
def test_a_site_update_applies_as_apply_changes_or_keeps_an_active_encryption_key(
    steps: list[tuple[int, KeyState]],
) -> None:
    changes = [change("M-PARIS", "encryption", n, s) for n, s in steps]
    try:
        plain = apply_changes(base(), changes, now=LATER)
    except DirectoryError:
        return
    try:
        got = apply_site_update(base(), changes, now=LATER)
    except DirectoryError:
        assert not [s for _, s in states(plain, "M-PARIS", "encryption") if s is A]
        return
    assert got == plain
