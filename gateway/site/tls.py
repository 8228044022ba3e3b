"""TLS contexts for the gateways: mutual TLS 1.3, one trust anchor (the HQ site CA).

Rules:
- TLS 1.3 only, both ways; both ends present a certificate issued by the site CA and
  require one from the peer (``CERT_REQUIRED``). Only the site CA is trusted: no system
  store is loaded. Verification is X.509-strict (``VERIFY_X509_STRICT``).
- Peers are named by the ``urn:valise:site:<SITE>`` URI of their certificate, not by host
  names, so the client does not check host names (``check_hostname`` is off). Instead
  the site id is checked inside the handshake, before any application data moves: both
  ends refuse a peer certificate that names no valid site, and a client built with
  ``expect_site`` refuses a server that is not that site (otherwise any site could
  pose as HQ to another). This hooks the documented ``SSLContext.sslobject_class`` and
  ``sslsocket_class``: a subclass whose ``do_handshake`` checks the peer once OpenSSL
  has verified the chain, and fails like a certificate verification failure
  (:class:`ssl.SSLCertVerificationError`). The application can still read the peer
  with :func:`peer_site_id`, :func:`peer_pin` and :func:`require_peer_site` (e.g. to
  check that a request comes from the site it claims, or a pin from the directory).

Key material: :mod:`ssl` loads a certificate chain only from a file, while the gateway
holds its certificate and key in memory (bytes). :func:`_load_chain` hands them over
through an anonymous in-memory file (Linux ``memfd_create``, read by OpenSSL through
``/proc/self/fd``): it has no name in any directory, never reaches a disk and is gone
when closed, right after loading. Elsewhere it falls back to a ``0600`` file made with
``mkstemp`` in the temporary directory and removed right after loading.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from crypto.x509 import SITE_ID_RE, CertificateError, certificate_pin, site_id_from_certificate

__all__ = [
    "SITE_CHECK_FAILED",
    "TLS_VERSION",
    "TLSConfigError",
    "client_context",
    "peer_certificate",
    "peer_pin",
    "peer_site_id",
    "require_peer_site",
    "server_context",
]

TLS_VERSION = ssl.TLSVersion.TLSv1_3
SITE_CHECK_FAILED = "VALISE_SITE_CHECK_FAILED"  # the ``reason`` of our handshake failures
_PROC_FD = "/proc/self/fd"


class TLSConfigError(Exception):
    """A certificate, key or CA given to build a TLS context could not be loaded."""


PeerSource = ssl.SSLObject | ssl.SSLSocket | asyncio.BaseTransport | None


def server_context(
    cert_pem: bytes, key_pem: bytes, ca_pem: bytes, *, key_password: bytes | None = None
) -> ssl.SSLContext:
    """A server context: TLS 1.3 only, presents ``cert_pem``, requires a site-CA client cert.

    The handshake fails unless the client's certificate names a valid site. Raises
    :class:`TLSConfigError`.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _configure(ctx, cert_pem, key_pem, ca_pem, key_password, None)
    return ctx


def client_context(
    cert_pem: bytes,
    key_pem: bytes,
    ca_pem: bytes,
    *,
    expect_site: str | None = None,
    key_password: bytes | None = None,
) -> ssl.SSLContext:
    """A client context: TLS 1.3 only, presents ``cert_pem``, requires a site-CA server cert.

    Host names are not checked (see the module notes); the handshake fails unless the
    server's certificate names a valid site, and that site is ``expect_site`` when it is
    given: build one context per peer to reach. Raises :class:`TLSConfigError`.
    """
    if expect_site is not None and (
        not isinstance(expect_site, str) or SITE_ID_RE.fullmatch(expect_site) is None
    ):
        raise TLSConfigError(f"site id {expect_site!r} is not valid")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # before verify_mode: the two are tied together
    _configure(ctx, cert_pem, key_pem, ca_pem, key_password, expect_site)
    return ctx


def _configure(
    ctx: ssl.SSLContext,
    cert_pem: bytes,
    key_pem: bytes,
    ca_pem: bytes,
    key_password: bytes | None,
    expect_site: str | None,
) -> None:
    ctx.minimum_version = TLS_VERSION
    ctx.maximum_version = TLS_VERSION
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    try:
        # cadata takes PEM only as str; bytes would be read as DER.
        ctx.load_verify_locations(cadata=ca_pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise TLSConfigError(f"cannot load the site CA certificate: {exc}") from exc
    _load_chain(ctx, cert_pem, key_pem, key_password)
    ctx.sslobject_class, ctx.sslsocket_class = _site_checking(expect_site)


def _check_peer(tls_end: ssl.SSLObject | ssl.SSLSocket, expect_site: str | None) -> None:
    """Raise :class:`ssl.SSLCertVerificationError` unless the peer names the right site."""
    try:
        site = peer_site_id(tls_end)
        if expect_site is not None and site != expect_site:
            raise CertificateError(f"the peer is {site!r}, not {expect_site!r}")
    except CertificateError as exc:
        error = ssl.SSLCertVerificationError(1, f"Valise site check failed: {exc}")
        error.reason = SITE_CHECK_FAILED
        error.verify_message = str(exc)
        raise error from exc


def _site_checking(
    expect_site: str | None,
) -> tuple[type[ssl.SSLObject], type[ssl.SSLSocket]]:
    """SSLObject and SSLSocket classes that check the peer's site when the handshake ends."""

    class SiteCheckingSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()
            _check_peer(self, expect_site)

    class SiteCheckingSSLSocket(ssl.SSLSocket):
        def do_handshake(self, block: bool = False) -> None:
            super().do_handshake(block)
            _check_peer(self, expect_site)

    return SiteCheckingSSLObject, SiteCheckingSSLSocket


def _load_chain(
    ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes, key_password: bytes | None
) -> None:
    # Always pass a password callback: without one, OpenSSL's built-in prompt would ask
    # on the terminal for an encrypted key's password. An unencrypted key never calls it.
    def password() -> bytes:
        return key_password or b""

    with _private_file(cert_pem.rstrip(b"\n") + b"\n" + key_pem) as path:
        try:
            ctx.load_cert_chain(path, password=password)
        except (ssl.SSLError, ValueError) as exc:
            raise TLSConfigError(f"cannot load the certificate and key: {exc}") from exc


@contextmanager
def _private_file(data: bytes) -> Iterator[str]:
    """A path to ``data`` that no other user can read, gone when the block ends."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and os.path.isdir(_PROC_FD):
        fd = memfd_create("valise-tls", getattr(os, "MFD_CLOEXEC", 0))
        try:
            _write_all(fd, data)
            yield f"{_PROC_FD}/{fd}"
        finally:
            os.close(fd)
        return
    fd, path = tempfile.mkstemp(prefix="valise-tls-", suffix=".pem")  # 0600, O_EXCL
    try:
        try:
            os.fchmod(fd, 0o600)
            _write_all(fd, data)
        finally:
            os.close(fd)
        yield path
    finally:
        os.unlink(path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def peer_certificate(source: PeerSource) -> bytes:
    """The peer's certificate (DER) on a TLS connection, as verified by the handshake.

    ``source`` is an :class:`ssl.SSLObject` or :class:`ssl.SSLSocket`, or an asyncio
    transport (its ``ssl_object``; aiohttp: ``request.transport``). Raises
    :class:`CertificateError` when the connection is not TLS, is closed, or the peer
    sent no certificate.
    """
    if isinstance(source, asyncio.BaseTransport):
        source = source.get_extra_info("ssl_object")
    if not isinstance(source, ssl.SSLObject | ssl.SSLSocket):
        raise CertificateError("the connection is not TLS (or is closed)")
    try:
        der = source.getpeercert(binary_form=True)
    except ValueError as exc:  # handshake not done
        raise CertificateError("the TLS handshake is not complete") from exc
    if not der:
        raise CertificateError("the peer sent no certificate")
    return der


def peer_site_id(source: PeerSource) -> str:
    """The site id of the peer, from its certificate. Raises :class:`CertificateError`."""
    return site_id_from_certificate(peer_certificate(source))


def peer_pin(source: PeerSource) -> str:
    """The SPKI SHA-256 pin of the peer's certificate. Raises :class:`CertificateError`."""
    return certificate_pin(peer_certificate(source))


def require_peer_site(source: PeerSource, expected: str) -> str:
    """Check that the peer is ``expected``; returns it. Raises :class:`CertificateError`."""
    site = peer_site_id(source)
    if site != expected:
        raise CertificateError(f"the peer is {site!r}, not {expected!r}")
    return site


def reload_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """Present ``cert_pem`` from now on: new handshakes use it, open connections keep
    theirs (key rotation without a restart). Raises :class:`TLSConfigError`."""
    _load_chain(ctx, cert_pem, key_pem, None)
