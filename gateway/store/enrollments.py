"""The values of HQ's enrolment tables (sql/*/v8_enrollments.sql).

- A pending :class:`Enrollment` holds the SHA-256 of its one-time token (never the
  token) and the serial of the bootstrap certificate written to the bundle. It is
  consumed by one conditional ``DELETE … RETURNING`` that checks the token, that
  serial and the expiry together: of two joins with one token, exactly one gets it.
- An :class:`IssuedCertificate` is a TLS certificate HQ issued under the site CA,
  by serial: a ``bootstrap`` one (for one join only) or a ``site`` one (enrolment,
  renewal, rotation). The channel reads it to refuse a bootstrap certificate outside
  its join and to admit a certificate to the TLS recovery case (gateway/channel.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class CertificatePurpose(StrEnum):
    BOOTSTRAP = "bootstrap"
    SITE = "site"


@dataclass(frozen=True)
class Enrollment:
    """A pending enrolment of ``site`` at HQ."""

    site: str
    endpoint: str
    token_sha256: str
    bootstrap_serial: str
    created: datetime
    expires: datetime


@dataclass(frozen=True)
class IssuedCertificate:
    """A TLS certificate HQ issued (serial: lowercase hex, crypto.x509.certificate_serial)."""

    serial: str
    site: str
    purpose: CertificatePurpose
    pin: str
    issued: datetime
    not_after: datetime
