"""Tables for people: the text form of ``valise ... list`` and ``valise doctor``.

Rules:
- A column is as wide as its widest cell (its title included, and at least its
  ``width``), measured in terminal cells: a wide (East Asian) character counts two, a
  combining mark none. Columns are separated by ``GAP`` spaces, so no two ever touch,
  whatever they hold; the last column is not padded.
- A cell is never cut unless its column has a ``limit``: then a longer cell is cut to
  ``limit`` cells, its last one "…". Identifiers get no limit (an operator copies them).
- What a peer wrote may reach a cell (a refusal's reason): every character that is not
  printable (control characters, line breaks, escape sequences, bidirectional
  overrides) is shown as "?", so a cell can neither start a new line nor move the
  cursor nor reorder what the operator reads; so is a combining mark a cell starts
  with (it would sit on the gap before it).
- Only the text form: ``--json`` carries the values as they are, never cut.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

GAP = 2
ELLIPSIS = "…"


class Column(NamedTuple):
    key: str  # the row's key
    title: str
    width: int = 0  # the least width, in cells
    limit: int = 0  # cut longer cells to this many cells (0: never cut)


def printable(value: object) -> str:
    """``value`` as text with every non-printable character shown as "?", and so is a
    combining mark it starts with (it would sit on the space before its cell)."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    if text and _char_cells(text[0]) == 0:
        text = "?" + text[1:]
    return text


def _char_cells(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def cells(text: str) -> int:
    """How many terminal cells ``text`` (printable) takes."""
    return sum(_char_cells(ch) for ch in text)


def cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` cells (``limit`` >= 1), ending in "…" if cut."""
    if limit <= 0 or cells(text) <= limit:
        return text
    out: list[str] = []
    used = 0
    for ch in text:
        w = _char_cells(ch)
        if used + w > limit - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + ELLIPSIS


def _pad(text: str, width: int) -> str:
    return text + " " * (width - cells(text))


def render(rows: Iterable[Mapping[str, Any]], columns: Sequence[Column]) -> list[str]:
    """The table's lines: a title line, then one line per row (a missing key or None
    is an empty cell)."""
    body = [
        [cut(printable("" if row.get(c.key) is None else row.get(c.key)), c.limit) for c in columns]
        for row in rows
    ]
    titles = [cut(printable(c.title), c.limit) for c in columns]
    widths = [
        max([c.width, cells(titles[i]), *(cells(line[i]) for line in body)])
        for i, c in enumerate(columns)
    ]
    lines = []
    for line in [titles, *body]:
        padded = [_pad(text, widths[i]) for i, text in enumerate(line)]
        lines.append((" " * GAP).join(padded).rstrip())
    return lines
