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

import math
from datetime import UTC, datetime, timedelta

from crypto.x509 import certificate_not_after, generate_site_key, public_key_pin, site_public_key
from gateway.site.keyring import (
    MAX_OVERLAP_SECONDS,
    KeyRing,
    RingKey,
    add_key,
    generate_key,
    ring_lock,
    save_ring,
)
from gateway.site.ring_states import activate, announced, due_for_retirement, retire, revoke
from gateway.trust.announce import announce_key
from gateway.trust.key_sync import KeySync
from gateway.trust.key_updates import issue_tls_certificate
from gateway.trust.outcome import KeyOpError, Outcome
from gateway.trust.publish import publish
from routing.directory import Directory, DirectoryError, KeyState
from routing.key_changes import KeyChange, apply_changes, key_site


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


class KeyOps(KeySync):
    """Key operations on one site folder (the admin CLI and the running gateway)."""

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
