"""Organs in the signed directory (issue 12, Addressing): the format, its attacks and
limits, and the lookups a sender makes (routing/organs.py)."""

from __future__ import annotations

import contextlib
import hashlib
import unicodedata
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.keys import SigningKey
from envelope.errors import SchemaError
from routing.directory import (
    Directory,
    DirectoryError,
    KeyState,
    OrganReuseError,
    SiteEntry,
    parse_directory,
    write_directory,
)
from routing.organs import (
    MAX_ORGAN_NAME_CHARS,
    MAX_ORGANS_PER_SITE,
    Organ,
    OrganError,
    Resolution,
    check_organ_id,
    check_organ_name,
    primary_organ,
    resolve,
)
from tests.conftest import NOW, make_site

KEY = SigningKey.from_seed(bytes([77]) * 32)
H41 = Organ("000.00.00.H41", "UBND Tỉnh Nghệ An")
G22 = Organ("G22", "Sở Nội vụ <&> \"quoted\" 'single'")
SAAS = Organ("vxp.saas.03")

# write_directory's output for golden() as the code wrote it before organs existed
# (commit 8a63010): a directory without organs must stay byte for byte the same, or
# every signed directory already held would stop verifying.
GOLDEN_SHA256 = "020fe106d82bc9cbf7640549c0a915c9364f0631332ea9162518075da4a935e8"
GOLDEN_BYTES = 6394


def entry(site: str, n: int, port: int, **kw: object) -> SiteEntry:
    s = make_site(site, n)
    return replace(
        SiteEntry(
            site=site,
            endpoint=f"https://127.0.0.1:{port}",
            signing=((s.signing.public, KeyState.ACTIVE),),
            encryption=((s.decryption.public, KeyState.ACTIVE),),
            tls=((f"{port:064x}", KeyState.ACTIVE),),
        ),
        **kw,
    )


def golden() -> Directory:
    return Directory(
        serial=3,
        issued=NOW,
        hub="HQ",
        sites=(
            entry("HQ", 1, 8443),
            entry("M-PARIS", 2, 8444, retired_ids=("ab" * 16,)),
            entry("M-HANOI", 3, 8445, active=False),
        ),
    )


def with_organs(d: Directory, **organs: tuple[Organ, ...]) -> Directory:
    """``d`` with the organs given per site (keyword: site id with _ for -)."""
    by_site = {k.replace("_", "-"): v for k, v in organs.items()}
    sites = tuple(replace(e, organs=by_site.get(e.site, e.organs)) for e in d.sites)
    return replace(d, sites=sites)


def served() -> Directory:
    return with_organs(golden(), M_PARIS=(H41, G22), M_HANOI=(SAAS,))


def test_a_directory_without_organs_is_written_as_before() -> None:
    data = write_directory(golden(), KEY)
    assert hashlib.sha256(data).hexdigest() == GOLDEN_SHA256
    assert len(data) == GOLDEN_BYTES
    assert b"organ" not in data
    assert parse_directory(data, KEY.public) == golden()


def test_round_trip_with_organs_is_byte_identical() -> None:
    d = served()
    data = write_directory(d, KEY)
    parsed = parse_directory(data, KEY.public)
    assert parsed == d
    assert parsed.site("M-PARIS").organs == (H41, G22)
    assert write_directory(parsed, KEY) == data
    # the layout: after retired-ids, an empty name as a start and an end tag (c14n)
    assert b'</retired-ids><organ id="000.00.00.H41">UBND T' in data
    assert b'<organ id="vxp.saas.03"></organ></site>' in data
    assert b"&lt;&amp;&gt; \"quoted\" 'single'</organ>" in data


def test_moving_an_organ_inside_signed_bytes_fails_the_signature() -> None:
    data = write_directory(with_organs(golden(), M_PARIS=(G22,), M_HANOI=(SAAS,)), KEY)
    organ = b'<organ id="vxp.saas.03"></organ>'
    moved = data.replace(organ, b"")
    i = moved.index(b"</retired-ids>") + len(b"</retired-ids>")
    moved = moved[:i] + organ + moved[i:]  # now listed for M-PARIS, before G22
    assert moved != data and len(moved) == len(data)
    with pytest.raises(DirectoryError, match="does not verify"):
        parse_directory(moved, KEY.public)
    renamed = data.replace(b'id="G22"', b'id="G23"')
    with pytest.raises(DirectoryError, match="does not verify"):
        parse_directory(renamed, KEY.public)


def test_a_forged_directory_with_organs_in_another_form_is_refused() -> None:
    data = write_directory(served(), KEY)
    for bad in (
        data.replace(b'<organ id="vxp.saas.03"></organ>', b'<organ id="vxp.saas.03"/>'),
        data.replace(b'id="G22">', b'id="G22" x="1">'),
        data.replace(b'<organ id="G22">', b'<organ id="G22"><organ id="G2"></organ>'),
        data.replace(b"</retired-ids>", b'</retired-ids><unknown state="active"></unknown>'),
        data.replace(b'<organ id="G22">', b'<organ id="a b">'),
    ):
        assert bad != data
        with pytest.raises(DirectoryError):
            parse_directory(bad, KEY.public)


@pytest.mark.parametrize(
    ("organs", "match"),
    [
        ({"M_PARIS": (H41,), "M_HANOI": (H41,)}, "listed for M-PARIS and M-HANOI"),
        ({"M_PARIS": (H41, H41)}, "listed twice for M-PARIS"),
        ({"M_PARIS": (G22,), "M_HANOI": (Organ("g22"),)}, r"M-HANOI \(as G22\)"),
        ({"M_HANOI": (Organ("M-PARIS"),)}, "is the id of site M-PARIS"),
        ({"M_HANOI": (Organ("hq"),)}, "is the id of site HQ"),
        ({"M_PARIS": (Organ("M-HANOI"),)}, "is the id of site M-HANOI"),  # a disabled site
    ],
)
def test_an_organ_is_one_sites_and_never_a_site_id(
    organs: dict[str, tuple[Organ, ...]], match: str
) -> None:
    d = with_organs(golden(), **organs)
    with pytest.raises(OrganReuseError, match=match):
        write_directory(d, KEY)


def test_a_conflict_signed_by_hq_is_refused_by_readers_too() -> None:
    """A directory that breaks the rule never parses, even signed by the trusted key
    (written here by bypassing the writer's check)."""
    ok = write_directory(with_organs(golden(), M_PARIS=(H41,), M_HANOI=(Organ("X1"),)), KEY)
    body = ok[ok.index(b"<body>") : ok.index(b"<signature ")]
    forged_body = body.replace(b'id="X1"', b'id="000.00.00.H41"')
    from crypto.recipes import sign
    from envelope import xmlsafe as x
    from routing.directory import DIRECTORY_LABEL

    signature = sign(KEY, DIRECTORY_LABEL + forged_body)
    forged = (
        ok[: ok.index(b"<body>")]
        + forged_body
        + f'<signature key="{KEY.key_id}">{x.b64encode(signature)}</signature>'.encode()
        + b"</directory>"
    )
    with pytest.raises(OrganReuseError, match="listed for M-PARIS and M-HANOI"):
        parse_directory(forged, KEY.public)


@pytest.mark.parametrize(
    "organ_id",
    ["", "-x", ".x", "_x", "a b", "a/b", "é1", "x" * 65, "1\n", "a:b", "a+b", "Ａ1"],
)
def test_bad_organ_ids_are_refused(organ_id: str) -> None:
    with pytest.raises(OrganError, match="not valid: 1 to 64 of"):
        check_organ_id(organ_id)
    with pytest.raises(SchemaError, match="M-PARIS: organ id"):
        write_directory(with_organs(golden(), M_PARIS=(Organ(organ_id),)), KEY)


@pytest.mark.parametrize("organ_id", ["000.00.00.H41", "G22", "vxp.saas.03", "0", "x" * 64])
def test_real_organ_ids_are_taken(organ_id: str) -> None:
    assert check_organ_id(organ_id) == organ_id


@pytest.mark.parametrize(
    "name",
    ["a\x00b", "tab\there", "line\nbreak", "cr\r", "\x1b[31mred", "bidi\u202eflip",
     "zero\u200bwidth", "sep\u2028", "para\u2029", "\ufffe", "\U0010ffff", "\ufdd0", "\x7f",
     "\x85"],
)  # fmt: skip
def test_names_with_control_or_format_characters_are_refused(name: str) -> None:
    with pytest.raises(OrganError, match="holds U\\+"):
        check_organ_name(name)
    with pytest.raises(SchemaError):
        write_directory(with_organs(golden(), M_PARIS=(Organ("G22", name),)), KEY)


def test_name_length_limit_at_n_minus_1_n_n_plus_1() -> None:
    for n in (MAX_ORGAN_NAME_CHARS - 1, MAX_ORGAN_NAME_CHARS):
        d = with_organs(golden(), M_PARIS=(Organ("G22", "ệ" * n),))
        assert parse_directory(write_directory(d, KEY), KEY.public) == d
    with pytest.raises(OrganError, match="257 characters exceeds the limit of 256"):
        write_directory(
            with_organs(golden(), M_PARIS=(Organ("G22", "ệ" * (MAX_ORGAN_NAME_CHARS + 1)),)),
            KEY,
        )


def test_organs_per_site_limit_at_n_minus_1_n_n_plus_1() -> None:
    def many(n: int) -> tuple[Organ, ...]:
        return tuple(Organ(f"000.00.{i:05d}", f"Sở {i}") for i in range(n))

    for n in (MAX_ORGANS_PER_SITE - 1, MAX_ORGANS_PER_SITE):
        d = with_organs(golden(), M_PARIS=many(n))
        parsed = parse_directory(write_directory(d, KEY), KEY.public)
        assert len(parsed.site("M-PARIS").organs) == n
    with pytest.raises(OrganError, match="lists 1001 organs, over the limit of 1000"):
        write_directory(with_organs(golden(), M_PARIS=many(MAX_ORGANS_PER_SITE + 1)), KEY)


def test_lookups() -> None:
    d = parse_directory(write_directory(served(), KEY), KEY.public)
    assert d.site_for_organ("000.00.00.H41") == "M-PARIS"
    assert d.site_for_organ("vxp.saas.03") == "M-HANOI"  # disabled: the caller says so
    assert d.site_for_organ("000.00.00.h41") is None  # lookups are exact
    assert d.site_for_organ("M-PARIS") is None  # a site id is not an organ
    assert primary_organ(d, "M-PARIS") == H41
    assert primary_organ(d, "HQ") is None
    assert primary_organ(d, "M-NOWHERE") is None


def test_resolve_takes_organ_ids_and_site_ids_in_first_seen_order() -> None:
    d = served()
    names = ["G22", "M-HANOI", "000.00.00.H41", "HQ", "nobody", "G22", "nobody", "m-paris"]
    assert resolve(d, names) == Resolution(
        sites=("M-PARIS", "M-HANOI", "HQ"), unknown=("nobody", "m-paris")
    )
    assert resolve(d, ["vxp.saas.03"]) == Resolution(("M-HANOI",), ())
    assert resolve(d, []) == Resolution((), ())
    assert resolve(golden(), ["000.00.00.H41"]) == Resolution((), ("000.00.00.H41",))


# -- properties -------------------------------------------------------------------

ID_CHARS = st.sampled_from("abcXYZ019._-")
organ_ids = st.one_of(
    st.text(ID_CHARS, min_size=1, max_size=66),
    st.text(min_size=0, max_size=8),
    st.sampled_from(["HQ", "M-PARIS", "m-hanoi", "G22", "g22"]),
)
names = st.one_of(st.text(max_size=40), st.text(min_size=250, max_size=260))


@settings(max_examples=300, deadline=None)
@given(organ_ids, names)
def test_validation_accepts_exactly_the_rule(organ_id: str, name: str) -> None:
    import re

    valid_id = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", organ_id, re.ASCII) is not None
    try:
        check_organ_id(organ_id)
        assert valid_id
    except OrganError:
        assert not valid_id
    with contextlib.suppress(OrganError):
        check_organ_name(name)
        assert len(name) <= MAX_ORGAN_NAME_CHARS
        assert not any(unicodedata.category(c) in {"Cc", "Cf", "Cs", "Zl", "Zp"} for c in name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(["HQ", "M-PARIS", "M-HANOI"]), organ_ids, names), max_size=8)
)
def test_any_organ_list_round_trips_or_is_refused_typed(
    listed: list[tuple[str, str, str]],
) -> None:
    organs: dict[str, list[Organ]] = {}
    for site, organ_id, name in listed:
        organs.setdefault(site, []).append(Organ(organ_id, name))
    d = golden()
    d = replace(d, sites=tuple(replace(e, organs=tuple(organs.get(e.site, []))) for e in d.sites))
    try:
        data = write_directory(d, KEY)
    except (SchemaError, OrganReuseError):
        return
    parsed = parse_directory(data, KEY.public)
    assert parsed == d
    assert write_directory(parsed, KEY) == data
    for e in d.sites:
        for o in e.organs:
            assert parsed.site_for_organ(o.organ_id) == e.site
            assert resolve(parsed, [o.organ_id]).sites == (e.site,)


def test_a_site_enrolled_again_keeps_its_organs() -> None:
    from routing.key_changes import enrol_site

    d = served()
    again = entry("M-PARIS", 7, 8450)  # new keys, no organs: what an enrollment carries
    paris = enrol_site(d, again, now=NOW).site("M-PARIS")
    assert paris.organs == (H41, G22)
