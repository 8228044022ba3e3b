"""Creating sites: ``valise init`` (HQ), ``valise site add`` (a bundle), ``valise join``.

Enrollment, in three steps:
1. HQ: ``site add SITE --endpoint URL --out BUNDLE`` records a pending enrollment
   (a SHA-256 of a fresh one-time token) and writes a bundle: the token, HQ's
   endpoint, the CA certificate, the directory key, and a short-lived bootstrap TLS
   certificate and key for SITE, used for the join request only.
2. Mission: ``join BUNDLE`` generates the mission's envelope keys and TLS key
   locally and posts only their public parts, with the token, to HQ's
   ``/v1/enroll`` over mutual TLS with the bootstrap certificate.
3. HQ checks the token (once), issues the mission's TLS certificate for the
   mission's own key, publishes a new directory version with the site in it, and
   answers with the certificate and the directory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from config.site import (
    KeysSection,
    OpsSection,
    RelaySection,
    SiteConfig,
    SiteSection,
    StoreSection,
    read_key_passphrase,
    render_site_config,
)
from crypto.armor import armor, load_signing_key
from crypto.keys import SigningKey
from crypto.x509 import (
    SiteCA,
    certificate_pin,
    generate_site_key,
    issue_site_certificate,
    site_public_key,
)
from envelope.keydoc import parse_public_key_doc
from gateway.keystore import generate_site_keys
from gateway.site import (
    SiteContext,
    archive_directory,
    load_site_ca,
    read_trust,
    write_private,
    write_private_key,
)
from gateway.site_modes import make_private_dir
from gateway.timestamping import write_tsa_files
from gateway.tls import client_context
from routing.directory import Directory, KeyState, SiteEntry, parse_directory, write_directory

BOOTSTRAP_DAYS = 7


class EnrollError(Exception):
    """Enrollment refused or impossible; one line says why."""


def _write_config(config: SiteConfig) -> None:
    write_private(config.directory / "valise.toml", render_site_config(config).encode())


def _entry(site: str, endpoint: str, keys_doc: bytes, cert_pem: bytes) -> SiteEntry:
    doc = parse_public_key_doc(keys_doc)
    if doc.site != site:
        raise EnrollError(f"the public key document is for {doc.site}, not {site}")
    return SiteEntry(
        site=site,
        endpoint=endpoint,
        signing=((doc.signing, KeyState.ACTIVE),),
        encryption=((doc.encryption, KeyState.ACTIVE),),
        tls=((certificate_pin(cert_pem), KeyState.ACTIVE),),
    )


def init_hub(
    directory: Path,
    *,
    site: str,
    listen: str,
    ops_listen: str = "127.0.0.1:0",
    passphrase_file: str = "",
) -> None:
    """Create HQ: config, keys, site CA, directory key and the first directory."""
    if (directory / "valise.toml").exists():
        raise EnrollError(f"{directory} already holds a site")
    make_private_dir(directory)  # before any key is written into it
    # VALISE_KEY_PASSPHRASE or the file: every private key is written encrypted under it.
    passphrase = read_key_passphrase(directory, passphrase_file)
    now = datetime.now(UTC)
    keys_dir = directory / "keys"
    keys = generate_site_keys(site, keys_dir, passphrase=passphrase)
    ca = SiteCA.create(now=now)
    ca_cert, ca_key = ca.to_pem()
    tls_cert, tls_key = issue_site_certificate(ca, site, now=now)
    directory_key = SigningKey.generate()
    write_private_key(keys_dir / "ca.key", ca_key, passphrase)
    write_private(keys_dir / "ca.crt", ca_cert)
    write_private_key(keys_dir / "tls.key", tls_key, passphrase)
    write_private(keys_dir / "tls.crt", tls_cert)
    write_private_key(keys_dir / "directory.key", armor(directory_key), passphrase)
    # keys/tsa.key, keys/tsa.crt
    write_tsa_files(keys_dir, ca, site=site, now=now, passphrase=passphrase)
    write_private(keys_dir / "directory.pub", base64.b64encode(directory_key.public.raw))
    endpoint = f"https://{listen}"
    d = Directory(
        serial=1, issued=now, hub=site, sites=(_entry(site, endpoint, keys.public_xml, tls_cert),)
    )
    first = write_directory(d, directory_key)
    write_private(directory / "directory.xml", first)
    archive_directory(directory, 1, first)
    (directory / "enrollments").mkdir(mode=0o700)
    _write_config(
        SiteConfig(
            directory=directory,
            site=SiteSection(
                id=site,
                role="hub",
                listen=listen,
                endpoint=endpoint,
                hub=site,
                hub_endpoint=endpoint,
            ),
            store=StoreSection(),
            ops=OpsSection(listen=ops_listen),
            relay=RelaySection(),
            keys=KeysSection(passphrase_file=passphrase_file),
        )
    )


@dataclass(frozen=True)
class Bundle:
    site: str
    endpoint: str
    hub: str
    hub_endpoint: str
    token: str
    ca_pem: str
    directory_key: str
    bootstrap_cert: str
    bootstrap_key: str


def add_site(hub_dir: Path, site: str, endpoint: str, out: Path) -> Bundle:
    """Register a pending mission and write its one-time bundle (mode 0600)."""
    from config.site import load_site_config

    config = load_site_config(hub_dir)
    if not config.is_hub:
        raise EnrollError("site add runs at HQ")
    if not endpoint.startswith("https://"):
        raise EnrollError("--endpoint must be https://HOST:PORT")
    now = datetime.now(UTC)
    k = config.keys_dir
    ca = load_site_ca(k, config.key_passphrase)
    cert, key = issue_site_certificate(ca, site, now=now, days=BOOTSTRAP_DAYS)
    token = secrets.token_urlsafe(32)
    pending = hub_dir / "enrollments" / f"{site}.json"
    record = {
        "site": site,
        "endpoint": endpoint,
        "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
        "expires": (now + timedelta(days=BOOTSTRAP_DAYS)).isoformat(),
    }
    write_private(pending, json.dumps(record).encode())
    bundle = Bundle(
        site,
        endpoint,
        config.site.id,
        config.site.endpoint,
        token,
        (k / "ca.crt").read_text(),
        (k / "directory.pub").read_text().strip(),
        cert.decode(),
        key.decode(),
    )
    write_private(out, json.dumps(bundle.__dict__, indent=2).encode())
    return bundle


async def enroll_handler(request: web.Request) -> web.Response:
    """HQ's /v1/enroll: the join request of a pending mission."""
    from gateway.channel import CONTEXT

    ctx: SiteContext = request.app[CONTEXT]
    peer: str = request["peer"]
    pending = ctx.config.directory / "enrollments" / f"{peer}.json"
    try:
        record = json.loads(pending.read_text())
        body = await request.json()
        token_ok = hmac.compare_digest(
            hashlib.sha256(str(body["token"]).encode()).hexdigest(), record["token_sha256"]
        )
        if not token_ok or datetime.fromisoformat(record["expires"]) < datetime.now(UTC):
            raise EnrollError("enrollment token refused or expired")
        keys_doc = base64.b64decode(body["public_keys"], validate=True)
        tls_public = str(body["tls_public_key"]).encode()
    except (OSError, ValueError, KeyError, TypeError, EnrollError) as exc:
        return web.json_response({"error": f"enrollment refused: {exc}"}, status=403)
    k = ctx.config.keys_dir
    now = datetime.now(UTC)
    ca = load_site_ca(k, ctx.config.key_passphrase)
    cert, _ = issue_site_certificate(ca, peer, tls_public, now=now)
    try:
        entry = _entry(peer, record["endpoint"], keys_doc, cert)
    except Exception as exc:
        return web.json_response({"error": f"enrollment refused: {exc}"}, status=403)
    from gateway.publish import publish

    def add(held: Directory, at: datetime) -> Directory:
        sites = (*tuple(s for s in held.sites if s.site != peer), entry)
        return Directory(serial=held.serial + 1, issued=at, hub=held.hub, sites=sites)

    published, _ = publish(ctx.config.directory, add, passphrase=ctx.config.key_passphrase)
    ctx.install_directory(published.raw)
    from gateway import audit

    try:
        await audit.record(
            ctx.store,
            actor=ctx.here,
            action="directory.publish",
            subject=str(published.serial),
            detail={"enrolled": peer},
        )
    except audit.AuditError as exc:  # the enrollment stands; the log says why not
        import logging

        logging.getLogger("valise.enroll").warning("audit log not written: %s", exc)
    pending.unlink()
    return web.json_response(
        {"certificate": cert.decode(), "directory": base64.b64encode(ctx.directory.raw).decode()}
    )


async def join(
    bundle_path: Path,
    directory: Path,
    *,
    listen: str,
    ops_listen: str = "127.0.0.1:0",
    passphrase_file: str = "",
) -> SiteConfig:
    """Create a mission from its bundle and enroll it at HQ (HQ must be running)."""
    if (directory / "valise.toml").exists():
        raise EnrollError(f"{directory} already holds a site")
    try:
        b = Bundle(**json.loads(bundle_path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise EnrollError(f"{bundle_path} is not an enrollment bundle: {exc}") from None
    make_private_dir(directory)  # before any key is written into it
    passphrase = read_key_passphrase(directory, passphrase_file)
    keys_dir = directory / "keys"
    keys = generate_site_keys(b.site, keys_dir, passphrase=passphrase)
    tls_key = generate_site_key()
    ssl_ctx = client_context(b.bootstrap_cert.encode(), b.bootstrap_key.encode(), b.ca_pem.encode())
    async with ClientSession(connector=TCPConnector(ssl=ssl_ctx)) as session:
        try:
            async with session.post(
                f"{b.hub_endpoint}/v1/enroll",
                json={
                    "token": b.token,
                    "public_keys": base64.b64encode(keys.public_xml).decode(),
                    "tls_public_key": site_public_key(tls_key).decode(),
                },
                timeout=ClientTimeout(total=30),
            ) as resp:
                answer = await resp.json()
                if resp.status != 200:
                    raise EnrollError(str(answer.get("error", resp.status)))
        except OSError as exc:
            raise EnrollError(f"HQ at {b.hub_endpoint} unreachable: {exc}") from None
    write_private_key(keys_dir / "tls.key", tls_key, passphrase)
    write_private(keys_dir / "tls.crt", answer["certificate"].encode())
    write_private(keys_dir / "ca.crt", b.ca_pem.encode())
    write_private(keys_dir / "directory.pub", b.directory_key.encode())
    directory_xml = base64.b64decode(answer["directory"])
    write_private(directory / "directory.xml", directory_xml)
    archive_directory(
        directory, parse_directory(directory_xml, read_trust(keys_dir)).serial, directory_xml
    )
    config = SiteConfig(
        directory=directory,
        site=SiteSection(
            id=b.site,
            role="mission",
            listen=listen,
            endpoint=b.endpoint,
            hub=b.hub,
            hub_endpoint=b.hub_endpoint,
        ),
        store=StoreSection(),
        ops=OpsSection(listen=ops_listen),
        relay=RelaySection(),
        keys=KeysSection(passphrase_file=passphrase_file),
    )
    _write_config(config)
    os.chmod(directory, 0o700)
    return config


__all__ = ["EnrollError", "add_site", "init_hub", "join", "load_signing_key"]
