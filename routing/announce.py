"""When a key announced as ``next`` may become active: the rule of ``valise keys rotate``.

Rules:
- A key announced as next in directory version N becomes active once every site that
  must know it has fetched version N or later (the version *fetched by all*), or at
  its deadline (announced + ``[keys] announce_seconds``), whichever comes first.
- The sites that count are the directory's active sites except the hub: the hub
  publishes every version, and a disabled site neither sends nor receives.
- A site that never fetched counts as version 0: it holds an activation until the
  deadline, no longer. A site's count is what HQ served to *its* certificate, so
  nothing one site does raises another's; a site can only hold things back, and
  only until the deadline.
- Not knowing the version fetched by all (HQ unreachable) means "not yet": the
  deadline alone applies.

HQ tells its missions the version fetched by all in a small JSON answer
(``GET /v1/directory/fetched``, gateway/trust/announce.py); :func:`parse_answer` is the
one strict reader of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from routing.directory import Directory

MAX_ANSWER_BYTES = 1024  # HQ's answer is two numbers; anything longer is refused
MAX_SERIAL = 2**53  # a directory serial beyond this is nonsense (and not exact in JSON)


class AnnounceAnswerError(ValueError):
    """HQ's answer about the version fetched by all is malformed (one line says how)."""


@dataclass(frozen=True)
class FetchedByAll:
    """HQ's answer: the directory version it serves, and the newest version every
    site that counts has fetched (at most ``serial``)."""

    serial: int
    fetched_by_all: int


def fetched_by_all(directory: Directory, fetched: Mapping[str, int]) -> int:
    """The newest version every active site but the hub has fetched, by HQ's record
    ``fetched`` (site -> newest serial served to it); the current serial when no site
    counts. Never above ``directory.serial``."""
    counted = [
        fetched.get(e.site, 0) for e in directory.sites if e.active and e.site != directory.hub
    ]
    return max(0, min([directory.serial, *counted]))


def activation_reason(
    announced: int, deadline: datetime, fetched: int | None, now: datetime
) -> str | None:
    """Why a key announced in version ``announced`` may become active now, or None if
    it must wait. ``fetched`` is the version fetched by all (None: not known)."""
    if fetched is not None and fetched >= announced:
        return f"every site has fetched directory {announced}"
    if now >= deadline:
        return f"announce deadline {deadline.isoformat()} passed"
    return None


def encode_answer(answer: FetchedByAll) -> bytes:
    return json.dumps(
        {"serial": answer.serial, "fetched_by_all": answer.fetched_by_all}, sort_keys=True
    ).encode()


def parse_answer(data: bytes) -> FetchedByAll:
    """Read HQ's answer: a JSON object with exactly ``serial`` and ``fetched_by_all``,
    whole numbers with 0 <= fetched_by_all <= serial <= MAX_SERIAL. Raises
    :class:`AnnounceAnswerError`."""
    if len(data) > MAX_ANSWER_BYTES:
        raise AnnounceAnswerError(f"answer longer than {MAX_ANSWER_BYTES} bytes")
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise AnnounceAnswerError("answer is not JSON") from None
    if not isinstance(raw, dict) or set(raw) != {"serial", "fetched_by_all"}:
        raise AnnounceAnswerError("answer must hold exactly serial and fetched_by_all")
    serial, fetched = raw["serial"], raw["fetched_by_all"]
    for name, value in (("serial", serial), ("fetched_by_all", fetched)):
        if type(value) is not int or not 0 <= value <= MAX_SERIAL:
            raise AnnounceAnswerError(f"{name} must be a whole number 0 to {MAX_SERIAL}")
    if fetched > serial:
        raise AnnounceAnswerError("fetched_by_all is above the serial HQ serves")
    return FetchedByAll(serial, fetched)


__all__ = [
    "MAX_ANSWER_BYTES",
    "AnnounceAnswerError",
    "FetchedByAll",
    "activation_reason",
    "encode_answer",
    "fetched_by_all",
    "parse_answer",
]
