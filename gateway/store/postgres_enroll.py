"""HQ's enrolment part of the PostgreSQL store: pending enrolments, certificates issued.

A mixin of :class:`gateway.store.postgres.PostgresStore` (``_read`` / ``_write``: one
transaction each). The token is consumed by one conditional ``DELETE … RETURNING``:
under READ COMMITTED a second, concurrent delete of the same row waits for the first
to commit, then finds the row gone and returns nothing.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from gateway.store._common import aware
from gateway.store.enrollments import CertificatePurpose, Enrollment, IssuedCertificate

T = TypeVar("T")
Conn = Any  # asyncpg.Connection

_ENROLLMENT = "site, endpoint, token_sha256, bootstrap_serial, created_at, expires_at"
_CERTIFICATE = "serial, site, purpose, pin, issued_at, not_after"
# Consuming a pending enrolment: one conditional statement, atomic on its own.
_TAKE = (
    "DELETE FROM enrollments WHERE site = $1 AND token_sha256 = $2"  # noqa: S608
    " AND bootstrap_serial = $3 AND expires_at > $4"
    f" RETURNING {_ENROLLMENT}"
)
_ADD_CERTIFICATE = (
    f"INSERT INTO tls_certificates ({_CERTIFICATE}) VALUES ($1, $2, $3, $4, $5, $6)"  # noqa: S608
    " ON CONFLICT (serial) DO NOTHING"
)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _enrollment(r: Any) -> Enrollment:
    return Enrollment(
        r["site"],
        r["endpoint"],
        r["token_sha256"],
        r["bootstrap_serial"],
        _utc(r["created_at"]),
        _utc(r["expires_at"]),
    )


def _certificate(r: Any) -> IssuedCertificate:
    return IssuedCertificate(
        r["serial"],
        r["site"],
        CertificatePurpose(r["purpose"]),
        r["pin"],
        _utc(r["issued_at"]),
        _utc(r["not_after"]),
    )


def _certificate_args(cert: IssuedCertificate) -> tuple[object, ...]:
    return (
        cert.serial,
        cert.site,
        cert.purpose.value,
        cert.pin,
        aware(cert.issued),
        aware(cert.not_after),
    )


class PostgresEnroll:
    """The enrolment and issued-certificate methods of the Store protocol."""

    @abstractmethod
    async def _read(self, fn: Callable[[Conn], Awaitable[T]]) -> T: ...  # provided by PostgresStore

    @abstractmethod
    async def _write(
        self, fn: Callable[[Conn], Awaitable[T]]
    ) -> T: ...  # provided by PostgresStore

    async def enrollment_add(self, enrollment: Enrollment, bootstrap: IssuedCertificate) -> None:
        e = enrollment

        async def tx(conn: Conn) -> None:
            await conn.execute(
                f"INSERT INTO enrollments ({_ENROLLMENT}) VALUES ($1, $2, $3, $4, $5, $6)"  # noqa: S608
                " ON CONFLICT (site) DO UPDATE SET endpoint = excluded.endpoint,"
                " token_sha256 = excluded.token_sha256,"
                " bootstrap_serial = excluded.bootstrap_serial,"
                " created_at = excluded.created_at, expires_at = excluded.expires_at",
                e.site,
                e.endpoint,
                e.token_sha256,
                e.bootstrap_serial,
                aware(e.created),
                aware(e.expires),
            )
            await conn.execute(_ADD_CERTIFICATE, *_certificate_args(bootstrap))

        await self._write(tx)

    async def enrollment_take(
        self, site: str, *, token_sha256: str, bootstrap_serial: str, now: datetime
    ) -> Enrollment | None:
        at = aware(now)

        async def tx(conn: Conn) -> Enrollment | None:
            row = await conn.fetchrow(
                _TAKE,
                site,
                token_sha256,
                bootstrap_serial,
                at,
            )
            return None if row is None else _enrollment(row)

        return await self._write(tx)

    async def enrollments(self) -> list[Enrollment]:
        async def q(conn: Conn) -> list[Enrollment]:
            rows = await conn.fetch(f"SELECT {_ENROLLMENT} FROM enrollments ORDER BY site")  # noqa: S608
            return [_enrollment(r) for r in rows]

        return await self._read(q)

    async def certificate_add(self, cert: IssuedCertificate) -> None:
        async def tx(conn: Conn) -> None:
            await conn.execute(_ADD_CERTIFICATE, *_certificate_args(cert))

        await self._write(tx)

    async def certificate(self, serial: str) -> IssuedCertificate | None:
        async def q(conn: Conn) -> IssuedCertificate | None:
            row = await conn.fetchrow(
                f"SELECT {_CERTIFICATE} FROM tls_certificates WHERE serial = $1",  # noqa: S608
                serial,
            )
            return None if row is None else _certificate(row)

        return await self._read(q)
