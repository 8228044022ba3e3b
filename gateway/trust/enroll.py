"""Creating sites: ``valise init`` (HQ), ``valise site add`` (a bundle), ``valise join``.

Enrollment, in three steps:
1. HQ: ``site add SITE --endpoint URL --out BUNDLE`` records a pending enrollment in
   HQ's store (a SHA-256 of a fresh one-time token, the serial of the bootstrap
   certificate; a new bundle for SITE voids the previous one) and writes a bundle: the
   token, HQ's endpoint, the CA certificate, the directory key, and a short-lived
   (``BOOTSTRAP_DAYS``) bootstrap TLS certificate and key for SITE.
2. Mission: ``join BUNDLE`` generates the mission's envelope keys and TLS key
   locally and posts only their public parts, with the token, to HQ's
   ``/v1/enroll`` over mutual TLS with the bootstrap certificate.
3. HQ consumes the pending enrollment in one atomic conditional delete (token hash,
   bootstrap serial and expiry checked together: of two joins with one token exactly
   one gets it), issues the mission's TLS certificate for the mission's own key and
   records its serial, publishes a new directory version with the site in it, and
   answers with the certificate and the directory.

The bootstrap certificate opens ``/v1/enroll`` for its pending join and nothing else:
the channel refuses it by serial everywhere else, before and after the join
(gateway/trust/tls_identity.py); its key is never pinned.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from config.sections import KeysSection, OpsSection, RelaySection, SiteSection, StoreSection
from config.site import SiteConfig, read_key_passphrase, render_site_config
from crypto.armor import armor
from crypto.keys import SigningKey
from crypto.x509 import (
    CertificateError,
    SiteCA,
    certificate_pin,
    generate_site_key,
    issue_site_certificate,
    public_key_pin,
    site_public_key,
)
from envelope.errors import EnvelopeError
from envelope.keydoc import parse_public_key_doc
from gateway.proof.tsa_service import write_tsa_files
from gateway.site.appkeys import CONTEXT, PEER, SERIAL
from gateway.site.context import (
    SiteContext,
    archive_directory,
    load_site_ca,
    open_store,
    read_trust,
    write_private_key,
)
from gateway.site.files import write_private
from gateway.site.keystore import generate_site_keys
from gateway.site.modes import make_private_dir
from gateway.site.tls import client_context
from gateway.store.base import StoreError
from gateway.store.enrollments import CertificatePurpose, Enrollment
from gateway.trust.tls_identity import issued
from routing.directory import (
    Directory,
    DirectoryError,
    KeyState,
    SiteEntry,
    parse_directory,
    write_directory,
)
from routing.key_changes import enrol_site

# The bootstrap certificate and the token expire together: long enough to carry the
# bundle to the mission, and useless after the join whatever is left of it.
BOOTSTRAP_DAYS = 2


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
    """Register a pending mission and write its one-time bundle (mode 0600). Call from
    synchronous code (it runs the store on its own loop). Raises EnrollError."""
    return asyncio.run(_add_site(hub_dir, site, endpoint, out))


async def _add_site(hub_dir: Path, site: str, endpoint: str, out: Path) -> Bundle:
    from config.site import load_site_config

    config = load_site_config(hub_dir)
    if not config.is_hub:
        raise EnrollError("site add runs at HQ")
    if not endpoint.startswith("https://"):
        raise EnrollError("--endpoint must be https://HOST:PORT")
    _refuse_organ_id(hub_dir, site)
    now = datetime.now(UTC)
    k = config.keys_dir
    ca = load_site_ca(k, config.key_passphrase)
    cert, key = issue_site_certificate(ca, site, now=now, days=BOOTSTRAP_DAYS)
    token = secrets.token_urlsafe(32)
    bootstrap = issued(cert, site, CertificatePurpose.BOOTSTRAP, now)
    pending = Enrollment(
        site=site,
        endpoint=endpoint,
        token_sha256=_token_sha256(token),
        bootstrap_serial=bootstrap.serial,
        created=now,
        expires=bootstrap.not_after,
    )
    try:
        store = await open_store(config)
        try:
            await store.enrollment_add(pending, bootstrap)
        finally:
            await store.close()
    except StoreError as exc:
        raise EnrollError(f"cannot record the enrollment: {exc}") from None
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


def _refuse_organ_id(hub_dir: Path, site: str) -> None:
    """A new site's id may not be an organ id of the directory, in any case (the
    enrollment would be refused after its one-time token was spent)."""
    held = parse_directory((hub_dir / "directory.xml").read_bytes(), read_trust(hub_dir / "keys"))
    taken = next(
        (
            o.organ_id
            for e in held.sites
            for o in e.organs
            if o.organ_id.casefold() == site.casefold()
        ),
        None,
    )
    if taken is not None:
        raise EnrollError(
            f"{site} is organ {taken} of the directory: a site id may not be an organ id"
        )


def _token_sha256(token: str) -> str:
    # A store lookup by hash: the token has 256 random bits, so a comparison's timing
    # tells an attacker nothing they could use to build a matching token.
    return hashlib.sha256(token.encode()).hexdigest()


def _refused(reason: object, status: int = 403) -> web.Response:
    return web.json_response({"error": f"enrollment refused: {reason}"}, status=status)


async def enroll_handler(request: web.Request) -> web.Response:
    """HQ's /v1/enroll: the join request of a pending mission, over its bootstrap
    certificate (gateway/trust/tls_identity.py admits nothing else here)."""

    ctx: SiteContext = request.app[CONTEXT]
    peer: str = request[PEER]
    # Check the request before consuming the token: a malformed join leaves it usable.
    try:
        body = await request.json()
        token = str(body["token"])
        keys_doc = base64.b64decode(body["public_keys"], validate=True)
        tls_public = str(body["tls_public_key"]).encode()
        doc = parse_public_key_doc(keys_doc)
        if doc.site != peer:
            raise EnrollError(f"the public key document is for {doc.site}, not {peer}")
        public_key_pin(tls_public)
    except (ValueError, KeyError, TypeError, EnrollError, EnvelopeError, CertificateError) as exc:
        return _refused(exc)
    now = datetime.now(UTC)
    try:
        taken = await ctx.store.enrollment_take(
            peer, token_sha256=_token_sha256(token), bootstrap_serial=request[SERIAL], now=now
        )
    except StoreError as exc:
        return _refused(exc, 503)
    if taken is None:
        return _refused("the enrollment token is wrong, used or expired")
    # The token is spent from here on: a failure below needs a new bundle (site add).
    ca = load_site_ca(ctx.config.keys_dir, ctx.config.key_passphrase)
    try:
        cert, _ = issue_site_certificate(ca, peer, tls_public, now=now)
        entry = _entry(peer, taken.endpoint, keys_doc, cert)
        await ctx.store.certificate_add(issued(cert, peer, CertificatePurpose.SITE, now))
    except (EnrollError, CertificateError, StoreError) as exc:
        return _refused(exc)
    from gateway.trust.publish import publish

    def add(held: Directory, at: datetime) -> Directory:
        return enrol_site(held, entry, now=at)  # an old entry's keys stay refused for good

    try:
        published, _ = publish(ctx.config.directory, add, passphrase=ctx.config.key_passphrase)
    except DirectoryError as exc:  # a key another site has or had: nothing published
        return _refused(exc)
    ctx.install_directory(published.raw)
    from gateway.proof import audit

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
                try:
                    answer = await resp.json(content_type=None)
                except ValueError:
                    answer = {}
                if resp.status != 200 or not isinstance(answer, dict):
                    error = answer.get("error") if isinstance(answer, dict) else None
                    raise EnrollError(str(error or f"HQ answered {resp.status}"))
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


__all__ = ["EnrollError", "add_site", "init_hub", "join"]
