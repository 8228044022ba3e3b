"""One key, one site, for good (routing/directory.py, routing/key_changes.py), and the
bounds that keep a site from growing the directory (issue 9 review, F1 and F2).

A site that lists another site's key id could revoke it under its own entry (every
site then held mail sealed to the victim's key), and make HQ's ``keys revoke ID``
pick its copy. Every writer and reader refuses a directory with a key id or pin twice;
the lookups that remain match on (site, key id), and refuse an id of two sites.
"""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from crypto.keys import DecryptionKey
from crypto.recipes import sign
from gateway.relay.key_watch import revoked_encryption_keys
from gateway.relay.reseal import stale_stanzas
from routing.directory import (
    DIRECTORY_LABEL,
    Directory,
    KeyReuseError,
    KeyState,
    SiteEntry,
    parse_directory,
    write_directory,
)
from routing.key_changes import (
    MAX_KEYS_PER_SITE,
    MAX_LISTED_RETIRED,
    MAX_USABLE_KEYS,
    KeyChange,
    KeyLimitError,
    apply_changes,
    enrol_site,
    key_site,
)
from tests.conftest import NOW
from tests.unit.test_key_changes import DIRECTORY_KEY, ENCRYPTION, LATER, PINS, SIGNING, base

A, N, REV = KeyState.ACTIVE, KeyState.NEXT, KeyState.REVOKED


def _squatted(kind: str) -> Directory:
    """base() with M-PARIS's active key of ``kind`` listed, revoked, for HQ as well (in
    memory only: no writer lets it out)."""
    d = base()
    hq, paris = d.site("HQ"), d.site("M-PARIS")
    if kind == "signing":
        hq = replace(hq, signing=(*hq.signing, (SIGNING["M-PARIS"][0].public, REV)))
    elif kind == "encryption":
        hq = replace(hq, encryption=(*hq.encryption, (ENCRYPTION["M-PARIS"][0].public, REV)))
    else:
        hq = replace(hq, tls=(*hq.tls, (PINS["M-PARIS"][0], REV)))
    return replace(d, sites=(paris, hq))  # the squatter last: "last entry wins" lookups


@pytest.mark.parametrize("kind", ["signing", "encryption", "tls"])
def test_no_writer_lets_a_key_of_two_sites_out(kind: str) -> None:
    with pytest.raises(KeyReuseError, match="for M-PARIS and for HQ"):
        write_directory(_squatted(kind), DIRECTORY_KEY)


def _signed_by_hand(d: Directory, swap: tuple[bytes, bytes]) -> bytes:
    """A directory HQ's directory key signed after ``swap`` was made in its body: what a
    buggy or older HQ could serve."""
    data = write_directory(d, DIRECTORY_KEY)
    start, end = data.index(b"<body>"), data.index(b"<signature ")
    body = data[start:end].replace(*swap)
    signature = sign(DIRECTORY_KEY, DIRECTORY_LABEL + body)
    return (
        data[:start]
        + body
        + f'<signature key="{DIRECTORY_KEY.key_id}">'.encode()
        + base64.b64encode(signature)
        + b"</signature></directory>"
    )


def test_a_mission_refuses_a_signed_directory_with_a_key_of_two_sites() -> None:
    d = base()
    paris, hq = PINS["M-PARIS"][0], PINS["HQ"][0]
    forged = _signed_by_hand(d, (hq.encode(), paris.encode()))
    with pytest.raises(KeyReuseError, match=f"key {paris} is listed"):
        parse_directory(forged, DIRECTORY_KEY.public)
    parse_directory(write_directory(d, DIRECTORY_KEY), DIRECTORY_KEY.public)  # control


@pytest.mark.parametrize("kind", ["signing", "encryption", "tls"])
def test_another_sites_key_cannot_be_published(kind: str) -> None:
    d = base()
    victim = {
        "signing": (SIGNING["M-PARIS"][0].key_id, SIGNING["M-PARIS"][0].public.raw),
        "encryption": (ENCRYPTION["M-PARIS"][0].key_id, ENCRYPTION["M-PARIS"][0].public.raw),
        "tls": (PINS["M-PARIS"][0], b""),
    }[kind]
    with pytest.raises(KeyReuseError, match="is a key of M-PARIS"):
        apply_changes(d, [KeyChange("HQ", kind, victim[0], N, victim[1])], now=LATER)


def _churn(d: Directory, site: str, count: int) -> tuple[Directory, list[str]]:
    """``count`` new encryption keys of ``site``, each announced and revoked."""
    ids = []
    for _ in range(count):
        pub = DecryptionKey.generate().public
        d = apply_changes(
            d,
            [
                KeyChange(site, "encryption", pub.key_id, N, pub.raw),
                KeyChange(site, "encryption", pub.key_id, REV),
            ],
            now=LATER,
        )
        ids.append(pub.key_id)
    return d, ids


def test_revoked_keys_beyond_the_listed_few_keep_their_ids_for_good() -> None:
    d, ids = _churn(base(), "M-PARIS", MAX_LISTED_RETIRED + 3)
    paris = d.site("M-PARIS")
    listed = [k.key_id for k, s in paris.encryption if s is REV]
    assert listed == ids[-MAX_LISTED_RETIRED:]
    assert paris.retired_ids == tuple(ids[:-MAX_LISTED_RETIRED])
    parsed = parse_directory(write_directory(d, DIRECTORY_KEY), DIRECTORY_KEY.public)
    assert parsed == d and parsed.site("M-PARIS").retired_ids == paris.retired_ids
    assert "was retired or revoked" in paris.refusal(ids[0])
    # An id once retired never returns, for its site or any other.
    for site in ("M-PARIS", "HQ"):
        with pytest.raises(KeyReuseError, match="was a key of M-PARIS"):
            apply_changes(d, [KeyChange(site, "encryption", ids[0], N, b"")], now=LATER)
    # A site's held mail to such a key is held, and only for that site.
    assert ("M-PARIS", ids[0]) in revoked_encryption_keys(d)
    assert ("HQ", ids[0]) not in revoked_encryption_keys(d)


def test_one_next_key_per_kind_and_a_few_usable_ones() -> None:
    d = base()
    first, second = DecryptionKey.generate().public, DecryptionKey.generate().public
    d = apply_changes(d, [KeyChange("HQ", "encryption", first.key_id, N, first.raw)], now=LATER)
    with pytest.raises(KeyLimitError, match="has a next encryption key already"):
        apply_changes(d, [KeyChange("HQ", "encryption", second.key_id, N, second.raw)], now=LATER)
    # Usable keys: active + retiring ones, one more each rotation, up to the limit.
    d = base()
    for n in range(MAX_USABLE_KEYS - 1):
        pub = DecryptionKey.generate().public
        d = apply_changes(
            d,
            [
                KeyChange("HQ", "encryption", pub.key_id, N, pub.raw),
                KeyChange("HQ", "encryption", pub.key_id, A),
            ],
            now=LATER,
        )
        usable = [s for _, s in d.site("HQ").encryption if s is not REV]
        assert len(usable) == n + 2
    pub = DecryptionKey.generate().public
    with pytest.raises(KeyLimitError, match=f"at most {MAX_USABLE_KEYS}"):
        apply_changes(d, [KeyChange("HQ", "encryption", pub.key_id, N, pub.raw)], now=LATER)


def test_a_site_has_at_most_max_keys_per_site() -> None:
    d = base()
    have = len(d.site("M-PARIS").key_ids())
    d, _ = _churn(d, "M-PARIS", MAX_KEYS_PER_SITE - have)
    assert len(d.site("M-PARIS").key_ids()) == MAX_KEYS_PER_SITE
    with pytest.raises(KeyLimitError, match=f"has had {MAX_KEYS_PER_SITE} keys"):
        _churn(d, "M-PARIS", 1)


def test_key_site_refuses_an_id_of_two_sites() -> None:
    d = _squatted("signing")
    victim = SIGNING["M-PARIS"][0].key_id
    with pytest.raises(KeyReuseError, match="listed for M-PARIS, HQ"):
        key_site(d, victim)
    assert key_site(base(), victim) == ("M-PARIS", "signing", A)


def test_holds_and_stale_checks_match_the_site_and_key_pair() -> None:
    d = _squatted("encryption")
    victim = ENCRYPTION["M-PARIS"][0].key_id
    # HQ's entry lists M-PARIS's key revoked: M-PARIS's own key is still in force.
    assert stale_stanzas(d, [("M-PARIS", victim)]) == []
    assert ("M-PARIS", victim) not in revoked_encryption_keys(d)
    assert stale_stanzas(d, [("HQ", victim)]) == [f"HQ:{victim}"]


def test_an_enrolled_again_site_keeps_its_old_ids_refused() -> None:
    d = base()
    old = d.site("M-PARIS")
    new = SiteEntry(
        site="M-PARIS",
        endpoint=old.endpoint,
        signing=((SIGNING["M-PARIS"][3].public, A),),
        encryption=((ENCRYPTION["M-PARIS"][3].public, A),),
        tls=((PINS["M-PARIS"][3], A),),
    )
    again = enrol_site(d, new, now=NOW)
    assert set(again.site("M-PARIS").retired_ids) == set(old.key_ids())
    with pytest.raises(KeyReuseError, match="for M-PARIS and for M-NEW"):
        enrol_site(again, replace(new, site="M-NEW"), now=NOW)
    with pytest.raises(KeyReuseError, match="listed twice for M-PARIS"):
        enrol_site(again, old, now=NOW)  # its old keys, once replaced, never return
