"""HQ's enrolment part of the SQLite store: pending enrolments, certificates issued.

A mixin of :class:`gateway.store.sqlite.SqliteStore` (see sqlite_integrators.py for
the conventions: ``_read`` / ``_write`` on the store's thread in one ``BEGIN IMMEDIATE
… COMMIT``, times as ISO text). The token is consumed by one conditional ``DELETE …
RETURNING`` (gateway/store/enrollments.py).
"""

from __future__ import annotations

import sqlite3
from abc import abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from gateway.store._common import aware
from gateway.store.enrollments import CertificatePurpose, Enrollment, IssuedCertificate

T = TypeVar("T")

_ENROLLMENT = "site, endpoint, token_sha256, bootstrap_serial, created_at, expires_at"
_CERTIFICATE = "serial, site, purpose, pin, issued_at, not_after"
# Consuming a pending enrolment: one conditional statement, atomic on its own.
_TAKE = (
    "DELETE FROM enrollments WHERE site = ? AND token_sha256 = ?"  # noqa: S608
    " AND bootstrap_serial = ? AND expires_at > ?"
    f" RETURNING {_ENROLLMENT}"
)


def _ts(moment: datetime) -> str:
    return aware(moment).isoformat(timespec="microseconds")


def _dt(text: object) -> datetime:
    return datetime.fromisoformat(str(text)).astimezone(UTC)


def _enrollment(r: tuple[object, ...]) -> Enrollment:
    return Enrollment(str(r[0]), str(r[1]), str(r[2]), str(r[3]), _dt(r[4]), _dt(r[5]))


def _certificate(r: tuple[object, ...]) -> IssuedCertificate:
    return IssuedCertificate(
        str(r[0]), str(r[1]), CertificatePurpose(str(r[2])), str(r[3]), _dt(r[4]), _dt(r[5])
    )


def _add_certificate(c: sqlite3.Connection, cert: IssuedCertificate) -> None:
    c.execute(
        f"INSERT INTO tls_certificates ({_CERTIFICATE}) VALUES (?, ?, ?, ?, ?, ?)"  # noqa: S608
        " ON CONFLICT (serial) DO NOTHING",
        (
            cert.serial,
            cert.site,
            cert.purpose.value,
            cert.pin,
            _ts(cert.issued),
            _ts(cert.not_after),
        ),
    )


class SqliteEnroll:
    """The enrolment and issued-certificate methods of the Store protocol."""

    @abstractmethod
    async def _read(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> T: ...  # provided by SqliteStore

    @abstractmethod
    async def _write(
        self, fn: Callable[[sqlite3.Connection], T]
    ) -> T: ...  # provided by SqliteStore

    async def enrollment_add(self, enrollment: Enrollment, bootstrap: IssuedCertificate) -> None:
        e = enrollment

        def tx(c: sqlite3.Connection) -> None:
            c.execute(
                f"INSERT INTO enrollments ({_ENROLLMENT}) VALUES (?, ?, ?, ?, ?, ?)"  # noqa: S608
                " ON CONFLICT (site) DO UPDATE SET endpoint = excluded.endpoint,"
                " token_sha256 = excluded.token_sha256,"
                " bootstrap_serial = excluded.bootstrap_serial,"
                " created_at = excluded.created_at, expires_at = excluded.expires_at",
                (
                    e.site,
                    e.endpoint,
                    e.token_sha256,
                    e.bootstrap_serial,
                    _ts(e.created),
                    _ts(e.expires),
                ),
            )
            _add_certificate(c, bootstrap)

        await self._write(tx)

    async def enrollment_take(
        self, site: str, *, token_sha256: str, bootstrap_serial: str, now: datetime
    ) -> Enrollment | None:
        at = _ts(now)

        def tx(c: sqlite3.Connection) -> Enrollment | None:
            row = c.execute(
                _TAKE,
                (site, token_sha256, bootstrap_serial, at),
            ).fetchone()
            return None if row is None else _enrollment(row)

        return await self._write(tx)

    async def enrollments(self) -> list[Enrollment]:
        def q(c: sqlite3.Connection) -> list[Enrollment]:
            rows = c.execute(
                f"SELECT {_ENROLLMENT} FROM enrollments ORDER BY site"  # noqa: S608
            ).fetchall()
            return [_enrollment(r) for r in rows]

        return await self._read(q)

    async def certificate_add(self, cert: IssuedCertificate) -> None:
        await self._write(lambda c: _add_certificate(c, cert))

    async def certificate(self, serial: str) -> IssuedCertificate | None:
        def q(c: sqlite3.Connection) -> IssuedCertificate | None:
            row = c.execute(
                f"SELECT {_CERTIFICATE} FROM tls_certificates WHERE serial = ?",  # noqa: S608
                (serial,),
            ).fetchone()
            return None if row is None else _certificate(row)

        return await self._read(q)
