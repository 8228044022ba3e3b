"""HQ's enrolment part of the store: pending enrolments, certificates issued.

One implementation for both backends, over the store's driver (driver.py) and
sql/queries/enroll.sql. The token is consumed by one conditional ``DELETE … RETURNING``
(gateway/store/enrollments.py).
"""

from __future__ import annotations

from datetime import datetime

from gateway.store._common import aware
from gateway.store.driver import Conn, OnDriver, Row, when
from gateway.store.enrollments import CertificatePurpose, Enrollment, IssuedCertificate
from gateway.store.queries import Queries


def _enrollment(r: Row) -> Enrollment:
    return Enrollment(
        r["site"],
        r["endpoint"],
        r["token_sha256"],
        r["bootstrap_serial"],
        when(r["created_at"]),
        when(r["expires_at"]),
    )


def _certificate(r: Row) -> IssuedCertificate:
    return IssuedCertificate(
        r["serial"],
        r["site"],
        CertificatePurpose(r["purpose"]),
        r["pin"],
        when(r["issued_at"]),
        when(r["not_after"]),
    )


async def _add_certificate(c: Conn, q: Queries, cert: IssuedCertificate) -> None:
    await c.execute(
        q.certificate_add,
        serial=cert.serial,
        site=cert.site,
        purpose=cert.purpose.value,
        pin=cert.pin,
        issued=aware(cert.issued),
        not_after=aware(cert.not_after),
    )


class Enroll(OnDriver):
    """The enrolment and issued-certificate methods of the Store protocol."""

    async def enrollment_add(self, enrollment: Enrollment, bootstrap: IssuedCertificate) -> None:
        e, q = enrollment, self._sql("enroll")
        created, expires = aware(e.created), aware(e.expires)

        async def tx(c: Conn) -> None:
            await c.execute(
                q.enrollment_add,
                site=e.site,
                endpoint=e.endpoint,
                token_sha256=e.token_sha256,
                bootstrap_serial=e.bootstrap_serial,
                created=created,
                expires=expires,
            )
            await _add_certificate(c, q, bootstrap)

        await self._db.transaction(tx)

    async def enrollment_take(
        self, site: str, *, token_sha256: str, bootstrap_serial: str, now: datetime
    ) -> Enrollment | None:
        q, at = self._sql("enroll"), aware(now)

        async def tx(c: Conn) -> Enrollment | None:
            row = await c.fetchrow(
                q.enrollment_take,
                site=site,
                token_sha256=token_sha256,
                bootstrap_serial=bootstrap_serial,
                now=at,
            )
            return None if row is None else _enrollment(row)

        return await self._db.transaction(tx)

    async def enrollments(self) -> list[Enrollment]:
        q = self._sql("enroll")

        async def read(c: Conn) -> list[Enrollment]:
            return [_enrollment(r) for r in await c.fetch(q.enrollments)]

        return await self._db.read(read)

    async def certificate_add(self, cert: IssuedCertificate) -> None:
        q = self._sql("enroll")

        async def tx(c: Conn) -> None:
            await _add_certificate(c, q, cert)

        await self._db.transaction(tx)

    async def certificate(self, serial: str) -> IssuedCertificate | None:
        q = self._sql("enroll")

        async def read(c: Conn) -> IssuedCertificate | None:
            row = await c.fetchrow(q.certificate, serial=serial)
            return None if row is None else _certificate(row)

        return await self._db.read(read)
