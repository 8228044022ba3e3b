"""gateway/cli/table.py: the operator's tables. Whatever the cells hold, columns line up and
never touch, only limited columns are cut (with "…"), and nothing a peer wrote can
break a line or move the cursor."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.cli.table import ELLIPSIS, GAP, Column, cells, cut, printable, render

# Any text at all: control characters, line breaks, escapes, wide and combining
# characters, bidirectional overrides.
ANY_TEXT = st.text(max_size=40)
KEYS = ("a", "b", "c", "d")


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[dict[str, object]], list[Column]]:
    n = draw(st.integers(min_value=1, max_value=len(KEYS)))
    columns = [
        Column(
            KEYS[i],
            draw(ANY_TEXT),
            draw(st.integers(min_value=0, max_value=12)),
            draw(st.sampled_from([0, 1, 2, 5, 20])),
        )
        for i in range(n)
    ]
    value = st.one_of(ANY_TEXT, st.integers(), st.none())
    rows = draw(st.lists(st.dictionaries(st.sampled_from(KEYS[:n]), value, max_size=n), max_size=6))
    return rows, columns


def _cells_of(line: str) -> list[str]:
    """The line as terminal cells: each holds the character drawn there, with the
    combining marks that follow it ("" for the second cell of a wide character)."""
    out: list[str] = []
    for ch in line:
        w = cells(ch)
        if w == 0:
            assert out, "a line starts with a combining mark"
            out[-1 if out[-1] else -2] += ch
        else:
            out += [ch] + [""] * (w - 1)
    return out


@given(tables())
def test_columns_line_up_and_never_touch(
    table: tuple[list[dict[str, object]], list[Column]],
) -> None:
    rows, columns = table
    lines = render(rows, columns)
    assert len(lines) == len(rows) + 1
    values = [[c.title for c in columns]] + [
        ["" if r.get(c.key) is None else r.get(c.key) for c in columns] for r in rows
    ]
    shown = [
        [cut(printable(v), c.limit) for v, c in zip(line, columns, strict=True)] for line in values
    ]
    # Each column starts where the one before it ends (its widest cell), GAP cells on.
    starts = [0]
    for i, c in enumerate(columns[:-1]):
        widest = max([c.width, *(cells(line[i]) for line in shown)])
        starts.append(starts[-1] + widest + GAP)
    for line, texts in zip(lines, shown, strict=True):
        assert line == line.rstrip() and all(ch.isprintable() for ch in line)
        grid = _cells_of(line)
        grid += [" "] * (starts[-1] + 200 - len(grid))  # the spaces rstrip took
        for i, text in enumerate(texts):
            start, width = starts[i], cells(text)
            assert "".join(grid[start : start + width]) == text, (i, line)
            if i + 1 < len(starts):
                gap = grid[start + width : starts[i + 1]]
                assert len(gap) >= GAP and set(gap) == {" "}, (i, line)


@given(ANY_TEXT, st.integers(min_value=1, max_value=30))
def test_a_cut_cell_fits_its_limit_and_says_so(text: str, limit: int) -> None:
    shown = printable(text)
    out = cut(shown, limit)
    assert cells(out) <= limit
    if cells(shown) <= limit:
        assert out == shown
    else:
        assert out.endswith(ELLIPSIS) and shown.startswith(out[: -len(ELLIPSIS)])


@given(ANY_TEXT)
def test_no_cell_carries_a_control_character(text: str) -> None:
    shown = printable(text)
    assert all(ch.isprintable() for ch in shown) and len(shown) == len(text)


def test_an_id_is_never_cut_and_a_long_reason_is() -> None:
    mid = "019a0000-0000-7000-8000-000000000001"
    reason = "refused by HQ: origin signature refused: signing key 3f2a of M-HANOI is revoked"
    lines = render(
        [{"id": mid, "peer": "M-HANOI-LONG-SITE-NAME", "reason": reason}],
        [Column("id", "ID"), Column("peer", "NEXT HOP"), Column("reason", "REASON", limit=30)],
    )
    assert lines[1].startswith(f"{mid}  M-HANOI-LONG-SITE-NAME  ")
    assert lines[1].endswith(ELLIPSIS) and reason[:29] in lines[1] and reason not in lines[1]
    assert lines[0].split() == ["ID", "NEXT", "HOP", "REASON"]


def test_a_forged_line_break_or_escape_stays_in_its_cell() -> None:
    lines = render(
        [{"reason": "ok\nfake-id  delivered\x1b[2J\u202eevil"}], [Column("reason", "REASON")]
    )
    assert len(lines) == 2 and lines[1] == "ok?fake-id  delivered?[2J?evil"


def test_wide_characters_count_two_cells() -> None:
    lines = render(
        [{"a": "漢字", "b": "x"}, {"a": "ab", "b": "y"}], [Column("a", "A"), Column("b", "B")]
    )
    assert lines[1] == "漢字  x" and lines[2] == "ab    y"


def test_a_cell_starting_with_a_combining_mark_does_not_reach_into_the_gap() -> None:
    lines = render([{"a": "x", "b": "\u0301y"}], [Column("a", "A"), Column("b", "B")])
    assert lines[1] == "x  ?y"
