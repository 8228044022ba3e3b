"""Rotating, activating, retiring and revoking a site's keys, and publishing them.

The site's own key ring (gateway/site/keyring.py) is the truth about its keys; the
directory is how the other sites learn it. Every step changes the ring, then
*syncs*: it sends HQ every state of the ring that the directory does not show yet
(HQ applies it locally; a mission posts it to /v1/keys, gateway/trust/key_updates.py). A
step run again finds nothing to do; a step interrupted is finished by the next sync.

rotate --kind K (one command; each part is also a command of its own):
1. a new key of kind K is generated as ``next`` (a TLS key: its certificate comes
   from HQ with the publication);
2. sync: the directory announces it as next (every site accepts next keys);
3. the ring records the announcement (gateway/trust/announce.py): the key waits as
   next until every site has fetched a directory announcing it, or at the latest
   ``[keys] announce_seconds``; then a running site activates it (``--now``, or
   ``valise keys activate``, at once);
4. activate: the ring makes it active, the old one retiring for the overlap;
5. sync: the directory shows it active and the old one retiring;
6. later, when the overlap has passed, a running site retires the old key itself
   (``valise keys retire`` does it at once); retired keys are refused everywhere.

Revoking an own active key activates a fresh replacement at once (no overlap). At
HQ an operator may revoke any site's key; a site that sees its own key revoked in
the directory revokes it in its ring and replaces it (:func:`reconcile`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import ClientSession, TCPConnector

from config.site import SiteConfig
from crypto.keys import SigningKey
from crypto.x509 import (
    certificate_not_after,
    certificate_pin,
    generate_site_key,
    public_key_pin,
    site_public_key,
)
from gateway.proof import audit
from gateway.site.context import (
    install_directory_file,
    load_directory,
    load_keys,
    open_store,
    read_trust,
)
from gateway.site.files import write_private
from gateway.site.keyring import (
    MAX_OVERLAP_SECONDS,
    KeyRing,
    RingKey,
    activate,
    add_key,
    announced,
    decryption_key,
    due_for_retirement,
    generate_key,
    load_ring,
    prunable,
    prune,
    publish_lock,
    retire,
    revoke,
    ring_lock,
    save_ring,
    signing_key,
)
from gateway.site.keystore import KeyStoreError, _read_private
from gateway.site.tls import client_context
from gateway.store.base import Store, StoreError
from gateway.trust.announce import announce_key
from gateway.trust.escrow_rewrap import rewrap_escrows
from gateway.trust.key_updates import (
    KeyUpdate,
    KeyUpdateError,
    apply_update,
    encode_update,
    issue_tls_certificate,
    post_update,
)
from gateway.trust.outcome import Outcome
from gateway.trust.publish import publish
from gateway.trust.ring_repair import drop_extra_next
from routing.directory import (
    USABLE,
    Directory,
    DirectoryError,
    KeyState,
)
from routing.key_changes import KeyChange, apply_changes, key_site


def _rank(state: str | KeyState) -> int:
    """A state's place in a key's life (KeyState lists them in order): a sync sends
    changes in this order, so a new key is announced before it is activated, and
    only ever forward."""
    return list(KeyState).index(KeyState(state))


class KeyOpError(Exception):
    """A key operation could not be done; one line says why. Nothing was half-done
    that a re-run would not finish."""


def parse_duration(text: str, limit: float = MAX_OVERLAP_SECONDS) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``7d`` or plain seconds, 0 to ``limit`` seconds (an
    overlap: ten years). Raises KeyOpError (nan, inf, negative, too long)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    value = text.strip().lower()
    try:
        if value and value[-1] in units:
            seconds = float(value[:-1]) * units[value[-1]]
        else:
            seconds = float(value)
    except ValueError:
        raise KeyOpError(f"{text!r} is not a duration (like 90s, 30m, 12h, 7d)") from None
    if not math.isfinite(seconds):
        raise KeyOpError(f"{text!r} is not a duration (like 90s, 30m, 12h, 7d)")
    if seconds < 0:
        raise KeyOpError("a duration cannot be negative")
    if seconds > limit:
        raise KeyOpError(f"{text!r} is too long: at most {limit:.0f} seconds")
    return timedelta(seconds=seconds)


def check_overlap(overlap: timedelta) -> None:
    """Refuse an overlap the ring would refuse later, before anything is generated."""
    if not timedelta(0) <= overlap <= timedelta(seconds=MAX_OVERLAP_SECONDS):
        raise KeyOpError(f"an overlap must be 0 to {MAX_OVERLAP_SECONDS:.0f} seconds")


class KeyOps:
    """Key operations on one site folder (the admin CLI and the running gateway)."""

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

    # -- the steps -----------------------------------------------------------------
    async def rotate(
        self, kind: str, overlap: timedelta, *, dry_run: bool = False, at_once: bool = False
    ) -> Outcome:
        """Generate and publish a new ``kind`` key as next; activate it at once with
        ``at_once`` (or ``[keys] announce_seconds = 0``), else when its announcement
        is due (gateway/trust/announce.py)."""
        check_overlap(overlap)  # before a key is generated and published
        out = Outcome()
        announce = timedelta(seconds=self.config.keys.announce_seconds)
        at_once = at_once or announce <= timedelta(0)
        if not dry_run:
            self._repair_next(out)
        ring = self.ring()
        retiring = ring.of(kind, KeyState.RETIRING)
        pending = ring.of(kind, KeyState.NEXT)
        if retiring and not pending:
            out.add(
                f"nothing to do: {kind} key {retiring[0].id} is still retiring"
                f" (until {retiring[0].retire_after}); retire it first to rotate again"
            )
            return await self._finish(out, dry_run)
        if pending:
            new_id = pending[0].id
            out.add(f"resume: {kind} key {new_id} is next already")
        elif dry_run:
            out.add(f"would generate a new {kind} key as next")
            if at_once:
                out.add(
                    f"would publish it, activate it, and keep the old one retiring for {overlap}"
                )
            else:
                out.add(
                    "would publish it as next; it activates when every site has fetched the"
                    f" directory announcing it, at the latest {announce} later; the old one"
                    f" then stays retiring for {overlap}"
                )
            return out
        else:
            new_id, made = self._next_key(kind)
            if made:
                out.add(f"generated {kind} key {new_id} (next)")
            else:
                out.add(f"resume: {kind} key {new_id} is next already (made meanwhile)")
        await self._sync(out, dry_run)
        if at_once:
            return await self.activate(new_id, overlap, dry_run=dry_run, out=out)
        return await announce_key(self, new_id, overlap, announce, out, dry_run=dry_run)

    async def activate(
        self, key_id: str, overlap: timedelta, *, dry_run: bool = False, out: Outcome | None = None
    ) -> Outcome:
        check_overlap(overlap)
        out = out or Outcome()
        with ring_lock(self.keys_dir):
            ring = self.ring()
            k = ring.get(key_id)
            if (
                k.kind == "tls"
                and k.key_state is KeyState.NEXT
                and not ring.path(k, ".crt").exists()
            ):
                raise KeyOpError(
                    f"TLS key {key_id} has no certificate yet: publish it first (sync)"
                )
            if not self._published(k):
                raise KeyOpError(
                    f"{k.kind} key {key_id} is not in the directory yet; run"
                    " `valise keys rotate` again to publish it"
                )
            changed = activate(ring, key_id, now=datetime.now(UTC), overlap=overlap)
            for c in changed:
                out.add(f"{'would mark' if dry_run else 'marked'} {c.kind} key {c.id} {c.state}")
            if not changed:
                out.add(f"{k.kind} key {key_id} is active already")
            if changed and not dry_run:
                save_ring(ring)
        return await self._finish(out, dry_run)

    async def retire(self, key_id: str, *, dry_run: bool = False) -> Outcome:
        out = Outcome()
        with ring_lock(self.keys_dir):
            ring = self.ring()
            changed = retire(ring, key_id, now=datetime.now(UTC))
            out.add(
                f"{'would retire' if dry_run else 'retired'} key {key_id}"
                if changed
                else f"key {key_id} is retired already"
            )
            if changed and not dry_run:
                save_ring(ring)
        return await self._finish(out, dry_run)

    async def revoke(self, key_id: str, reason: str, *, dry_run: bool = False) -> Outcome:
        """Revoke a key of this site (and replace it if it was active); at HQ, also a
        key of any other site."""
        out = Outcome()
        if not reason.strip():
            raise KeyOpError("a revocation needs a --reason")
        ring = self.ring()
        if ring.find(key_id) is None:
            return await self._revoke_other(key_id, reason, out, dry_run)
        k = ring.get(key_id)
        if k.key_state is KeyState.REVOKED:
            out.add(f"key {key_id} is revoked already")
            return await self._finish(out, dry_run)
        if dry_run:
            extra = " and activate a new one at once" if k.key_state is KeyState.ACTIVE else ""
            out.add(f"would revoke {k.kind} key {key_id}{extra}")
            return out
        if k.key_state is KeyState.ACTIVE:
            await self._replace(k, reason, out)
            return out
        with ring_lock(self.keys_dir):
            ring = self.ring()
            revoke(ring, key_id, now=datetime.now(UTC), reason=reason)
            save_ring(ring)
        out.add(f"revoked {k.kind} key {key_id}: {reason}")
        return await self._finish(out, False)

    async def _replace(self, old: RingKey, reason: str, out: Outcome) -> None:
        """Revoke the active key ``old`` and put a new one in its place, with no overlap:
        the new key is published first (as next, so a TLS key gets its certificate),
        then made active while ``old`` is revoked, in one ring change."""
        self._repair_next(out)
        new_id, _ = self._next_key(old.kind)
        out.add(f"new {old.kind} key {new_id} (next) to replace {old.id}")
        await self._sync(out, False)
        with ring_lock(self.keys_dir):
            ring = self.ring()
            now = datetime.now(UTC)
            activate(ring, new_id, now=now, overlap=timedelta(0))
            ring.replace(
                ring.get(old.id),
                state=KeyState.REVOKED.value,
                revoked=now.isoformat(),
                reason=reason,
            )
            save_ring(ring)
        out.add(f"revoked {old.kind} key {old.id}: {reason}; {new_id} is active")
        await self._sync(out, False)

    async def _revoke_other(self, key_id: str, reason: str, out: Outcome, dry_run: bool) -> Outcome:
        if not self.config.is_hub:
            raise KeyOpError(
                f"key {key_id} is not a key of {self.site}; only HQ revokes another site's keys"
            )
        try:
            found = key_site(self.directory(), key_id)  # one site's key, or refused
        except DirectoryError as exc:
            raise KeyOpError(str(exc)) from None
        if found is None:
            raise KeyOpError(f"no key {key_id} in the directory")
        site, kind, state = found
        if state is KeyState.REVOKED:
            out.add(f"{kind} key {key_id} of {site} is revoked already")
            return out
        change = KeyChange(site, kind, key_id, KeyState.REVOKED)
        directory, _ = publish(
            self.config.directory,
            lambda d, now: apply_changes(d, [change], now=now),
            dry_run=dry_run,
            passphrase=self.config.key_passphrase,
        )
        verb = "would revoke" if dry_run else "revoked"
        out.add(f"{verb} {kind} key {key_id} of {site} ({reason}) in directory {directory.serial}")
        out.serial = directory.serial
        return out

    async def retire_due(self, now: datetime) -> Outcome:
        """Retire every retiring key whose overlap has passed (the running gateway)."""
        out = Outcome()
        with ring_lock(self.keys_dir):
            ring = self.ring()
            for k in due_for_retirement(ring, now):
                retire(ring, k.id, now=now)
                out.add(f"retired {k.kind} key {k.id} (overlap over)")
            if out.steps:
                save_ring(ring)
        if out.steps:
            await self._sync(out, False)
        return out

    async def reconcile(self, directory: Directory) -> Outcome:
        """Adopt revocations HQ published for this site's keys; replace an active one."""
        out = Outcome()
        states = directory.site(self.site).states()
        for k in list(self.ring().keys):
            published = states.get(k.id)
            if not published or published[1] is not KeyState.REVOKED or k.state == "revoked":
                continue
            out.add(f"{k.kind} key {k.id} was revoked by HQ")
            if k.key_state is KeyState.ACTIVE:
                await self._replace(k, "revoked by HQ", out)
                continue
            with ring_lock(self.keys_dir):
                ring = self.ring()
                revoke(ring, k.id, now=datetime.now(UTC), reason="revoked by HQ")
                save_ring(ring)
        return out

    async def renew_tls_if_due(self, now: datetime, overlap: timedelta) -> Outcome:
        """Rotate the TLS key when its certificate ends within [keys] tls_renew_days."""
        ring = self.ring()
        if ring.of("tls", KeyState.RETIRING) or any(k.kind == "tls" for k in announced(ring)):
            return Outcome()  # renewed already: the new key is announced, or the old retiring
        k = ring.active("tls")
        not_after = certificate_not_after(ring.path(k, ".crt").read_bytes())
        if not_after - now > timedelta(days=self.config.keys.tls_renew_days):
            return Outcome()
        out = await self.rotate("tls", overlap)
        out.steps.insert(0, f"TLS certificate ends {not_after.isoformat()}: renewing")
        return out

    # -- internals -----------------------------------------------------------------
    def _next_key(self, kind: str) -> tuple[str, bool]:
        """The ring's next ``kind`` key, generated if there is none: (id, generated).
        Looked for again under the ring lock, so that two commands at once (two
        ``keys rotate``, or the site's TLS renewal and an operator) make one key."""
        with ring_lock(self.keys_dir):
            ring = self.ring()
            pending = ring.of(kind, KeyState.NEXT)
            if pending:
                return pending[0].id, False
            k = self._new_key(ring, kind)
            save_ring(ring)
            return k.id, True

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

    def _new_key(self, ring: KeyRing, kind: str) -> RingKey:
        """A new key in ``ring`` as next (not saved). A TLS key gets its certificate
        from HQ's CA (at HQ now; at a mission with the publication)."""
        now = datetime.now(UTC)
        if kind != "tls":
            return generate_key(ring, kind, now=now)
        key_pem = generate_site_key()
        pin = public_key_pin(key_pem)
        cert = None
        expires = now + timedelta(days=self.config.keys.tls_days)
        if self.config.is_hub:
            cert = issue_tls_certificate(
                self.config.directory,
                self.site,
                site_public_key(key_pem),
                self.config.keys.tls_days,
                passphrase=self.config.key_passphrase,
            )
            expires = certificate_not_after(cert)
        return add_key(ring, "tls", key_pem, pin, now=now, expires=expires, cert=cert)

    def _published(self, k: RingKey) -> bool:
        return k.id in self.directory().site(self.site).states()

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
            await self.prune(new, out)

    async def prune(self, directory: Directory, out: Outcome) -> None:
        """Delete the private files :func:`gateway.site.keyring.prune` deletes, the escrows
        wrapped to an encryption key among them wrapped again to the active key first."""
        if await self._keep_escrows(directory, out):
            with ring_lock(self.keys_dir):
                prune(self.ring(), directory)

    async def _keep_escrows(self, directory: Directory, out: Outcome) -> bool:
        """Wrap the escrows wrapped to an encryption key about to be pruned again to the
        active one (gateway/trust/escrow_rewrap.py). False (prune later) if the store failed."""
        ring = self.ring()
        going = [k for k in prunable(ring, directory) if k.kind == "encryption"]
        if not going:
            return True
        old = [decryption_key(ring, k) for k in going]
        new = decryption_key(ring, ring.active("encryption")).public
        own = self.store is None
        try:
            store = await open_store(self.config) if self.store is None else self.store
            try:
                n = await rewrap_escrows(store, old, new, now=datetime.now(UTC))
            finally:
                if own:
                    await store.close()
        except StoreError as exc:
            out.add(f"kept the private file of {', '.join(k.id for k in going)}: {exc}")
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


_COLUMNS = (
    "kind",
    "id",
    "state",
    "created",
    "activated",
    "retire_after",
    "retired",
    "revoked",
    "reason",
    "expires",
    "announced_in",
    "activate_by",
    "overlap_seconds",
)


async def audit_key_event(
    config: SiteConfig,
    action: str,
    subject: str,
    out: Outcome,
    result: str,
    *,
    actor: str,
    store: Store | None = None,
) -> None:
    """Record a key operation in the audit log (opening the site's store when none is
    given). Raises AuditError or StoreError: the caller reports it; the key change is
    done and published either way."""
    detail = {"steps": "; ".join(out.steps)}
    if out.serial is not None:
        detail["directory"] = str(out.serial)
    own = store is None
    used = await open_store(config) if store is None else store
    try:
        await audit.record(
            used, actor=actor, action=action, subject=subject, result=result, detail=detail
        )
    finally:
        if own:
            await used.close()


def describe(ring: KeyRing) -> list[dict[str, str]]:
    """The ring as rows for ``valise keys list``."""
    return [{c: str(getattr(k, c)) for c in _COLUMNS} for k in ring.keys]


def hub_keys(site_dir: Path) -> list[dict[str, str]]:
    """HQ's own infrastructure keys: the directory key, the site CA, the TSA."""
    k = site_dir / "keys"
    blank = dict.fromkeys(_COLUMNS, "")
    rows = [{**blank, "kind": "directory", "id": read_trust(k).key_id, "state": "active"}]
    for kind, name in (("ca", "ca.crt"), ("tsa", "tsa.crt")):
        path = k / name
        if path.exists():
            cert = path.read_bytes()
            expires = certificate_not_after(cert).isoformat()
            rows.append(
                {
                    **blank,
                    "kind": kind,
                    "id": certificate_pin(cert),
                    "state": "active",
                    "expires": expires,
                }
            )
    return rows


__all__ = ["KeyOpError", "KeyOps", "Outcome", "describe", "hub_keys", "parse_duration"]
