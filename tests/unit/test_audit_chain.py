"""The audit chain: its encoding and hash, and that verify finds every kind of tampering."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import click
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.keys import SigningKey
from crypto.recipes import sign
from gateway.cli.record import REDACTED, redact
from gateway.proof.audit_verify import verify_entries
from gateway.store.audit_chain import (
    ZERO_HASH,
    AuditCheckpoint,
    AuditDraft,
    AuditEntry,
    AuditFormatError,
    canonical_detail,
    canonical_time,
    chain,
    checkpoint_message,
    entry_bytes,
    entry_hash,
    hash_of,
    history_detail,
)

T0 = datetime(2026, 12, 1, 9, 0, 0, 123456, tzinfo=UTC)
KEY = SigningKey.from_seed(bytes(range(32)))
OTHER = SigningKey.from_seed(bytes(32))
SITE = "M-PARIS"
KEYS = {KEY.key_id: KEY.public}


def build(drafts: list[AuditDraft]) -> list[AuditEntry]:
    out: list[AuditEntry] = []
    prev = ZERO_HASH
    for n, d in enumerate(drafts, start=1):
        out.append(chain(d, n, prev))
        prev = out[-1].hash
    return out


def drafts(n: int) -> list[AuditDraft]:
    return [
        AuditDraft(T0 + timedelta(seconds=i), SITE, "queued", f"m-{i}", "ok", "{}")
        for i in range(n)
    ]


def checkpoint(entry: AuditEntry, key: SigningKey = KEY) -> AuditCheckpoint:
    message = checkpoint_message(SITE, entry.seq, entry.hash, T0)
    return AuditCheckpoint(entry.seq, entry.hash, T0, key.key_id, sign(key, message))


def verify(entries: list[AuditEntry], cps: list[AuditCheckpoint] | None = None):  # type: ignore[no-untyped-def]
    return verify_entries(entries, cps or [], site=SITE, keys=KEYS)


# -- the encoding ---------------------------------------------------------------------------


def test_entry_encoding_is_the_documented_one() -> None:
    def text(s: str) -> bytes:
        return struct.pack(">I", len(s.encode())) + s.encode()

    got = entry_bytes(7, T0, "HQ", "queued", "m-1", "ok", '{"a":"é"}', b"\x11" * 32)
    want = (
        b"valise/v1/audit-entry\x00"
        + (7).to_bytes(8, "big")
        + text("2026-12-01T09:00:00.123456Z")
        + text("HQ")
        + text("queued")
        + text("m-1")
        + text("ok")
        + text('{"a":"é"}')
        + b"\x11" * 32
    )
    assert got == want
    assert entry_hash(7, T0, "HQ", "queued", "m-1", "ok", '{"a":"é"}', b"\x11" * 32) == (
        hashlib.sha256(want).digest()
    )


def test_length_prefixes_keep_fields_apart() -> None:
    a = entry_hash(1, T0, "ab", "c", "", "ok", "{}", ZERO_HASH)
    b = entry_hash(1, T0, "a", "bc", "", "ok", "{}", ZERO_HASH)
    assert a != b


def test_time_is_utc_with_microseconds() -> None:
    paris = T0.astimezone(timezone(timedelta(hours=1)))
    assert canonical_time(paris) == "2026-12-01T09:00:00.123456Z"
    assert canonical_time(T0.replace(microsecond=0)) == "2026-12-01T09:00:00.000000Z"
    with pytest.raises(AuditFormatError):
        canonical_time(datetime(2026, 1, 1))


def test_detail_is_canonical_json() -> None:
    assert canonical_detail({"b": "1", "a": 'x"\n\x01é'}) == '{"a":"x\\"\\n\\u0001é","b":"1"}'
    assert canonical_detail(None) == "{}"
    assert history_detail(5, None, "r") == '{"history":"5","reason":"r"}'
    assert history_detail(5, "HQ", "") == '{"history":"5","peer":"HQ","reason":""}'
    with pytest.raises(AuditFormatError):
        canonical_detail({"a": 1})  # type: ignore[dict-item]


def test_bad_values_are_refused() -> None:
    with pytest.raises(AuditFormatError):
        entry_hash(0, T0, "a", "b", "", "ok", "{}", ZERO_HASH)
    with pytest.raises(AuditFormatError):
        entry_hash(1, T0, "a", "b", "", "ok", "{}", b"short")
    with pytest.raises(AuditFormatError):
        checkpoint_message(SITE, 1, b"short", T0)


# -- verify: an intact log ----------------------------------------------------------------


def test_an_intact_log_verifies_and_reports_what_is_not_checkpointed() -> None:
    entries = build(drafts(10))
    report = verify(entries, [checkpoint(entries[5])])
    assert report.ok and report.entries == 10 and report.last_checkpoint == 6
    assert report.unchecked == (7, 10)
    assert verify([]).ok


# -- verify: every kind of tampering ------------------------------------------------------

_FIELDS = st.sampled_from(["at", "actor", "action", "subject", "result", "detail", "prev", "hash"])


def _changed(entry: AuditEntry, name: str) -> AuditEntry:
    value = getattr(entry, name)
    if isinstance(value, bytes):
        return replace(entry, **{name: bytes([value[0] ^ 1]) + value[1:]})
    if isinstance(value, datetime):
        return replace(entry, at=value + timedelta(microseconds=1))
    return replace(entry, **{name: value + "x"})


@settings(max_examples=150, deadline=None)
@given(n=st.integers(2, 30), data=st.data())
def test_any_changed_field_is_found_at_its_entry(n: int, data: st.DataObject) -> None:
    entries = build(drafts(n))
    i = data.draw(st.integers(0, n - 1))
    name = data.draw(_FIELDS)
    entries[i] = _changed(entries[i], name)
    first = verify(entries, [checkpoint(build(drafts(n))[-1])]).first
    assert first is not None and (first.seq, first.kind) == (i + 1, "changed")


@settings(max_examples=100, deadline=None)
@given(n=st.integers(2, 30), data=st.data())
def test_any_removed_entry_is_found(n: int, data: st.DataObject) -> None:
    entries = build(drafts(n))
    cps = [checkpoint(entries[-1])]
    i = data.draw(st.integers(0, n - 1))
    renumber = data.draw(st.booleans())
    kept = entries[:i] + [replace(e, seq=e.seq - 1) if renumber else e for e in entries[i + 1 :]]
    first = verify(kept, cps).first
    assert first is not None and (first.seq, first.kind) == (i + 1, "removed"), first


@settings(max_examples=100, deadline=None)
@given(n=st.integers(2, 30), data=st.data())
def test_any_swapped_pair_is_found_as_reordered(n: int, data: st.DataObject) -> None:
    entries = build(drafts(n))
    i = data.draw(st.integers(0, n - 2))
    j = data.draw(st.integers(i + 1, n - 1))
    a, b = entries[i], entries[j]
    entries[i], entries[j] = replace(b, seq=a.seq), replace(a, seq=b.seq)
    first = verify(entries).first
    assert first is not None and (first.seq, first.kind) == (i + 1, "reordered"), first


def test_a_rehashed_rewrite_is_caught_by_the_checkpoint() -> None:
    entries = build(drafts(8))
    cps = [checkpoint(entries[2]), checkpoint(entries[6])]
    forged = drafts(8)
    forged[4] = replace(forged[4], subject="m-forged")
    first = verify(build(forged), cps).first  # every hash recomputed: the chain links
    assert first is not None and (first.seq, first.kind) == (4, "changed")
    assert "rewritten" in first.what


def test_a_cut_off_tail_is_caught_by_the_checkpoint() -> None:
    entries = build(drafts(8))
    first = verify(entries[:5], [checkpoint(entries[7])]).first
    assert first is not None and (first.seq, first.kind) == (6, "removed")


def test_a_forged_or_unknown_checkpoint_is_reported() -> None:
    entries = build(drafts(4))
    forged = replace(checkpoint(entries[1]), signature=bytes(64))
    stranger = checkpoint(entries[2], OTHER)
    report = verify(entries, [forged, stranger])
    assert [(f.seq, f.kind) for f in report.findings] == [(2, "checkpoint"), (3, "checkpoint")]
    assert "signature" in report.findings[0].what and "unknown signer" in report.findings[1].what
    assert report.last_checkpoint == 0


def test_a_deleted_checkpoint_is_found_through_its_record() -> None:
    entries = build(drafts(3))
    cp = checkpoint(entries[2])
    record = AuditDraft(T0, SITE, "audit.checkpoint", "3", "ok", "{}")
    entries.append(chain(record, 4, entries[2].hash))
    assert verify(entries, [cp]).ok
    first = verify(entries).first
    assert first is not None and (first.seq, first.kind) == (3, "checkpoint")


def test_hash_of_at_another_seq() -> None:
    e = build(drafts(3))[2]
    assert hash_of(e) == e.hash and hash_of(e, seq=2) != e.hash


# -- operator commands: secrets are not logged ----------------------------------------------


def test_secret_option_values_are_redacted() -> None:
    @click.command()
    @click.option("--token")
    @click.option("--db-password")
    @click.option("--name")
    def cmd(token: str, db_password: str, name: str) -> None: ...

    args = ["--token", "t0p", "--db-password=pw", "--name", "bob", "x"]
    assert redact(cmd, args) == [
        "--token",
        REDACTED,
        f"--db-password={REDACTED}",
        "--name",
        "bob",
        "x",
    ]
