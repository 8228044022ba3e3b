"""gateway.site.tls over real sockets: aiohttp server and clients on 127.0.0.1, mutual TLS 1.3."""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import gateway.site.tls as tls
from crypto.x509 import CertificateError, SiteCA, certificate_pin, issue_site_certificate
from gateway.site.tls import (
    TLSConfigError,
    client_context,
    peer_pin,
    peer_site_id,
    require_peer_site,
    server_context,
)

# Real time: OpenSSL checks validity against the clock. A minute back for slack.
START = datetime.now(UTC) - timedelta(minutes=1)


@dataclass(frozen=True)
class Pki:
    ca: SiteCA
    other_ca: SiteCA
    hq: tuple[bytes, bytes]  # the server, from the site CA
    paris: tuple[bytes, bytes]  # a client, from the site CA
    rogue_paris: tuple[bytes, bytes]  # a client claiming M-PARIS, from another CA
    rogue_hq: tuple[bytes, bytes]  # a server claiming HQ, from another CA

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = SiteCA.create(now=START)
    other = SiteCA.create("Not the Valise site CA", now=START)
    return Pki(
        ca=ca,
        other_ca=other,
        hq=issue_site_certificate(ca, "HQ", now=START),
        paris=issue_site_certificate(ca, "M-PARIS", now=START),
        rogue_paris=issue_site_certificate(other, "M-PARIS", now=START),
        rogue_hq=issue_site_certificate(other, "HQ", now=START),
    )


@dataclass
class Server:
    url: str = ""
    seen: list[dict[str, str]] = field(default_factory=list)  # what the handler answered
    refused: list[ssl.SSLError] = field(default_factory=list)  # failed server handshakes


def recording(ctx: ssl.SSLContext, refused: list[ssl.SSLError]) -> ssl.SSLContext:
    """Record the server's failed handshakes (asyncio only logs them in debug mode)."""
    checking = ctx.sslobject_class

    class Recording(checking):  # type: ignore[valid-type,misc]
        def do_handshake(self) -> None:
            try:
                super().do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise
            except ssl.SSLError as exc:
                refused.append(exc)
                raise

    ctx.sslobject_class = Recording
    return ctx


@asynccontextmanager
async def serving(ctx: ssl.SSLContext) -> AsyncIterator[Server]:
    """An aiohttp server on 127.0.0.1 (a free port) answering with the client's site id."""
    server = Server()
    recording(ctx, server.refused)

    async def whoami(request: web.Request) -> web.Response:
        peer = {"site": peer_site_id(request.transport), "pin": peer_pin(request.transport)}
        require_peer_site(request.transport, peer["site"])
        server.seen.append(peer)
        return web.json_response(peer)

    app = web.Application()
    app.router.add_get("/whoami", whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        host, port = runner.addresses[0][:2]
        assert host == "127.0.0.1"
        server.url = f"https://127.0.0.1:{port}/whoami"
        yield server
    finally:
        await runner.cleanup()


async def fetch(url: str, ctx: ssl.SSLContext) -> dict[str, str]:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session,
        session.get(url) as response,
    ):
        response.raise_for_status()
        body: dict[str, str] = await response.json()
        return body


def hq_client(pki: Pki, cert: tuple[bytes, bytes] | None = None) -> ssl.SSLContext:
    """A client that means to reach HQ."""
    return client_context(*(cert or pki.paris), pki.ca_pem, expect_site="HQ")


def bare_client_context(ca_pem: bytes) -> ssl.SSLContext:
    """A TLS 1.3 client that trusts the site CA but has no certificate of its own."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cadata=ca_pem.decode())
    return ctx


# --- the contexts ---------------------------------------------------------------------


def test_contexts_are_tls13_only_and_verify_peers(pki: Pki) -> None:
    server = server_context(*pki.hq, pki.ca_pem)
    client = client_context(*pki.paris, pki.ca_pem)
    for ctx in (server, client):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert ctx.verify_flags & ssl.VERIFY_X509_STRICT
        # Only the site CA is trusted: no system store.
        assert [c["subject"] for c in ctx.get_ca_certs()] == [
            ((("commonName", "Valise site CA"),),)
        ]
    assert server.protocol == ssl.PROTOCOL_TLS_SERVER
    assert client.protocol == ssl.PROTOCOL_TLS_CLIENT
    assert client.check_hostname is False


def test_context_errors(pki: Pki) -> None:
    cert, key = pki.paris
    with pytest.raises(TLSConfigError, match="site CA"):
        server_context(cert, key, b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(TLSConfigError, match="site CA"):
        server_context(cert, key, "é".encode())
    with pytest.raises(TLSConfigError, match="certificate and key"):
        client_context(cert, pki.hq[1], pki.ca_pem)  # key of another certificate
    with pytest.raises(TLSConfigError, match="certificate and key"):
        client_context(cert, b"not a key", pki.ca_pem)


def test_encrypted_key_with_and_without_password(pki: Pki) -> None:
    """An encrypted key loads with its password; without one it fails, never prompting."""
    cert, key = pki.paris
    loaded = serialization.load_pem_private_key(key, password=None)
    encrypted = loaded.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    client_context(cert, encrypted, pki.ca_pem, key_password=b"s3cret")
    with pytest.raises(TLSConfigError):
        client_context(cert, encrypted, pki.ca_pem, key_password=b"wrong")
    with pytest.raises(TLSConfigError):
        client_context(cert, encrypted, pki.ca_pem)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set()


def test_key_material_is_not_left_behind(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = _open_fds()
    server_context(*pki.hq, pki.ca_pem)
    with pytest.raises(TLSConfigError):
        server_context(pki.hq[0], b"junk", pki.ca_pem)
    assert _open_fds() <= before  # the in-memory file is closed
    assert list(tmp_path.iterdir()) == []


def test_key_file_fallback_without_memfd(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where memfd_create is missing: a 0600 file in the temp dir, removed after loading."""
    monkeypatch.delattr(os, "memfd_create", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    modes: list[int] = []
    real_load = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: str, *args: object, **kwargs: object) -> None:
        modes.append(os.stat(certfile).st_mode & 0o777)
        assert Path(certfile).parent == tmp_path
        real_load(self, certfile, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    server_context(*pki.hq, pki.ca_pem)
    with pytest.raises(TLSConfigError):
        server_context(pki.hq[0], b"junk", pki.ca_pem)
    assert modes == [0o600, 0o600]
    assert list(tmp_path.iterdir()) == []


def test_expect_site_must_be_a_site_id(pki: Pki) -> None:
    with pytest.raises(TLSConfigError, match="site id"):
        client_context(*pki.paris, pki.ca_pem, expect_site="hq")


def _socket_handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> tuple[str | BaseException, str | BaseException]:
    """Blocking sockets (SSLSocket): each side's view of the other's site, or its error."""
    results: dict[str, str | BaseException] = {}
    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as tls_a:
                results["server"] = peer_site_id(tls_a)
                tls_a.recv(1)  # until the client closes
        except (OSError, CertificateError) as exc:
            results["server"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(b) as tls_b:
            results["client"] = peer_site_id(tls_b)
    except (OSError, CertificateError) as exc:
        results["client"] = exc
    finally:
        b.close()
        thread.join(10)
        a.close()
    return results["server"], results["client"]


def test_blocking_sockets_check_sites_too(pki: Pki) -> None:
    server, client = _socket_handshake(server_context(*pki.hq, pki.ca_pem), hq_client(pki))
    assert (server, client) == ("M-PARIS", "HQ")
    hanoi = issue_site_certificate(pki.ca, "M-HANOI", now=START)
    server, client = _socket_handshake(server_context(*hanoi, pki.ca_pem), hq_client(pki))
    assert isinstance(client, ssl.SSLCertVerificationError)
    assert client.reason == tls.SITE_CHECK_FAILED


def test_peer_site_id_needs_tls() -> None:
    with pytest.raises(CertificateError, match="not TLS"):
        peer_site_id(None)
    a, b = socket.socketpair()
    with a, b, pytest.raises(CertificateError, match="not TLS"):
        tls.peer_certificate(a)  # type: ignore[arg-type]


# --- over the wire --------------------------------------------------------------------


async def test_site_ca_client_is_served_and_named(pki: Pki) -> None:
    async with serving(server_context(*pki.hq, pki.ca_pem)) as server:
        body = await fetch(server.url, hq_client(pki))
        again = await fetch(server.url, client_context(*pki.paris, pki.ca_pem))  # any site
    assert body == {"site": "M-PARIS", "pin": certificate_pin(pki.paris[0])}
    assert again == body
    assert server.seen == [body, body]
    assert server.refused == []


async def test_client_refuses_a_site_ca_server_that_is_not_the_expected_site(pki: Pki) -> None:
    """Any site holds a site-CA certificate: M-HANOI must not pass for HQ."""
    hanoi = issue_site_certificate(pki.ca, "M-HANOI", now=START)
    async with serving(server_context(*hanoi, pki.ca_pem)) as server:
        with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
            await fetch(server.url, hq_client(pki))
        assert await fetch(
            server.url, client_context(*pki.paris, pki.ca_pem, expect_site="M-HANOI")
        )
    assert len(server.seen) == 1
    error = info.value.certificate_error
    assert getattr(error, "reason", None) == tls.SITE_CHECK_FAILED
    assert "the peer is 'M-HANOI', not 'HQ'" in str(error)


async def test_site_ca_certificates_without_a_site_are_refused_both_ways(pki: Pki) -> None:
    """A certificate from the site CA that names no site passes OpenSSL, not the gateway."""
    nameless = (_leaf_without_site_uri(pki), pki.paris[1])
    async with serving(server_context(*pki.hq, pki.ca_pem)) as server:
        with pytest.raises(aiohttp.ClientError):
            await fetch(server.url, client_context(*nameless, pki.ca_pem))
    assert server.seen == []
    assert _reasons(server) == {tls.SITE_CHECK_FAILED}  # our check: OpenSSL accepted it
    assert all(isinstance(e, ssl.SSLCertVerificationError) for e in server.refused)
    assert "names no site" in str(server.refused[0])
    async with serving(server_context(*nameless, pki.ca_pem)) as server:
        with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
            await fetch(server.url, client_context(*pki.paris, pki.ca_pem))
    assert server.seen == []
    assert "names no site" in str(info.value.certificate_error)


def _leaf_without_site_uri(pki: Pki) -> bytes:
    """M-PARIS's key, certified by the site CA with only a DNS name (a mis-issued leaf)."""
    ca = pki.ca
    paris = x509.load_pem_x509_certificate(pki.paris[0])
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "M-PARIS")]))
        .issuer_name(ca.certificate.subject)
        .public_key(paris.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(START)
        .not_valid_after(START + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(paris.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca._key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )


async def test_client_without_certificate_is_refused(pki: Pki) -> None:
    async with serving(server_context(*pki.hq, pki.ca_pem)) as server:
        with pytest.raises(aiohttp.ClientError):
            await fetch(server.url, bare_client_context(pki.ca_pem))
    # TLS 1.3: the client's side of the handshake ends before the server has checked the
    # client's certificate, so the client learns of the refusal (alert "certificate
    # required") only when its first read fails, and aiohttp often sees just a closed
    # connection. The server's handshake failed; the request never reached the handler.
    assert server.seen == []
    assert _reasons(server) == {"PEER_DID_NOT_RETURN_A_CERTIFICATE"}


async def test_client_certificate_from_another_ca_is_refused(pki: Pki) -> None:
    async with serving(server_context(*pki.hq, pki.ca_pem)) as server:
        with pytest.raises(aiohttp.ClientError):
            await fetch(server.url, hq_client(pki, pki.rogue_paris))
    assert server.seen == []
    assert _reasons(server) == {"CERTIFICATE_VERIFY_FAILED"}
    assert isinstance(server.refused[0], ssl.SSLCertVerificationError)


async def test_tls12_client_is_refused(pki: Pki) -> None:
    ctx = hq_client(pki)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # lower the floor first, then the ceiling
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    async with serving(server_context(*pki.hq, pki.ca_pem)) as server:
        with pytest.raises(aiohttp.ClientConnectorError):
            await fetch(server.url, ctx)
    assert server.seen == []
    assert _reasons(server) == {"UNSUPPORTED_PROTOCOL"}


async def test_client_refuses_a_server_from_another_ca(pki: Pki) -> None:
    async with serving(server_context(*pki.rogue_hq, pki.other_ca.cert_pem)) as server:
        with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
            await fetch(server.url, hq_client(pki))
    assert server.seen == []
    error = info.value.certificate_error
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert getattr(error, "reason", None) == "CERTIFICATE_VERIFY_FAILED"


def _reasons(server: Server) -> set[str | None]:
    """The distinct reasons of the server's refusals.

    aiohttp retries an idempotent request once when the connection drops, and with
    TLS 1.3 a refused client certificate looks like that: the server may see two tries.
    """
    assert 1 <= len(server.refused) <= 2
    return {getattr(e, "reason", None) for e in server.refused}
