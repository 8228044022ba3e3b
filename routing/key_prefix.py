"""Key ids by prefix, like git's abbreviated object names.

``valise keys list`` shows each key by a prefix of its id (a TLS key: of its pin),
and ``keys revoke``, ``activate`` and ``retire`` take one back.

Rules:
- A key id or pin is lowercase hex (32 or 64 characters); a prefix is taken in
  either case and compared in lowercase. Anything else is refused (:class:`PrefixSyntaxError`).
- A prefix shorter than ``MIN_PREFIX_CHARS`` is refused even if it happens to be
  unique (:class:`PrefixTooShort`): a revocation cannot be undone, and a short
  prefix typed by mistake must not pick a key by luck.
- A prefix resolves only if exactly one known id starts with it, or if it is a
  known id in full (a whole id always names its key). Two or more: ambiguous
  (:class:`AmbiguousPrefix`, naming every candidate); none: :class:`NoSuchKey`.
- The ids a prefix is resolved against are the caller's to choose, labelled (e.g.
  "M-HANOI encryption"): an error names the candidates by label. At HQ a revocation
  resolves against every site's keys, so a prefix that also matches another site's
  key is ambiguous, never silently this site's.
- What ``keys list`` prints (:func:`shortest_unique_prefixes`) is each id's shortest
  prefix of at least ``LIST_PREFIX_CHARS`` characters that no other id shares:
  resolved against the same ids, it gives that id back.

Nothing here reads a file; the caller collects the ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MIN_PREFIX_CHARS = 6  # the shortest prefix a command accepts
LIST_PREFIX_CHARS = 12  # the shortest prefix `keys list` prints
MAX_KEY_ID_CHARS = 64  # an SPKI pin (SHA-256, hex); key ids are 32
_HEX = frozenset("0123456789abcdef")


class KeyPrefixError(ValueError):
    """A key id prefix that names no key, or more than one."""


class PrefixSyntaxError(KeyPrefixError):
    """Not a prefix of any key id: empty, too long, or not hexadecimal."""


class PrefixTooShort(KeyPrefixError):
    """Shorter than ``MIN_PREFIX_CHARS``."""


class NoSuchKey(KeyPrefixError):
    """No known id starts with the prefix."""


class AmbiguousPrefix(KeyPrefixError):
    """More than one known id starts with the prefix (``candidates``: id -> label)."""

    def __init__(self, message: str, candidates: Mapping[str, str]) -> None:
        super().__init__(message)
        self.candidates = dict(candidates)


@dataclass(frozen=True)
class KnownKey:
    """A key id (or pin) a prefix may resolve to, and how an error names it."""

    key_id: str
    label: str


def check_prefix(text: str, *, min_chars: int = MIN_PREFIX_CHARS) -> str:
    """``text`` as a lowercase key id prefix. Raises PrefixSyntaxError, PrefixTooShort."""
    prefix = text.strip().lower()
    if not prefix:
        raise PrefixSyntaxError("a key id is needed (a prefix of one from `valise keys list`)")
    if len(prefix) > MAX_KEY_ID_CHARS or not _HEX.issuperset(prefix):
        raise PrefixSyntaxError(
            f"{text[:MAX_KEY_ID_CHARS]!r} is not a key id: ids are hexadecimal,"
            f" at most {MAX_KEY_ID_CHARS} characters"
        )
    if len(prefix) < min_chars:
        raise PrefixTooShort(
            f"key id prefix {prefix!r} is too short: give at least {min_chars} characters"
        )
    return prefix


def resolve_prefix(
    text: str, known: Iterable[KnownKey], *, min_chars: int = MIN_PREFIX_CHARS
) -> str:
    """The one known id that ``text`` is a prefix of (or equals). Raises
    PrefixSyntaxError, PrefixTooShort, NoSuchKey, AmbiguousPrefix."""
    prefix = check_prefix(text, min_chars=min_chars)
    labels: dict[str, str] = {}
    for k in known:
        labels.setdefault(k.key_id, k.label)
    if prefix in labels:
        return prefix
    matches = {key_id: label for key_id, label in labels.items() if key_id.startswith(prefix)}
    if not matches:
        raise NoSuchKey(f"no key id starts with {prefix}")
    if len(matches) > 1:
        listed = ", ".join(f"{key_id} ({label})" for key_id, label in sorted(matches.items()))
        raise AmbiguousPrefix(
            f"key id prefix {prefix} is ambiguous: it matches {listed}; give more characters",
            matches,
        )
    (only,) = matches
    return only


def shortest_unique_prefixes(
    ids: Iterable[str], *, min_chars: int = LIST_PREFIX_CHARS
) -> dict[str, str]:
    """Each id -> its shortest prefix of at least ``min_chars`` characters (the whole id
    if shorter) that is the prefix of no other id, or the whole id if there is none
    (one id a prefix of another)."""
    unique = sorted(set(ids))
    out: dict[str, str] = {}
    for i, key_id in enumerate(unique):
        # In sorted order, the ids sharing the longest prefix with this one are its
        # neighbours: one character more than that is unique.
        shared = max(
            (_common(key_id, unique[j]) for j in (i - 1, i + 1) if 0 <= j < len(unique)),
            default=0,
        )
        out[key_id] = key_id[: max(min_chars, shared + 1)]
    return out


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
