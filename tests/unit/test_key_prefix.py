"""Key ids by prefix (routing/key_prefix.py): a unique prefix resolves to exactly its
id, an ambiguous one never resolves, short or malformed ones are refused, and what
`keys list` prints resolves back to the id it stands for."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from routing.key_prefix import (
    LIST_PREFIX_CHARS,
    MIN_PREFIX_CHARS,
    AmbiguousPrefix,
    KeyPrefixError,
    KnownKey,
    NoSuchKey,
    PrefixSyntaxError,
    PrefixTooShort,
    resolve_prefix,
    shortest_unique_prefixes,
)

HEX = "0123456789abcdef"
key_ids = st.one_of(st.text(HEX, min_size=32, max_size=32), st.text(HEX, min_size=64, max_size=64))
# Ids that share long prefixes, so that ambiguity is common rather than rare.
crowded_ids = st.builds(
    lambda stem, tail: (stem + tail)[:32],
    st.sampled_from(["", "ab", "abcdef", "abcdef012345"]),
    st.text(HEX, min_size=32, max_size=32),
)


def _known(ids: list[str]) -> list[KnownKey]:
    return [KnownKey(i, f"key {n}") for n, i in enumerate(ids)]


@given(st.lists(st.one_of(key_ids, crowded_ids), min_size=1, max_size=12), st.data())
def test_a_prefix_resolves_to_the_one_id_it_starts_or_raises(
    ids: list[str], data: st.DataObject
) -> None:
    target = data.draw(st.sampled_from(ids))
    n = data.draw(st.integers(MIN_PREFIX_CHARS, len(target)))
    prefix = target[:n]
    matching = {i for i in ids if i.startswith(prefix)}
    if len(matching) == 1 or prefix in ids:
        assert resolve_prefix(prefix, _known(ids)) == (prefix if prefix in ids else target)
        assert resolve_prefix(prefix.upper(), _known(ids)) == resolve_prefix(prefix, _known(ids))
    else:
        with pytest.raises(AmbiguousPrefix) as raised:
            resolve_prefix(prefix, _known(ids))
        assert set(raised.value.candidates) == matching
        for candidate in matching:
            assert candidate in str(raised.value)


@given(st.lists(st.one_of(key_ids, crowded_ids), min_size=1, max_size=12))
def test_what_keys_list_prints_resolves_back_to_its_id(ids: list[str]) -> None:
    shown = shortest_unique_prefixes(ids)
    assert set(shown) == set(ids)
    for key_id, prefix in shown.items():
        assert key_id.startswith(prefix)
        assert len(prefix) >= min(LIST_PREFIX_CHARS, len(key_id))
        assert resolve_prefix(prefix, _known(ids)) == key_id
        # Shortest: one character less is ambiguous (or under the floor).
        if len(prefix) > LIST_PREFIX_CHARS:
            others = [i for i in ids if i != key_id and i.startswith(prefix[:-1])]
            assert others


@given(st.lists(key_ids, min_size=1, max_size=6), st.text(max_size=80))
def test_any_text_either_resolves_to_a_known_id_or_raises_a_typed_error(
    ids: list[str], text: str
) -> None:
    try:
        got = resolve_prefix(text, _known(ids))
    except KeyPrefixError:
        return
    assert got in ids and got.startswith(text.strip().lower())


@given(key_ids, st.integers(1, MIN_PREFIX_CHARS - 1))
def test_a_prefix_under_the_minimum_is_refused_even_if_unique(key_id: str, n: int) -> None:
    with pytest.raises(PrefixTooShort, match=f"at least {MIN_PREFIX_CHARS}"):
        resolve_prefix(key_id[:n], _known([key_id]))


def test_the_minimum_length_at_n_minus_1_n_n_plus_1() -> None:
    key_id = "0123456789abcdef" * 2
    with pytest.raises(PrefixTooShort):
        resolve_prefix(key_id[: MIN_PREFIX_CHARS - 1], _known([key_id]))
    assert resolve_prefix(key_id[:MIN_PREFIX_CHARS], _known([key_id])) == key_id
    assert resolve_prefix(key_id[: MIN_PREFIX_CHARS + 1], _known([key_id])) == key_id


@pytest.mark.parametrize("text", ["", "   ", "abcdeg", "abc-def", "0x1234567", "a" * 65, "é" * 8])
def test_malformed_prefixes_are_refused(text: str) -> None:
    with pytest.raises(PrefixSyntaxError):
        resolve_prefix(text, _known(["a" * 32]))


def test_no_key_and_another_sites_key_are_named() -> None:
    own = "abcdef" + "1" * 26
    theirs = "abcdef" + "2" * 26
    known = [KnownKey(own, "HQ signing"), KnownKey(theirs, "M-HANOI encryption")]
    with pytest.raises(NoSuchKey):
        resolve_prefix("fedcba", known)
    with pytest.raises(AmbiguousPrefix, match="M-HANOI encryption"):
        resolve_prefix("abcdef", known)
    assert resolve_prefix("abcdef1", known) == own


@given(key_ids)
def test_a_whole_id_always_names_its_key_even_if_it_prefixes_another(key_id: str) -> None:
    assume(len(key_id) == 32)
    longer = key_id + "0" * 32
    known = _known([key_id, longer])
    assert resolve_prefix(key_id, known) == key_id
    assert shortest_unique_prefixes([key_id, longer])[key_id] == key_id
