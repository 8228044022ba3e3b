"""The audit log's values and its hash chain: what an entry is and how it is hashed.

Pure (no I/O): the stores hash with it at append time (the SQLite trigger calls
:func:`entry_hash` through a registered SQL function; PostgreSQL computes the same
bytes in ``sql/postgres/v3_audit.sql``), and ``valise audit verify`` recomputes with it.

Rules (docs/AUDIT.md is the specification; keep the three in step):
- An entry is (seq, at, actor, action, subject, result, detail, prev, hash). ``seq``
  starts at 1 and has no gaps; ``prev`` is the previous entry's ``hash`` (32 zero bytes
  for seq 1); ``detail`` is canonical JSON (:func:`canonical_detail`).
- ``hash = SHA-256(ENTRY_LABEL || u64(seq) || str(at) || str(actor) || str(action) ||
  str(subject) || str(result) || str(detail) || prev)``, where ``u64`` is 8 bytes big
  endian, ``str(x)`` is the 4-byte big-endian length of x's UTF-8 bytes followed by those
  bytes, and ``at`` is written ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, microseconds).
  Every field has a fixed width or a length prefix, so no two entries share an encoding.
- A checkpoint signs ``CHECKPOINT_LABEL || str(site) || u64(seq) || hash || str(at)``
  with the site's Ed25519 signing key; its optional RFC 3161 token is over SHA-256 of
  those same bytes.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

ENTRY_LABEL = b"valise/v1/audit-entry\x00"
CHECKPOINT_LABEL = b"valise/v1/audit-checkpoint\x00"
HASH_BYTES = 32
ZERO_HASH = bytes(HASH_BYTES)
MAX_FIELD_BYTES = 2**32 - 1

# Actions the gateway writes itself (message state changes use the history state,
# without a dot: queued, sending, forwarded, delivered, failed, held, received...).
CHECKPOINT_ACTION = "audit.checkpoint"
# The actor of automatic events while the store does not yet know its site's id.
UNKNOWN_SITE = "site"


class AuditFormatError(ValueError):
    """A value cannot be encoded as an audit entry (wrong type, naive time, too long)."""


@dataclass(frozen=True)
class AuditDraft:
    """An entry to append: the store gives it its seq, prev and hash."""

    at: datetime
    actor: str
    action: str
    subject: str
    result: str
    detail: str  # canonical JSON of a str -> str object


@dataclass(frozen=True)
class AuditEntry:
    """One entry as stored."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    result: str
    detail: str
    prev: bytes
    hash: bytes


@dataclass(frozen=True)
class AuditCheckpoint:
    """A signed statement that the chain's entry ``seq`` had hash ``hash`` at ``at``."""

    seq: int
    hash: bytes
    at: datetime
    signer: str  # the key id of the site signing key that signed it
    signature: bytes
    token: bytes | None = None  # RFC 3161 TimeStampToken over SHA-256(checkpoint_message)


def canonical_time(moment: datetime) -> str:
    """``moment`` as the chain writes it: UTC, microseconds, ``Z``."""
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise AuditFormatError(f"an audit time must be timezone-aware, got {moment!r}")
    m = moment.astimezone(UTC)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond:06d}Z"
    )


def canonical_detail(detail: Mapping[str, str] | None) -> str:
    """Canonical JSON of a str -> str mapping: keys sorted, no spaces, UTF-8 unescaped."""
    if detail is None:
        return "{}"
    for key, value in detail.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise AuditFormatError(f"audit detail must map str to str, got {key!r}: {value!r}")
    return json.dumps(dict(detail), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def history_detail(history_id: int, peer: str | None, reason: str) -> str:
    """The detail of a message state change (a history row): its id, peer and reason."""
    fields = {"history": str(history_id), "reason": reason}
    if peer is not None:
        fields["peer"] = peer
    return canonical_detail(fields)


def _text(value: str) -> bytes:
    if not isinstance(value, str):
        raise AuditFormatError(f"an audit field must be text, got {value!r}")
    data = value.encode("utf-8")
    if len(data) > MAX_FIELD_BYTES:
        raise AuditFormatError("an audit field is longer than 2**32-1 bytes")
    return struct.pack(">I", len(data)) + data


def _seq(seq: int) -> bytes:
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq < 2**63:
        raise AuditFormatError(f"an audit seq is an integer from 1, got {seq!r}")
    return struct.pack(">Q", seq)


def entry_bytes(
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    result: str,
    detail: str,
    prev: bytes,
) -> bytes:
    """The encoding an entry's hash is taken over (see the module rules)."""
    if not isinstance(prev, bytes) or len(prev) != HASH_BYTES:
        raise AuditFormatError("prev is a 32-byte hash")
    return b"".join(
        (
            ENTRY_LABEL,
            _seq(seq),
            _text(canonical_time(at)),
            _text(actor),
            _text(action),
            _text(subject),
            _text(result),
            _text(detail),
            prev,
        )
    )


def entry_hash(
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    result: str,
    detail: str,
    prev: bytes,
) -> bytes:
    """SHA-256 of :func:`entry_bytes`. Raises :class:`AuditFormatError`."""
    return hashlib.sha256(
        entry_bytes(seq, at, actor, action, subject, result, detail, prev)
    ).digest()


def hash_of(entry: AuditEntry, *, seq: int | None = None) -> bytes:
    """The hash ``entry``'s fields give (at ``seq`` instead of its own, if given)."""
    e = entry if seq is None else replace(entry, seq=seq)
    return entry_hash(e.seq, e.at, e.actor, e.action, e.subject, e.result, e.detail, e.prev)


def chain(draft: AuditDraft, seq: int, prev: bytes) -> AuditEntry:
    """The entry ``draft`` becomes at ``seq`` after an entry whose hash is ``prev``."""
    d = draft
    digest = entry_hash(seq, d.at, d.actor, d.action, d.subject, d.result, d.detail, prev)
    return AuditEntry(seq, d.at, d.actor, d.action, d.subject, d.result, d.detail, prev, digest)


def checkpoint_message(site: str, seq: int, hash_: bytes, at: datetime) -> bytes:
    """The bytes a checkpoint's signature (and its time-stamp token's imprint) cover."""
    if not isinstance(hash_, bytes) or len(hash_) != HASH_BYTES:
        raise AuditFormatError("a checkpoint hash is 32 bytes")
    return b"".join((CHECKPOINT_LABEL, _text(site), _seq(seq), hash_, _text(canonical_time(at))))


# -- the witness: HQ's record of each site's latest checkpoint (docs/AUDIT.md) ----------

WITNESS_LABEL = b"valise/v1/audit-witness\x00"
# HQ's own entry for each checkpoint it witnesses (subject = the site) or refuses.
WITNESS_ACTION = "audit.witness"
# Why HQ refused a checkpoint for good: the site's chain went back, or split.
ROLLBACK, FORK = "rollback", "fork"


@dataclass(frozen=True)
class Witness:
    """HQ's signed statement that ``site``'s chain had hash ``hash`` at ``seq``.

    ``signer`` / ``signature`` are the site's checkpoint signature (over
    :func:`checkpoint_message` with ``at``); ``witness_signer`` / ``witness_signature``
    HQ's, over :func:`witness_message`. ``conflict`` is empty, or ROLLBACK / FORK with
    the refused checkpoint's seq, hash and the time HQ saw it (kept for the operator).
    """

    site: str
    seq: int
    hash: bytes
    at: datetime
    signer: str
    signature: bytes
    witness: str
    witnessed_at: datetime
    witness_signer: str
    witness_signature: bytes
    conflict: str = ""
    conflict_seq: int = 0
    conflict_hash: bytes = b""
    conflict_at: datetime | None = None


def witness_message(
    witness: str, site: str, seq: int, hash_: bytes, at: datetime, witnessed_at: datetime
) -> bytes:
    """The bytes HQ signs when it witnesses ``site``'s checkpoint (seq, hash, at)."""
    if not isinstance(hash_, bytes) or len(hash_) != HASH_BYTES:
        raise AuditFormatError("a witnessed hash is 32 bytes")
    return b"".join(
        (
            WITNESS_LABEL,
            _text(witness),
            _text(site),
            _seq(seq),
            hash_,
            _text(canonical_time(at)),
            _text(canonical_time(witnessed_at)),
        )
    )
