"""The v11 migration's Python step, its pure parts: a migration file cut at its step
lines (gateway/store/_common.py migration_parts) and a kept receipt's attribution
(gateway/store/migrate_v11.py attribute) on bytes that are not a receipt envelope."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.store._common import RECHECK_REASON, STEP_MARK, load_sql, migration_parts
from gateway.store.migrate_v11 import STEP, attribute

LINES = st.lists(
    st.one_of(
        st.text(
            alphabet=st.characters(blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
        ),
        st.sampled_from([f"{STEP_MARK}a", f"{STEP_MARK}b_2", "-- @stepx", "-- a comment"]),
    ),
    max_size=12,
)


@given(LINES)
def test_the_parts_and_their_steps_give_the_file_back(lines: list[str]) -> None:
    sql = "".join(line + "\n" for line in lines)
    parts = migration_parts(sql)
    assert parts[-1][1] is None
    assert [s for _, s in parts[:-1]] == [
        line[len(STEP_MARK) :] for line in lines if line.startswith(STEP_MARK)
    ]
    back = "".join(chunk + (f"{STEP_MARK}{step}\n" if step else "") for chunk, step in parts)
    assert back == sql


def test_the_v11_files_run_the_kept_receipts_step_once() -> None:
    for backend in ("sqlite", "postgres"):
        steps = [s for _, s in migration_parts(load_sql(backend, "v11_destinations.sql"))]
        assert steps == [STEP, None]


@given(st.binary(max_size=512))
def test_bytes_that_are_not_a_receipt_envelope_attribute_nothing(data: bytes) -> None:
    row = ("0190000a-0000-7000-8000-000000000001", "M-HANOI", b"\x00" * 32, data, "t")
    assert attribute(row, {("x", "M-HANOI")}) is None


def test_the_v11_files_spell_the_recheck_reason_as_the_code_does() -> None:
    """The SQL leaves a row marked by the step alone (review 11c): it must spell the
    reason the step writes and the store's expiry and re-check read."""
    for backend in ("sqlite", "postgres"):
        sql = load_sql(backend, "v11_destinations.sql")
        assert sql.count(f"t.reason <> '{RECHECK_REASON}'") == 2, backend
