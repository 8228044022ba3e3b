"""Publishing a site's key ring: what :class:`KeySync` (the base of
:class:`gateway.trust.lifecycle.KeyOps`) does after each key step.

A *sync* sends HQ every state of the ring that the directory does not show yet, in a
key's life order and only forward (at HQ applied locally, at a mission posted to
/v1/keys, gateway/trust/key_updates.py), one sync at a time per site across processes;
a TLS certificate HQ issues with it is stored in the ring. Once published, the private
files of retired and revoked keys are pruned, the escrows wrapped to an encryption key
among them wrapped again to the active key first.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import ClientSession, TCPConnector

from config.site import SiteConfig
from crypto.keys import SigningKey
from crypto.x509 import certificate_not_after, certificate_pin, site_public_key
from gateway.site.context import (
    install_directory_file,
    load_directory,
    load_keys,
    open_store,
    read_trust,
)
from gateway.site.files import write_private
from gateway.site.keyring import (
    KeyRing,
    RingKey,
    decryption_key,
    load_ring,
    prunable,
    prune,
    publish_lock,
    ring_lock,
    save_ring,
    signing_key,
)
from gateway.site.keystore import KeyStoreError, _read_private
from gateway.site.running import gateway_running
from gateway.site.tls import client_context
from gateway.store.base import Store, StoreError
from gateway.trust.escrow_rewrap import rewrap_escrows
from gateway.trust.key_updates import (
    KeyUpdate,
    KeyUpdateError,
    apply_update,
    encode_update,
    post_update,
)
from gateway.trust.outcome import KeyOpError, Outcome
from gateway.trust.ring_repair import drop_extra_next
from gateway.trust.unopened import sealed_to
from routing.directory import USABLE, Directory, KeyState
from routing.key_changes import KeyChange


def _rank(state: str | KeyState) -> int:
    """A state's place in a key's life (KeyState lists them in order): a sync sends
    changes in this order, so a new key is announced before it is activated, and
    only ever forward."""
    return list(KeyState).index(KeyState(state))


class KeySync:
    """The ring, the directory and their publication for one site folder; the key
    steps are :class:`gateway.trust.lifecycle.KeyOps`'s."""

    def __init__(
        self,
        config: SiteConfig,
        session: ClientSession | None = None,
        store: Store | None = None,
    ) -> None:
        self.config = config
        self.site = config.site.id
        self.keys_dir = config.keys_dir
        self._session = session  # a running mission's channel session, else our own
        self.store = store  # a running site's store, else opened when needed
        # Delete retired and revoked private files once published. The running gateway
        # turns this off and prunes after it has loaded its new keys (gateway/relay/key_watch.py):
        # until then it may still seal escrows to the old encryption key.
        self.prune_on_publish = True

    # -- reading -------------------------------------------------------------------
    def ring(self) -> KeyRing:
        return load_ring(self.keys_dir, self.config.key_passphrase)

    def directory(self) -> Directory:
        return load_directory(self.config, read_trust(self.keys_dir))

    # -- publishing ----------------------------------------------------------------
    def _repair_next(self, out: Outcome) -> None:
        """Keep one next key per kind (gateway/trust/ring_repair.py): a ring left with two by
        commands run at once (before ``_next_key``) could publish nothing any more."""
        directory = self.directory()
        with ring_lock(self.keys_dir):
            ring = self.ring()
            dropped = drop_extra_next(ring, directory)
            if dropped:
                save_ring(ring)
        for k in dropped:
            out.add(f"dropped {k.kind} key {k.id}: a second next key, never published")

    def _changes(self, ring: KeyRing, directory: Directory) -> tuple[list[KeyChange], bytes]:
        states = directory.site(self.site).states()
        changes: list[KeyChange] = []
        tls_public = b""
        for k in sorted(ring.keys, key=lambda k: _rank(k.state)):
            published = states.get(k.id)
            if published is None:
                if k.key_state not in USABLE:
                    continue  # never announced, nothing to withdraw
                changes.append(
                    KeyChange(self.site, k.kind, k.id, KeyState.NEXT, self._public(ring, k))
                )
                if k.kind == "tls":
                    tls_public = site_public_key(_read_private(ring.path(k), ring.passphrase))
                if k.key_state is not KeyState.NEXT:
                    changes.append(KeyChange(self.site, k.kind, k.id, k.key_state))
            elif _rank(k.state) > _rank(published[1]):
                # Only forward: a key HQ revoked (or retired) stays so, whatever the ring
                # says until reconcile() catches up.
                changes.append(KeyChange(self.site, k.kind, k.id, k.key_state))
        return changes, tls_public

    def _public(self, ring: KeyRing, k: RingKey) -> bytes:
        if k.kind == "signing":
            return signing_key(ring, k).public.raw
        if k.kind == "encryption":
            return decryption_key(ring, k).public.raw
        return b""

    async def sync(self, out: Outcome) -> None:
        """Publish every state of the ring that the directory does not show yet."""
        await self._sync(out, False)

    async def _finish(self, out: Outcome, dry_run: bool) -> Outcome:
        await self._sync(out, dry_run)
        return out

    async def _sync(self, out: Outcome, dry_run: bool) -> None:
        if dry_run:
            return await self._sync_now(out, dry_run)
        # One sync at a time per site across processes (the CLI and the running site,
        # which may activate or retire a key meanwhile): each computes its changes
        # from the directory the other left, never sending HQ a state gone stale.
        try:
            async with publish_lock(self.keys_dir):
                await self._sync_now(out, dry_run)
        except TimeoutError:
            raise KeyOpError(
                "another key operation of this site is still publishing; try again"
            ) from None

    async def _sync_now(self, out: Outcome, dry_run: bool) -> None:
        if not dry_run:
            self._repair_next(out)
        ring = self.ring()
        directory = self.directory()
        changes, tls_public = self._changes(ring, directory)
        out.serial = directory.serial
        if not changes:
            return
        described = ", ".join(f"{c.kind} {c.key_id[:12]}… {c.state.value}" for c in changes)
        if dry_run:
            out.add(f"would publish: {described}")
            return
        update = KeyUpdate(self.site, datetime.now(UTC), tuple(changes), tls_public)
        if self.config.is_hub:
            try:
                new, cert = apply_update(self.config.directory, update, self.config.key_passphrase)
            except KeyUpdateError as exc:
                raise KeyOpError(str(exc)) from None
        else:
            # Each new signing key signs its own proof of possession (key_updates.py).
            new_signing = [
                signing_key(ring, ring.get(c.key_id))
                for c in changes
                if c.kind == "signing" and c.state is KeyState.NEXT
            ]
            body = encode_update(update, self._signer(ring, directory), new_signing)
            data, cert = await self._post(body)
            # Adopt HQ's answer (a running gateway sees it on disk).
            trust = read_trust(self.keys_dir)
            new = install_directory_file(self.config.directory, trust, directory, data) or directory
        if cert:
            self._store_certificate(cert)
        out.add(f"published: {described} (directory {new.serial})")
        out.serial = new.serial
        if self.prune_on_publish:
            if gateway_running(self.config.directory):
                out.add(
                    "the running gateway deletes the private files of keys no longer"
                    " usable once it has loaded the new keys (and, for an encryption key,"
                    " opened what it received sealed to it: valise doctor, keys kept)"
                )
            else:
                await self.prune(new, out)

    async def prune(self, directory: Directory, out: Outcome) -> None:
        """Delete the private files :func:`gateway.site.keyring.prune` deletes, the escrows
        wrapped to an encryption key among them wrapped again to the active key first."""
        if await self._keep_escrows(directory, out):
            with ring_lock(self.keys_dir):
                prune(self.ring(), directory)

    async def _keep_escrows(self, directory: Directory, out: Outcome) -> bool:
        """Wrap the escrows wrapped to an encryption key about to be pruned again to the
        active one (gateway/trust/escrow_rewrap.py). False (prune later) if the store failed
        or an envelope received here and not opened yet is sealed to one of them (the
        gateway opens it first, at its next start: gateway/trust/unopened.py)."""
        ring = self.ring()
        going = [k for k in prunable(ring, directory) if k.kind == "encryption"]
        if not going:
            return True
        ids = ", ".join(k.id for k in going)
        old = [decryption_key(ring, k) for k in going]
        new = decryption_key(ring, ring.active("encryption")).public
        own = self.store is None
        try:
            store = await open_store(self.config) if self.store is None else self.store
            try:
                if await sealed_to(store, self.site, {k.id for k in going}):
                    out.add(
                        f"kept the private file of {ids}: envelopes received sealed to it"
                        " are not opened yet (the gateway opens them, then deletes it)"
                    )
                    return False
                n = await rewrap_escrows(store, old, new, now=datetime.now(UTC))
            finally:
                if own:
                    await store.close()
        except StoreError as exc:
            out.add(f"kept the private file of {ids}: {exc}")
            return False
        if n:
            out.add(f"{n} escrows wrapped again to encryption key {new.key_id}")
        return True

    def _signer(self, ring: KeyRing, directory: Directory) -> SigningKey:
        """A signing key the directory accepts now, whose private file we still hold:
        the active one, else (just after replacing a revoked key) the one it replaced."""
        accepted = directory.site(self.site).verify_keys()
        held = [k for k in ring.keys if k.kind == "signing" and k.id in accepted]
        held.sort(key=lambda k: k.state != "active")
        for k in held:
            if ring.path(k).exists():
                return signing_key(ring, k)
        # Our signing key was revoked: sign with the new one this update introduces (HQ
        # takes that over a TLS connection whose key is pinned, gateway/trust/key_updates.py).
        for k in ring.of("signing", KeyState.NEXT):
            if k.id not in directory.site(self.site).states():
                return signing_key(ring, k)
        raise KeyOpError("no signing key that HQ accepts is left here: HQ must re-enroll the site")

    @contextlib.asynccontextmanager
    async def hub_session(self) -> AsyncIterator[ClientSession]:
        """A channel session to HQ: the running site's, else one of our own (the CLI)."""
        if self._session is not None:
            yield self._session
            return
        _, tls = load_keys(self.config)
        hub = self.config.site.hub
        ssl_ctx = client_context(tls.cert_pem, tls.key_pem, tls.ca_pem, expect_site=hub)
        async with ClientSession(connector=TCPConnector(ssl=ssl_ctx)) as session:
            yield session

    async def _post(self, body: bytes) -> tuple[bytes, bytes]:
        try:
            async with self.hub_session() as session:
                return await post_update(session, self.config.site.hub_endpoint, body)
        except KeyUpdateError as exc:
            raise KeyOpError(str(exc)) from None

    def _store_certificate(self, cert: bytes) -> None:
        pin = certificate_pin(cert)
        with ring_lock(self.keys_dir):
            ring = self.ring()
            k = ring.find(pin)
            if k is None:
                raise KeyStoreError(f"HQ issued a certificate for a TLS key we don't hold ({pin})")
            write_private(ring.path(k, ".crt"), cert)
            ring.replace(k, expires=certificate_not_after(cert).isoformat())
            save_ring(ring)
