"""Which certificate of the site CA may do what on the channel's unpinned paths.

Every certificate the site CA issued passes the TLS handshake (gateway/site/tls.py); the
signed directory says which keys are pinned for which site. Documents (``/v1/hop``)
need a pinned key (gateway/relay/channel.py). Three paths take some unpinned certificates,
each for one purpose, decided here by the certificate's serial and its key's state:

``/v1/enroll``
    Only a *bootstrap* certificate HQ issued to the peer (recorded by ``site add``);
    the join then consumes the pending enrolment whose bootstrap serial it is
    (gateway/trust/enroll.py), so once the join is done the certificate opens nothing.
``/v1/keys``
    A certificate whose key is pinned for the peer (next, active or retiring), or the
    *recovery* case: its key is one HQ *revoked* for this site, HQ issued it to this
    site (a recorded ``site`` serial), and the site has no active TLS key in the
    directory (the revoked key was not replaced yet). In recovery only a TLS key
    replacement may be posted (gateway/trust/key_updates.py ``check_recovery``). A bootstrap
    certificate, a replaced (retired) one, an unrecorded one: refused.
``/v1/directory``
    Any certificate but a bootstrap one: the directory is signed and public, and a
    site whose keys HQ revoked must still learn it.

Rules:
- A refusal names the reason and changes nothing; the caller answers 403 and closes
  the connection, so a site that rotated reconnects with its new certificate.
- The store is asked only on these paths (rare): ``/v1/hop`` stays a pin lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from aiohttp import web

from crypto.x509 import certificate_not_after, certificate_pin, certificate_serial
from gateway.store.base import Store
from gateway.store.enrollments import CertificatePurpose, IssuedCertificate
from routing.directory import Directory, KeyState

ENROLL_PATH = "/v1/enroll"
KEYS_PATH = "/v1/keys"
DIRECTORY_PATH = "/v1/directory"
UNPINNED_PATHS = (ENROLL_PATH, KEYS_PATH, DIRECTORY_PATH)


class Standing(StrEnum):
    """What the peer's certificate is, for the path it asks."""

    PINNED = "pinned"  # its key is pinned for the peer
    RECOVERY = "recovery"  # revoked by HQ, not replaced yet: a TLS key replacement only
    BOOTSTRAP = "bootstrap"  # a bootstrap certificate, on /v1/enroll
    PUBLIC = "public"  # an unpinned certificate on /v1/directory


class IdentityRefused(Exception):
    """The peer's certificate may not be used for this path; one line says why."""


@dataclass(frozen=True)
class PeerCertificate:
    site: str  # from its urn:valise:site: URI
    pin: str  # SPKI SHA-256
    serial: str  # lowercase hex (crypto.x509.certificate_serial)


def issued(
    cert_pem: bytes, site: str, purpose: CertificatePurpose, now: datetime
) -> IssuedCertificate:
    """The store record of a certificate HQ just issued to ``site``."""
    return IssuedCertificate(
        serial=certificate_serial(cert_pem),
        site=site,
        purpose=purpose,
        pin=certificate_pin(cert_pem),
        issued=now,
        not_after=certificate_not_after(cert_pem),
    )


def pinned(peer: PeerCertificate, directory: Directory) -> bool:
    return directory.knows(peer.site) and peer.pin in directory.site(peer.site).tls_pins


async def admit(path: str, peer: PeerCertificate, directory: Directory, store: Store) -> Standing:
    """The standing of ``peer`` on unpinned ``path``. Raises :class:`IdentityRefused`."""
    record = await store.certificate(peer.serial)
    if record is not None and record.purpose is CertificatePurpose.BOOTSTRAP:
        if path == ENROLL_PATH and record.site == peer.site:
            return Standing.BOOTSTRAP
        raise IdentityRefused(
            f"certificate {peer.serial} of {peer.site} is a bootstrap certificate:"
            " it serves one pending join only"
        )
    if path == ENROLL_PATH:
        raise IdentityRefused("enrollment takes the bootstrap certificate of a pending join only")
    if path == DIRECTORY_PATH:
        return Standing.PINNED if pinned(peer, directory) else Standing.PUBLIC
    if path != KEYS_PATH:
        raise IdentityRefused(f"{path} needs a pinned certificate")
    if pinned(peer, directory):
        return Standing.PINNED
    return _recovery(peer, directory, record)


def _recovery(
    peer: PeerCertificate, directory: Directory, record: IssuedCertificate | None
) -> Standing:
    if not directory.knows(peer.site):
        raise IdentityRefused(f"{peer.site} is not in the directory")
    entry = directory.site(peer.site)
    state = dict(entry.tls).get(peer.pin)
    if state is not KeyState.REVOKED:
        what = "not a key of the site" if state is None else state.value
        raise IdentityRefused(
            f"certificate of {peer.site} is not pinned ({what}): key updates need a"
            " pinned TLS key (or, for recovery, the TLS key HQ revoked)"
        )
    if record is None or record.site != peer.site:
        raise IdentityRefused(
            f"certificate {peer.serial} of {peer.site} is revoked and HQ has no record of"
            " issuing it to the site: no recovery with it (re-enroll the site)"
        )
    if any(s is KeyState.ACTIVE for _, s in entry.tls):
        raise IdentityRefused(
            f"certificate of {peer.site} is revoked and the site has an active TLS key"
            " again: recovery is over"
        )
    return Standing.RECOVERY


# Set by the channel middleware on the unpinned paths: how the peer stands (read by
# /v1/keys, gateway/trust/key_updates.py).
STANDING = web.RequestKey("valise_standing", Standing)
