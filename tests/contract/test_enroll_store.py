"""HQ's enrolment tables on every backend (gateway/store/enrollments.py): a token is
consumed once, atomically, even by concurrent joins in several processes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.store.base import Store
from gateway.store.enrollments import CertificatePurpose, Enrollment, IssuedCertificate
from gateway.store.memory import MemoryStore
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.support.pg import PG_DSN

T0 = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
PENDING = Enrollment(
    site="M-PARIS",
    endpoint="https://127.0.0.1:4443",
    token_sha256="ab" * 32,
    bootstrap_serial="1f2e3d",
    created=T0,
    expires=T0 + timedelta(days=2),
)
BOOTSTRAP = IssuedCertificate(
    serial="1f2e3d",
    site="M-PARIS",
    purpose=CertificatePurpose.BOOTSTRAP,
    pin="cd" * 32,
    issued=T0,
    not_after=T0 + timedelta(days=2),
)


async def _take(store: Store, **changes: object) -> Enrollment | None:
    args: dict[str, object] = {
        "token_sha256": PENDING.token_sha256,
        "bootstrap_serial": PENDING.bootstrap_serial,
        "now": T0 + timedelta(hours=1),
    }
    args.update(changes)
    return await store.enrollment_take("M-PARIS", **args)  # type: ignore[arg-type]


async def test_a_token_is_taken_once_and_only_with_its_serial_before_expiry(store: Store) -> None:
    await store.enrollment_add(PENDING, BOOTSTRAP)
    assert await store.enrollments() == [PENDING]
    assert await store.certificate(BOOTSTRAP.serial) == BOOTSTRAP
    # Refusals change nothing: wrong token, wrong bootstrap serial, expired, other site.
    assert await _take(store, token_sha256="00" * 32) is None
    assert await _take(store, bootstrap_serial="999") is None
    assert await _take(store, now=PENDING.expires) is None
    assert (
        await store.enrollment_take(
            "M-HANOI", token_sha256=PENDING.token_sha256, bootstrap_serial="1f2e3d", now=T0
        )
        is None
    )
    assert await store.enrollments() == [PENDING]
    assert await _take(store) == PENDING
    assert await _take(store) is None  # consumed
    assert await store.enrollments() == []
    # The bootstrap certificate stays recorded: the channel refuses it by serial.
    assert await store.certificate(BOOTSTRAP.serial) == BOOTSTRAP


async def test_a_new_bundle_replaces_the_pending_enrolment_of_its_site(store: Store) -> None:
    await store.enrollment_add(PENDING, BOOTSTRAP)
    again = replace(PENDING, token_sha256="ef" * 32, bootstrap_serial="77")
    await store.enrollment_add(again, replace(BOOTSTRAP, serial="77"))
    assert await store.enrollments() == [again]
    assert await _take(store) is None  # the first bundle's token is void
    assert await _take(store, token_sha256="ef" * 32, bootstrap_serial="77") == again


async def test_issued_certificates_are_recorded_once_by_serial(store: Store) -> None:
    site = replace(BOOTSTRAP, serial="abc", purpose=CertificatePurpose.SITE)
    await store.certificate_add(site)
    await store.certificate_add(replace(site, site="M-EVIL"))  # a serial is never rebound
    assert await store.certificate("abc") == site
    assert await store.certificate("abd") is None


async def test_concurrent_takes_of_one_token_in_two_processes_exactly_one_wins(
    store: Store, sqlite_path: Path
) -> None:
    await store.enrollment_add(PENDING, BOOTSTRAP)
    # A second store on the same database: another gateway process (or connection). The
    # in-memory store has no other process: its concurrent takes all go to the one store.
    if isinstance(store, MemoryStore):
        other: Store = store
    elif isinstance(store, SqliteStore):
        other = await SqliteStore.open(sqlite_path)
    else:
        assert isinstance(store, PostgresStore)
        other = await PostgresStore.open(PG_DSN, schema=store.schema, max_size=4)
    try:
        takes = [_take(s) for s in (store, other) * 4]
        won = [r for r in await asyncio.gather(*takes) if r is not None]
    finally:
        if other is not store:
            await other.close()
    assert won == [PENDING]
    assert await store.enrollments() == []
