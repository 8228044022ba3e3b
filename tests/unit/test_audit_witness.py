"""HQ's witness decision (gateway/audit_witness.judge) and the key history of
gateway/audit_verify: a checkpoint counts only under a key usable at its token's time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crypto.keys import SigningKey
from gateway.proof.audit_verify import KeyHistory
from gateway.proof.witness import SAME, WITNESS_BASE, WITNESSED, judge
from gateway.store.audit_chain import FORK, ROLLBACK, Witness
from routing.directory import Directory, KeyState, SiteEntry

T0 = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)
H5, H6, OTHER = b"\x05" * 32, b"\x06" * 32, b"\xee" * 32
KEY = SigningKey.from_seed(bytes(range(32)))


def held(seq: int = 5, hash_: bytes = H5) -> Witness:
    return Witness("M-PARIS", seq, hash_, T0, "k", b"s", "HQ", T0, "hq", b"t")


def test_the_first_checkpoint_is_witnessed() -> None:
    assert judge(None, 3, H5, None).verdict == WITNESSED


def test_a_lower_seq_is_a_rollback() -> None:
    assert judge(held(), 4, H5, None).verdict == ROLLBACK
    assert judge(held(), 1, H5, (5, H5)).verdict == ROLLBACK


def test_the_same_seq_with_another_hash_is_a_fork() -> None:
    assert judge(held(), 5, OTHER, None).verdict == FORK
    assert judge(held(), 5, H5, None).verdict == SAME


def test_a_higher_seq_must_extend_the_witnessed_hash() -> None:
    assert judge(held(), 9, H6, None).verdict == WITNESS_BASE
    assert judge(held(), 9, H6, (4, H5)).verdict == WITNESS_BASE  # a base at another seq
    assert judge(held(), 9, H6, (5, OTHER)).verdict == FORK
    assert judge(held(), 9, H6, (5, H5)).verdict == WITNESSED


def directory(serial: int, issued: datetime, state: KeyState) -> Directory:
    entry = SiteEntry("M-PARIS", "https://x", ((KEY.public, state),), (), ())
    return Directory(serial, issued, "HQ", (entry,))


HISTORY = KeyHistory(
    "M-PARIS",
    (
        directory(1, T0 - timedelta(days=1), KeyState.ACTIVE),
        directory(2, T0 + timedelta(hours=1), KeyState.REVOKED),
    ),
)


def test_a_revoked_key_counts_only_before_its_revocation_by_the_token() -> None:
    assert HISTORY.refusal(KEY.key_id, T0) is None
    late = HISTORY.refusal(KEY.key_id, T0 + timedelta(hours=2))
    assert late is not None and "revoked" in late and "serial 2" in late
    untimed = HISTORY.refusal(KEY.key_id, None)
    assert untimed is not None and "no time-stamp token" in untimed
    early = HISTORY.refusal(KEY.key_id, T0 - timedelta(days=2))
    assert early is not None and "no directory" in early


def test_a_key_never_revoked_needs_no_token() -> None:
    retired = KeyHistory("M-PARIS", (directory(1, T0, KeyState.RETIRED),))
    assert retired.refusal(KEY.key_id, None) is None
    stamped = retired.refusal(KEY.key_id, T0 + timedelta(hours=1))
    assert stamped is not None and "retired" in stamped
