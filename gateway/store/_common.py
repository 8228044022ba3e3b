"""What both backends share: the SQL files, the migration list, state sets, time checks."""

from __future__ import annotations

import string
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from importlib import resources

from gateway.store.base import EnvelopeRecord, OutState, StoreError

# Migrations, oldest first: (version, file under sql/<backend>/). Version 1 is the whole
# schema; a later version would be a file that upgrades a version n-1 database.
# Version 2 stores each delivery's claim order (priority rank, created) on the delivery,
# under an index a claim reads in order.
# Version 3 is the audit log, 4 the time-stamp tokens, 5 the directory fetch record,
# 6 the origin's escrowed content keys (re-sealing), 7 tombstones of deleted messages
# (a replayed copy stays refused until it expires), 8 HQ's pending enrolments and the
# TLS certificates it issued (gateway/store/enrollments.py), 9 the audit witness,
# 10 the digests of the copies a re-sealed or re-signed envelope replaced (a receipt may
# name any of them), 11 delivery state and receipts per final destination (issue 11:
# table destinations, envelopes.completed_at, webhook kind 'completed'), 12 the heads of
# those replaced copies (evidence of a receipt naming one: review 11b, F1).
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, "schema.sql"),
    (2, "v2_claim_order.sql"),
    (3, "v3_audit.sql"),
    (4, "v4_timestamps.sql"),
    (5, "v5_keys.sql"),
    (6, "v6_reseal.sql"),
    (7, "v7_tombstones.sql"),
    (8, "v8_enrollments.sql"),
    (9, "v9_witness.sql"),
    (10, "v10_superseded.sql"),
    (11, "v11_destinations.sql"),
    (12, "v12_superseded_heads.sql"),
)
LATEST_VERSION = MIGRATIONS[-1][0]
# A migration file may be cut by lines ``-- @step NAME``: the backend runs the SQL before
# the line, then its Python step NAME (in the same transaction), then the rest. To
# anything that runs the file as plain SQL the line is a comment.
STEP_MARK = "-- @step "


def migration_parts(sql: str) -> list[tuple[str, str | None]]:
    """The SQL of a migration file cut at its step lines: each part with the name of the
    step to run after it (None after the last part)."""
    parts: list[tuple[str, str | None]] = []
    chunk: list[str] = []
    for line in sql.splitlines(keepends=True):
        if line.startswith(STEP_MARK):
            parts.append(("".join(chunk), line[len(STEP_MARK) :].strip()))
            chunk = []
        else:
            chunk.append(line)
    parts.append(("".join(chunk), None))
    return parts


# Deliveries still trying to reach their next hop: expire() and fail() act on these.
# (The SQL spells some of these sets, and the precedence order flash, immediate,
# priority, routine of envelope.values.Priority, out literally: keep them in step.)
UNDELIVERED: tuple[str, ...] = (
    OutState.QUEUED.value,
    OutState.DEFERRED.value,
    OutState.SENDING.value,
    OutState.HELD.value,
)
HOLDABLE: tuple[str, ...] = (OutState.QUEUED.value, OutState.DEFERRED.value, OutState.SENDING.value)
RETRYABLE: tuple[str, ...] = (OutState.DEFERRED.value, OutState.FAILED.value)

# The claim order's priority rank (deliveries.rank): lower goes first.
RANKS: dict[str, int] = {"flash": 0, "immediate": 1, "priority": 2, "routine": 3}

RECEIPT_REASON = "receipt"
# History reasons of destination rows (docs/AUDIT.md: peer = the destination site).
RELAYED_RECEIPT_REASON = "receipt relayed"  # the hub: a receipt from it passed here
LATE_RECEIPT_REASON = "receipt after failure"  # recorded all the same (proof of delivery)
# A destination row the v11 migration left open because a receipt envelope verified and
# kept before v11 answers it in its plain head, which v10 never checked against the signed
# receipt inside (review 11c): the first start re-checks that receipt with the site's key
# (gateway/relay/kept_receipts.py) and settles the row. Until then nothing fails the row
# (expiry, a refusal: close_open skips it); spelt out in both v11_destinations.sql files.
RECHECK_REASON = "receipt kept before v11: re-checking"
# An inbound receipt whose destination has one already (the store sets the item's reason).
DUPLICATE_RECEIPT = "second receipt from {site}: refused, the first stands"


def second_relayed_receipt(site: str, message_id: str, first: bytes | None) -> str:
    """Why a hub refuses a new receipt envelope from ``site`` for ``message_id`` whose
    destination row took another one already (``first``: its digest; empty or None:
    recorded before schema v11). The wording is gateway/relay/circular.py's, whose check
    runs before the accepting transaction; this one runs inside it (review 11b, F3)."""
    held = f"sha256 {first.hex()[:16]}…" if first else "recorded before schema v11"
    return f"a second receipt from {site} for {message_id}: the first ({held}) stands"


EXPIRED_REASON = "expired"
# A deleted message's tombstone outlives its expiry by this much, so that a copy
# checked as unexpired by a hop handler whose clock is a little behind is still
# refused (gateway/store tombstones, migration v7).
TOMBSTONE_GRACE = timedelta(hours=1)


def split_digests(text: str) -> tuple[bytes, ...]:
    """The digests of ``envelopes.superseded`` (hex SHA-256 digests one after the other,
    migration v10), oldest first. Raises StoreError if the column is not that."""
    if len(text) % 64 or not all(c in string.hexdigits for c in text):
        raise StoreError("superseded digests are not hex SHA-256 digests")
    raw = bytes.fromhex(text)
    return tuple(raw[i : i + 32] for i in range(0, len(raw), 32))


def load_sql(backend: str, name: str) -> str:
    """The text of ``sql/<backend>/<name>`` shipped with this package."""
    return resources.files("gateway.store").joinpath("sql", backend, name).read_text("utf-8")


def aware(moment: datetime, what: str = "time") -> datetime:
    """``moment`` in UTC; a naive datetime is refused (it names no instant)."""
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise StoreError(f"{what} must be a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


def check_limit(limit: int) -> int:
    """A listing's ``limit``: a negative one is refused (it is no "no limit")."""
    if limit < 0:
        raise StoreError(f"limit must not be negative, got {limit}")
    return limit


def check_record(record: EnvelopeRecord) -> None:
    aware(record.created, "created")
    aware(record.expires, "expires")
    if not isinstance(record.data, bytes):
        raise StoreError("envelope data must be bytes")


def rank(priority: str) -> int:
    try:
        return RANKS[str(priority)]
    except KeyError:
        raise StoreError(f"unknown priority {priority!r}") from None


def unique_hops(next_hops: Iterable[str]) -> list[str]:
    """The next hops in order, each once."""
    return list(dict.fromkeys(next_hops))


def reclaim_reason(old_state: str, old_owner: str | None) -> str:
    if old_state == OutState.SENDING:
        return f"lease of {old_owner or '?'} expired"
    return ""
