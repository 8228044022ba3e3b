"""Organs: the organisations a site serves, named as the national systems name them.

Real edXML headers address organisations by organ id (``000.00.00.H41``, ``G22``,
``vxp.saas.03``), never by Valise site id. Each site's directory entry lists the organ
ids it serves; HQ publishes them in the signed directory, and a sending site turns
the organ ids of a header into destination sites with :func:`resolve`.

Rules:
- An organ id matches ``[A-Za-z0-9][A-Za-z0-9._-]{0,63}`` (ASCII only); a name is at
  most MAX_ORGAN_NAME_CHARS characters, without control, format (bidi overrides,
  zero-width marks), line or paragraph separator, surrogate or non-characters: it is
  shown in tables and copied into exported headers as it is.
- A site lists at most MAX_ORGANS_PER_SITE organs (the whole directory stays under
  MAX_DIRECTORY_BYTES and the XML element limit: HQ reads every version back before
  it publishes it).
- An organ id is served by one site, once. Ids are compared without regard to case
  for this rule (``g22`` and ``G22`` on two sites would read as one organ to a
  person), and an organ id may not equal any site id in the directory, in any case:
  by the legacy convention a ``To/OrganId`` that is a site id names that site, so
  an organ with a site's id would be ambiguous. Lookups are exact.
- :func:`resolve` takes site ids and organ ids alike; the two never overlap, so the
  order of the lookups decides nothing. A disabled site's organs resolve to it, so a
  sender gives the same answer ("disabled") as for its site id.

Everything here is pure: no I/O. The directory's reader and writer
(routing/directory.py) call :func:`check_site_organs` and :func:`organ_conflict`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from envelope.errors import SchemaError

if TYPE_CHECKING:  # routing/directory.py imports this module
    from routing.directory import Directory

ORGAN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ORGAN_ID_RULE = "1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"
MAX_ORGAN_NAME_CHARS = 256
MAX_ORGANS_PER_SITE = 1000
# Unicode categories refused in a name: controls, format characters (bidi overrides,
# zero-width joiners), surrogates, line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


class OrganError(SchemaError):
    """An organ id or name the directory cannot carry, or too many organs for a site."""


@dataclass(frozen=True)
class Organ:
    organ_id: str
    name: str = ""


@dataclass(frozen=True)
class Resolution:
    """The destination sites a list of names resolves to, first seen first, each once,
    and the names that are neither a site id nor an organ id, likewise."""

    sites: tuple[str, ...]
    unknown: tuple[str, ...]


def check_organ_id(value: str) -> str:
    """``value`` if it is an organ id. Raises OrganError naming the rule."""
    if not isinstance(value, str) or ORGAN_ID_RE.fullmatch(value) is None:
        raise OrganError(f"organ id {value!r} is not valid: {ORGAN_ID_RULE}")
    return value


def _refused_char(c: str) -> bool:
    point = ord(c)
    noncharacter = 0xFDD0 <= point <= 0xFDEF or (point & 0xFFFE) == 0xFFFE
    return noncharacter or unicodedata.category(c) in _REFUSED_CATEGORIES


def check_organ_name(value: str) -> str:
    """``value`` if it can be an organ's name. Raises OrganError saying why not."""
    if not isinstance(value, str):
        raise OrganError("an organ name is text")
    if len(value) > MAX_ORGAN_NAME_CHARS:
        raise OrganError(
            f"organ name of {len(value)} characters exceeds the limit of {MAX_ORGAN_NAME_CHARS}"
        )
    bad = next((c for c in value if _refused_char(c)), None)
    if bad is not None:
        raise OrganError(
            f"organ name {value[:40]!r} holds U+{ord(bad):04X}: no control, format or"
            " separator characters"
        )
    return value


def check_site_organs(site: str, organs: Sequence[Organ]) -> None:
    """The organs one site lists: each well formed, at most MAX_ORGANS_PER_SITE.
    Raises OrganError naming the site."""
    if len(organs) > MAX_ORGANS_PER_SITE:
        raise OrganError(
            f"{site} lists {len(organs)} organs, over the limit of {MAX_ORGANS_PER_SITE}"
        )
    for organ in organs:
        try:
            check_organ_id(organ.organ_id)
            check_organ_name(organ.name)
        except OrganError as exc:
            raise OrganError(f"{site}: {exc}") from None


def organ_conflict(entries: Iterable[tuple[str, Sequence[Organ]]]) -> str | None:
    """Why the organs of (site, organs) ``entries`` break the one-site-per-organ rule,
    or None: an organ id listed twice (for one site or two), or equal to a site id,
    compared without regard to case. The reason names the organ and both places."""
    entries = list(entries)
    sites = {site.casefold(): site for site, _ in entries}
    owner: dict[str, tuple[str, str]] = {}  # folded organ id -> (organ id, site)
    for site, organs in entries:
        for organ in organs:
            folded = organ.organ_id.casefold()
            if folded in sites:
                return (
                    f"organ {organ.organ_id} of {site} is the id of site {sites[folded]}:"
                    " an organ id may not be a site id"
                )
            if folded in owner:
                first, where = owner[folded]
                place = "twice for" if where == site else f"for {where} and"
                same = "" if first == organ.organ_id else f" (as {first})"
                return (
                    f"organ {organ.organ_id} is listed {place} {site}{same}: an organ is"
                    " served by one site"
                )
            owner[folded] = (organ.organ_id, site)
    return None


def resolve(directory: Directory, names: Iterable[str]) -> Resolution:
    """The sites that ``names`` (site ids or organ ids, as a ``To/OrganId`` or a
    ``Valise-To`` gives them) address in ``directory``. Never raises: whether a site
    found is active, or has a key, is the caller's check as for any site id."""
    sites: list[str] = []
    unknown: list[str] = []
    for name in names:
        if any(e.site == name for e in directory.sites):
            site: str | None = name
        else:
            site = directory.site_for_organ(name)
        if site is None:
            if name not in unknown:
                unknown.append(name)
        elif site not in sites:
            sites.append(site)
    return Resolution(tuple(sites), tuple(unknown))


def primary_organ(directory: Directory, site: str) -> Organ | None:
    """The organ a site speaks as (its first listed), for an exported header's From
    and To; None for a site that lists none or is not in ``directory``."""
    entry = next((e for e in directory.sites if e.site == site), None)
    return entry.organs[0] if entry is not None and entry.organs else None
