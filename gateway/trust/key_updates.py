"""A mission sending its key changes to HQ: POST /v1/keys over the channel.

Wire form (JSON): ``{"request": base64(R), "key": KEYID, "signature": base64(S),
"possession": {NEWKEYID: base64(P)}}`` where R is the UTF-8 JSON ``{"site", "at",
"changes": [{"kind", "id", "state", "public"}], "tls_public_key"}``, S the Ed25519
signature, by a signing key of the site that the directory accepts (next, active or
retiring), over ``"valise/v1/key-update\\x00" ‖ R``, and P, for each new signing key
the update announces, that key's signature over ``"valise/v1/key-possession\\x00" ‖ R``.

HQ's rules:
- The TLS peer must be the site the request is for, and the signature must verify
  under one of that site's accepted signing keys: a stolen TLS key alone cannot
  publish keys, nor can a stolen signing key without the site's TLS key.
- ``at`` must be within ``MAX_SKEW`` of HQ's clock (a replay later is refused; one
  within the window changes nothing, since changes are idempotent).
- Changes are for the requesting site only and follow routing/key_changes.py (a key
  id or pin another site has, or had, is refused; so are more keys than its limits).
- A new signing key proves that the site holds it: P verifies under it, over this very
  request (proof of possession), so no site can announce another site's signing key.
  An encryption key cannot sign; it and a TLS key (whose certificate HQ issues itself)
  are kept from squatting by the directory's uniqueness of key ids and pins.
- At most one new key per kind in one update, and at most ``MAX_UPDATES_PER_MINUTE``
  updates per site and minute (429 beyond; counted in memory at HQ): a site cannot
  churn keys to grow the directory.
- A new TLS key (a ``next`` change of kind tls) comes with its public key; HQ issues
  its certificate under the site CA, records its serial, and answers it with the
  directory.
- The TLS key the request comes over must be pinned for the site, except in the
  recovery case (gateway/trust/tls_identity.py: a certificate HQ issued to the site, whose
  key HQ revoked, while the site has no active TLS key). Then only a TLS key
  replacement is taken (:func:`check_recovery`): one new TLS key as next while the
  site has none pinned, and making a next TLS key active; no revocation, no other
  kind, and the signature is by a signing key the directory accepts. See docs/KEYS.md.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

from crypto.errors import KeyFormatError, SignatureError
from crypto.keys import SigningKey, VerifyKey
from crypto.recipes import sign, verify
from crypto.x509 import issue_site_certificate, public_key_pin
from gateway.site.appkeys import CONTEXT, PEER
from gateway.site.context import load_site_ca
from gateway.store.base import StoreError
from gateway.store.enrollments import CertificatePurpose
from gateway.trust.publish import publish
from gateway.trust.tls_identity import STANDING, Standing, issued
from routing.directory import Directory, DirectoryError, KeyState, SiteEntry
from routing.key_changes import KeyChange, apply_site_update

LABEL = b"valise/v1/key-update\x00"
POSSESSION_LABEL = b"valise/v1/key-possession\x00"
MAX_SKEW = timedelta(minutes=5)
MAX_BODY = 64 * 1024
MAX_CHANGES = 16
MAX_NEW_KEYS_PER_KIND = 1  # in one update
MAX_UPDATES_PER_MINUTE = 10  # per site, at HQ


class KeyUpdateError(Exception):
    """A key update was refused; one line says why."""


class KeyUpdateRefused(KeyUpdateError):
    """A key update signed by one of the site's keys, refused for what it asks."""


@dataclass(frozen=True)
class KeyUpdate:
    site: str
    at: datetime
    changes: tuple[KeyChange, ...]
    tls_public_key: bytes = b""  # PEM, with a tls ``next`` change


def encode_update(
    update: KeyUpdate, signer: SigningKey, possession: Sequence[SigningKey] = ()
) -> bytes:
    """The wire form of ``update``, signed by ``signer``; ``possession``: the private
    keys of the new signing keys it announces, each signing its proof."""
    request = json.dumps(
        {
            "site": update.site,
            "at": update.at.astimezone(UTC).isoformat(),
            "changes": [
                {
                    "kind": c.kind,
                    "id": c.key_id,
                    "state": c.state.value,
                    "public": base64.b64encode(c.public).decode(),
                }
                for c in update.changes
            ],
            "tls_public_key": update.tls_public_key.decode(),
        },
        sort_keys=True,
    ).encode()
    return json.dumps(
        {
            "request": base64.b64encode(request).decode(),
            "key": signer.key_id,
            "signature": base64.b64encode(sign(signer, LABEL + request)).decode(),
            "possession": {
                k.key_id: base64.b64encode(sign(k, POSSESSION_LABEL + request)).decode()
                for k in possession
            },
        }
    ).encode()


def decode_update(
    body: bytes,
    *,
    peer: str,
    directory: Directory,
    now: datetime,
    pinned: bool = False,
    recovery: bool = False,
) -> KeyUpdate:
    """Check a key update from TLS peer ``peer`` (over a pinned TLS key, or in the TLS
    recovery case: then :func:`check_recovery` applies). Raises KeyUpdateError."""
    if len(body) > MAX_BODY:
        raise KeyUpdateError("key update too large")
    try:
        outer = json.loads(body)
        request = base64.b64decode(outer["request"], validate=True)
        signature = base64.b64decode(outer["signature"], validate=True)
        key_id = str(outer["key"])
        inner = json.loads(request)
        site = str(inner["site"])
        at = datetime.fromisoformat(str(inner["at"]))
        changes = tuple(
            KeyChange(
                site=site,
                kind=str(c["kind"]),
                key_id=str(c["id"]),
                state=KeyState(str(c["state"])),
                public=base64.b64decode(str(c.get("public", "")), validate=True),
            )
            for c in inner["changes"]
        )
        tls_public = str(inner.get("tls_public_key", "")).encode()
        proofs = {
            str(k): base64.b64decode(str(v), validate=True)
            for k, v in dict(outer.get("possession", {})).items()
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyUpdateError(f"malformed key update: {exc}") from None
    if site != peer:
        raise KeyUpdateError(f"TLS peer {peer} may not change the keys of {site}")
    if at.utcoffset() is None or abs(now - at) > MAX_SKEW:
        raise KeyUpdateError("key update time is too far from HQ's clock (replay or skew)")
    if not 1 <= len(changes) <= MAX_CHANGES:
        raise KeyUpdateError(f"a key update holds 1 to {MAX_CHANGES} changes")
    try:
        entry = directory.site(site)
    except DirectoryError as exc:
        raise KeyUpdateError(str(exc)) from None
    signer = entry.verify_keys().get(key_id)
    introduced = next(
        (
            c
            for c in changes
            if c.kind == "signing" and c.key_id == key_id and c.state is KeyState.NEXT
        ),
        None,
    )
    if signer is None and introduced is not None and pinned and key_id not in entry.states():
        # A site whose signing keys were all revoked, over a TLS key still pinned: the new
        # key signs its own introduction (proof of possession).
        try:
            signer = VerifyKey.from_bytes(introduced.public)
        except KeyFormatError as exc:
            raise KeyUpdateError(f"new signing key: {exc}") from None
        if signer.key_id != key_id or entry.verify_keys():
            raise KeyUpdateError(
                "a new signing key may sign its own introduction only when"
                " the site has no accepted signing key left"
            )
    if signer is None:
        raise KeyUpdateError(f"key update signed by a refused key: {entry.refusal(key_id)}")
    try:
        verify(signer, signature, LABEL + request)
    except SignatureError:
        raise KeyUpdateError("key update signature does not verify") from None
    # From here the update is the site's own (signed by a key it holds): a refusal
    # counts against its rate, unlike anything a certificate holder alone can post.
    try:
        _check_new_keys(changes)
        if recovery and not pinned:
            check_recovery(entry, changes)
        check_possession(entry, changes, request, proofs)
    except KeyUpdateError as exc:
        raise KeyUpdateRefused(str(exc)) from None
    return KeyUpdate(site, at, changes, tls_public)


def _check_new_keys(changes: tuple[KeyChange, ...]) -> None:
    """At most MAX_NEW_KEYS_PER_KIND keys of a kind announced (next) in one update."""
    for kind in {c.kind for c in changes}:
        new = {c.key_id for c in changes if c.kind == kind and c.state is KeyState.NEXT}
        if len(new) > MAX_NEW_KEYS_PER_KIND:
            raise KeyUpdateError(
                f"a key update announces at most one new {kind} key, not {len(new)}"
            )


def check_possession(
    entry: SiteEntry, changes: tuple[KeyChange, ...], request: bytes, proofs: dict[str, bytes]
) -> None:
    """Each new signing key (not yet listed for the site) must have signed
    POSSESSION_LABEL ‖ request. Raises KeyUpdateError."""
    listed = entry.states()
    for c in changes:
        if c.kind != "signing" or c.state is not KeyState.NEXT or c.key_id in listed:
            continue
        try:
            key = VerifyKey.from_bytes(c.public)
            if key.key_id != c.key_id:
                raise KeyFormatError("its id is not its digest")
            verify(key, proofs.get(c.key_id, b""), POSSESSION_LABEL + request)
        except (KeyFormatError, SignatureError):
            raise KeyUpdateError(
                f"new signing key {c.key_id}: no valid proof of possession (a signature by"
                " the new key over the update); a site announces only keys it holds"
            ) from None


def check_recovery(entry: SiteEntry, changes: tuple[KeyChange, ...]) -> None:
    """Refuse anything but a TLS key replacement from a site in TLS recovery (its
    TLS key revoked by HQ, not replaced yet). Raises KeyUpdateError."""
    pending = {pin for pin, s in entry.tls if s is KeyState.NEXT}
    for c in changes:
        if c.kind != "tls" or c.state not in (KeyState.NEXT, KeyState.ACTIVE):
            raise KeyUpdateError(
                f"TLS key recovery (over a revoked certificate) takes a TLS key replacement"
                f" only, not {c.kind} key {c.key_id} {c.state.value}"
            )
        if c.state is KeyState.NEXT:
            if entry.tls_pins:
                raise KeyUpdateError(
                    "TLS key recovery: a replacement TLS key is pinned already; use it"
                )
            pending.add(c.key_id)
        elif c.key_id not in pending:
            raise KeyUpdateError(
                f"TLS key recovery: {c.key_id} is not the replacement TLS key (next)"
            )


def apply_update(
    site_dir: Path, update: KeyUpdate, passphrase: bytes | None = None
) -> tuple[Directory, bytes]:
    """Publish ``update`` at HQ; issue the certificate of a new TLS key. Returns (the
    directory in force, the new certificate PEM or b""). Raises KeyUpdateError."""
    cert = b""
    new_tls = [c for c in update.changes if c.kind == "tls" and c.state is KeyState.NEXT]
    if new_tls:
        if len(new_tls) > 1 or not update.tls_public_key:
            raise KeyUpdateError("a new TLS key comes alone, with its public key")
        try:
            pin = public_key_pin(update.tls_public_key)
        except Exception as exc:
            raise KeyUpdateError(f"new TLS key: {exc}") from None
        if pin != new_tls[0].key_id:
            raise KeyUpdateError("new TLS key: its pin is not the id given")
        cert = issue_tls_certificate(
            site_dir, update.site, update.tls_public_key, passphrase=passphrase
        )
    try:
        directory, _ = publish(
            site_dir,
            lambda d, now: apply_site_update(d, update.changes, now=now),
            passphrase=passphrase,
        )
    except DirectoryError as exc:
        raise KeyUpdateError(str(exc)) from None
    return directory, cert


def issue_tls_certificate(
    site_dir: Path, site: str, public_pem: bytes, days: int = 365, *, passphrase: bytes | None
) -> bytes:
    """HQ: a TLS certificate for ``site``'s key under the site CA (its key encrypted
    under ``passphrase`` when the site has one)."""
    k = site_dir / "keys"
    ca = load_site_ca(k, passphrase)
    cert, _ = issue_site_certificate(ca, site, public_pem, now=datetime.now(UTC), days=days)
    return cert


class UpdateRate:
    """Key updates per site in the last minute (HQ, in memory): a sliding window of
    ``limit`` per ``window`` seconds. A restart forgets it, which only an operator does."""

    def __init__(self, limit: int = MAX_UPDATES_PER_MINUTE, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._seen: dict[str, deque[float]] = {}

    def take(self, site: str, now: float) -> bool:
        """Count one update of ``site`` at ``now`` (monotonic seconds) if under the
        limit; False when over it (nothing counted)."""
        seen = self._seen.setdefault(site, deque())
        while seen and now - seen[0] >= self.window:
            seen.popleft()
        if len(seen) >= self.limit:
            return False
        seen.append(now)
        return True


def keys_route(rate: UpdateRate | None = None) -> Callable[[web.Request], Awaitable[web.Response]]:
    """HQ's POST /v1/keys, with its per-site rate of updates."""
    limit = rate or UpdateRate()

    async def handler(request: web.Request) -> web.Response:
        return await keys_handler(request, limit)

    return handler


async def keys_handler(request: web.Request, rate: UpdateRate) -> web.Response:
    """HQ's POST /v1/keys. Only updates signed by one of the site's keys count against
    its rate: a holder of the site's certificate alone (the recovery case: a thief of a
    revoked TLS key) must not be able to spend the site's budget and stop its recovery."""

    ctx = request.app[CONTEXT]
    standing = request[STANDING]  # gateway/trust/tls_identity.py: pinned or recovery
    if standing not in (Standing.PINNED, Standing.RECOVERY):  # admit() allows no other
        return web.json_response({"error": "key updates need a pinned certificate"}, status=403)
    peer = request[PEER]
    refused: KeyUpdateRefused | None = None
    try:
        body = await request.content.read(MAX_BODY + 1)
        update = decode_update(
            body,
            peer=peer,
            directory=ctx.directory,
            now=datetime.now(UTC),
            pinned=standing is Standing.PINNED,
            recovery=standing is Standing.RECOVERY,
        )
    except KeyUpdateRefused as exc:
        refused = exc
    except KeyUpdateError as exc:  # not shown to be the site's: not counted
        return web.json_response({"error": str(exc)}, status=403)
    if not rate.take(peer, time.monotonic()):
        return web.json_response(
            {
                "error": f"too many key updates from {peer}: at most"
                f" {rate.limit} a minute; try again later"
            },
            status=429,
        )
    if refused is not None:
        return web.json_response({"error": str(refused)}, status=403)
    try:
        directory, cert = apply_update(ctx.config.directory, update, ctx.config.key_passphrase)
    except KeyUpdateError as exc:
        return web.json_response({"error": str(exc)}, status=403)
    if cert:
        try:
            await ctx.store.certificate_add(
                issued(cert, peer, CertificatePurpose.SITE, datetime.now(UTC))
            )
        except StoreError as exc:  # published already; without the record, no recovery
            logging.getLogger("valise.keys").warning("certificate not recorded: %s", exc)
    ctx.install_directory(directory.raw)
    return web.json_response(
        {"directory": base64.b64encode(directory.raw).decode(), "certificate": cert.decode()}
    )


async def post_update(
    session: ClientSession, hub_endpoint: str, body: bytes, timeout: float = 30.0
) -> tuple[bytes, bytes]:
    """Send a key update to HQ; (the directory HQ now serves, the certificate or b"").
    Raises KeyUpdateError."""
    try:
        async with session.post(
            f"{hub_endpoint}/v1/keys",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=ClientTimeout(total=timeout),
        ) as resp:
            answer: Any = await resp.json(content_type=None)
            if resp.status != 200:
                error = answer.get("error") if isinstance(answer, dict) else None
                raise KeyUpdateError(f"HQ refused the key update: {error or resp.status}")
            return (
                base64.b64decode(answer["directory"]),
                str(answer.get("certificate", "")).encode(),
            )
    except (OSError, TimeoutError) as exc:
        raise KeyUpdateError(f"HQ at {hub_endpoint} unreachable: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyUpdateError(f"HQ answered nonsense: {exc}") from None
