"""Helpers for the SMTP bridge tests: a raw SMTP client, a test CA-less certificate,
Maildir polling, integrator tokens."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.bridges.integrators import new_token, token_sha256
from gateway.site.context import load_site

ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")
QUEUED = re.compile(r"Ok: queued as ((?:[0-9a-f-]{36} ?)+)$")


class RawSmtp:
    """A line-level SMTP client that sends exactly the bytes it is given.

    Every client is remembered in OPEN; :func:`close_all` closes what a test left open.
    """

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        OPEN.append(self)
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout
        )
        self.buffer = b""
        self.greeting = self.reply()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; unread {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def reply(self) -> tuple[int, list[str]]:
        """The next reply: its code and every line as sent (code included)."""
        lines: list[str] = []
        while True:
            line = self._line().decode("utf-8", "replace")
            lines.append(line)
            if line[3:4] != "-":
                return int(line[:3]), lines

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, line: str | bytes) -> tuple[int, list[str]]:
        self.send(line if isinstance(line, bytes) else line.encode() + b"\r\n")
        return self.reply()

    def starttls(self) -> None:
        code, _ = self.cmd("STARTTLS")
        assert code == 220
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the site CA's certificate; not under test here
        self.sock = context.wrap_socket(self.sock)

    def closed(self) -> bool:
        """True if the server has closed the connection (after any unread replies)."""
        try:
            self.sock.settimeout(5)
            return self.sock.recv(1) == b""
        except (ConnectionError, ssl.SSLError):
            return True

    def close(self) -> None:
        self.sock.close()


OPEN: list[RawSmtp] = []


def close_all() -> None:
    while OPEN:
        OPEN.pop().close()


def queued_ids(text: str) -> list[str]:
    m = QUEUED.search(text.strip())
    assert m is not None, text
    return m[1].split()


def no_verify() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def wait_for(path_fn: object, timeout: float = 30.0) -> None:
    assert callable(path_fn)
    deadline = time.monotonic() + timeout
    while not path_fn():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {path_fn}")
        time.sleep(0.1)


def wait_file(path: Path, timeout: float = 30.0) -> bytes:
    wait_for(path.exists, timeout)
    return path.read_bytes()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files), for a test mail server."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smarthost.crt", directory / "smarthost.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def add_integrator(site_dir: Path, name: str) -> str:
    """Register integrator ``name`` in the site's store; return its token."""
    token = new_token()

    async def go() -> None:
        ctx = await load_site(site_dir)
        try:
            await ctx.store.integrator_add(
                name,
                token_sha256=token_sha256(token),
                webhook_url=None,
                webhook_secret=None,
                now=datetime.now(UTC),
            )
        finally:
            await ctx.store.close()

    asyncio.run(go())
    return token


def revoke_integrator(site_dir: Path, name: str) -> None:
    async def go() -> None:
        ctx = await load_site(site_dir)
        try:
            await ctx.store.integrator_revoke(name, now=datetime.now(UTC))
        finally:
            await ctx.store.close()

    asyncio.run(go())
