"""The ``signing-time`` check of an evidence bundle: signatures against trusted time.

A signature's ``created`` (or a receipt's) is the signer's claim. The trusted time of a
signature is the earliest genTime of a verified time-stamp token over the digested
range that holds it (:func:`~gateway.evidence.checks.token_check` verified them): the
signing key must be usable in the bundle's directory in force then, and revoked by no
directory of the bundle issued before. A key some directory revokes, with no token over
its signature, fails: nothing shows it signed before the revocation.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePosixPath

from envelope.head import ParsedHead
from envelope.values import format_time
from gateway.evidence.layout import ENVELOPE_DIGESTED, copy_files, in_force, token_data
from gateway.evidence.state import BundleState, Failed
from routing.directory import USABLE, Directory, DirectoryError, KeyState


def _revoked_by(
    s: BundleState, site: str, key_id: str, before: datetime | None
) -> Directory | None:
    """The first directory of the bundle (issued at or before ``before``, if given) that
    lists ``key_id`` of ``site`` as revoked."""
    found = []
    for d in s.directories:
        try:
            state = d.site(site).states().get(key_id, ("", None))[1]
        except DirectoryError:
            continue
        if state is KeyState.REVOKED and (before is None or d.issued <= before):
            found.append(d)
    return min(found, key=lambda d: d.serial, default=None)


def _signing_time(s: BundleState, parsed: ParsedHead, data_name: str, what: str) -> str:
    """The signer's key must have been usable at the trusted time of its signature: the
    earliest genTime of a verified token over the digested range that holds it (the
    signature existed then), never the ``created`` the signer wrote. Without a token,
    a key that any directory of the bundle revokes fails."""
    site, key_id = parsed.head.routing.origin, parsed.head.signature_key_id
    times = [
        info.gen_time
        for name, info in s.tokens
        if token_data(PurePosixPath(name).name) == data_name
    ]
    if not times:
        d = _revoked_by(s, site, key_id, None)
        if d is not None:
            raise Failed(
                f"{what}: key {key_id} of {site} is revoked (directory serial {d.serial}) and "
                "no time-stamp token shows it signed before; "
                f"{format_time(parsed.head.routing.created)} is only the signer's claim"
            )
        return f"{what}: no token; key {key_id} revoked by no directory in the bundle"
    moment = min(times)
    d = _revoked_by(s, site, key_id, moment)
    if d is not None:
        raise Failed(
            f"{what}: key {key_id} of {site} was revoked (directory serial {d.serial}) before "
            f"the earliest token over it ({format_time(moment)})"
        )
    in_time = in_force(s.need_directories(), moment)
    state = None
    if in_time is not None:
        try:
            state = in_time.site(site).states().get(key_id, ("", None))[1]
        except DirectoryError:
            state = None
    if in_time is None or state not in USABLE:
        serial = "none" if in_time is None else in_time.serial
        raise Failed(
            f"{what}: key {key_id} of {site} was not usable (directory serial {serial}) at "
            f"the earliest token over it ({format_time(moment)})"
        )
    return f"{what}: key {key_id} usable at {format_time(moment)} (token time)"


def check_signing_times(s: BundleState) -> str:
    """Signatures against the time-stamps' time, not the signer's (module docstring)."""
    m = s.need_message()
    said = [_signing_time(s, m, ENVELOPE_DIGESTED, "origin signature")]
    for site, (parsed, _, names) in sorted(s.receipts.items()):
        what = "receipt signature" if names.site is None else f"{site}'s receipt signature"
        said.append(_signing_time(s, parsed, names.digested, what))
    for copy in s.copy_heads:  # earlier copies of the envelope (gateway/evidence/copies.py)
        head_name, digested_name = copy_files(copy.digest)
        said.append(_signing_time(s, copy, digested_name, f"earlier copy {head_name}'s signature"))
    return "; ".join(said)
