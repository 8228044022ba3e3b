"""A running site keeping up with its keys: the loop of gateway/trust/lifecycle.py.

Every ``[keys] check_seconds``, at once after a directory change, and within a second
of a change to the key ring or the directory file on disk (``valise keys …`` run by an
operator in another process):
- HQ serves a directory version another process (the admin CLI) published on disk;
- the site adopts HQ's revocations of its own keys (replacing an active one);
- retiring keys whose overlap is over are retired (and published);
- the TLS certificate is renewed ``[keys] tls_renew_days`` before it ends (the new
  key announced like any rotation);
- a key ``valise keys rotate`` announced as next is made active (and published) once
  every site has fetched a directory announcing it, or at its deadline
  (gateway/trust/announce.py);
- when the key ring changed (this loop, or ``valise keys …`` in another process),
  the keys are loaded again and both TLS contexts present the active certificate
  from the next handshake on: no restart. The client session's idle pooled
  connections are closed (in-flight ones when done), so the next request to each
  peer presents the new certificate, not the old one until the overlap ends;
- deliveries of envelopes sealed to an encryption key the directory now shows
  revoked are put on hold; the origin seals its own again to the replacement once
  the directory lists it (gateway/relay/reseal_sweeps.py reseal_revoked; its receipts relayed
  through the hub too: gateway/relay/receipt_reseal.py), and the relay takes the
  re-sealed copy in place of the held one;
- mail sent here while a destination had no active encryption key (held, waiting
  for it) is sealed to the key once the directory lists one (gateway/relay/key_wait.py).
A failure is logged and tried again on the next round; it never stops the site.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from datetime import UTC, datetime, timedelta

from aiohttp import ClientSession

from envelope.model import RecipientStanza
from gateway.proof.audit import AuditError, record
from gateway.relay.circular import hops_to_hold
from gateway.relay.key_wait import seal_waiting
from gateway.relay.receipt_reseal import ReceiptSweep
from gateway.relay.reseal import HOLD_REASON, NOTHING_LEFT, stored_head
from gateway.relay.reseal_sweeps import release_fresh, reseal_revoked, resign_refused
from gateway.runtime import logjson
from gateway.site.connector import PinnedConnector
from gateway.site.context import SiteContext, load_keys
from gateway.site.keyring import prunable
from gateway.site.keystore import KeyStoreError
from gateway.site.tls import TLSConfigError, reload_chain
from gateway.store.base import StoreError
from gateway.trust.announce import activate_announced
from gateway.trust.key_report import audit_key_event
from gateway.trust.lifecycle import KeyOps
from gateway.trust.outcome import KeyOpError, Outcome
from gateway.trust.unopened import sealed_to
from routing.directory import Directory, DirectoryError, KeyState, parse_directory

log = logging.getLogger("valise.keys")
# How often the ring and the directory files are looked at between rounds (two stat calls).
FILES_POLL_SECONDS = 1.0


class KeyWatcher:
    def __init__(
        self,
        ctx: SiteContext,
        session: ClientSession | None,
        contexts: list[ssl.SSLContext],
    ) -> None:
        self.ctx = ctx
        self.ops = KeyOps(ctx.config, session, ctx.store)
        self.ops.prune_on_publish = False  # after our keys are loaded again: _prune
        self.session = session  # its pooled connections follow a new client certificate
        self.contexts = contexts  # the server's and the client's: reloaded on rotation
        self.kick = asyncio.Event()
        self._ring_seen = self._ring_stamp()
        # (site, revoked encryption key id) already swept
        self._held_for: set[tuple[str, str]] = set()
        self.installed: list[int] = []  # directory serials adopted, for the audit log
        self._resign_seen: tuple[int, str] | None = None  # (serial, signing key) swept
        self._receipts = ReceiptSweep()  # receipts relayed to a site whose key is revoked
        self._reseal_again = False  # a re-seal found its delivery being sent: try again
        self._prune_waiting = False  # a prune waits for envelopes to be opened first
        self._kept_said: set[str] = set()  # the keys key_files_kept was logged for

    def _ring_stamp(self) -> tuple[int, int] | None:
        try:
            st = (self.ctx.config.keys_dir / "ring.json").stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def _files_stamp(self) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """The key ring's and the directory's (mtime, size): what ``valise keys …`` and
        ``valise site …`` in another process change."""
        try:
            st = (self.ctx.config.directory / "directory.xml").stat()
            directory = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            directory = None
        return self._ring_stamp(), directory

    async def loop(self) -> None:
        while True:
            seen = self._files_stamp()
            try:
                await self.round(datetime.now(UTC))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # logged; the next round tries again
                logjson.event(log, logging.WARNING, "keys_round_failed", reason=f"{exc}")
            await self._until_next_round(seen)
            self.kick.clear()

    async def _until_next_round(self, seen: object) -> None:
        """Wait ``check_seconds``, a kick, or a change to the ring or the directory on
        disk (an operator's ``valise keys revoke`` in another process: taken up within
        FILES_POLL_SECONDS, not at the next check; review 13, adv13 finding 4)."""
        deadline = time.monotonic() + self.ctx.config.keys.check_seconds
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.kick.wait(), min(left, FILES_POLL_SECONDS))
                return
            if self._files_stamp() != seen:
                return
            if self._prune_waiting:  # local delivery may have opened them meanwhile
                try:
                    await self._prune()
                except Exception as exc:  # as a failed round: logged, the loop goes on
                    logjson.event(log, logging.WARNING, "keys_round_failed", reason=f"{exc}")

    async def round(self, now: datetime) -> None:
        ctx = self.ctx
        self._adopt_disk_directory()
        overlap = timedelta(seconds=ctx.config.keys.overlap_seconds)
        for action, step in (
            ("key.reconcile", self.ops.reconcile(ctx.directory)),
            ("key.retire", self.ops.retire_due(now)),
            ("key.renew-tls", self.ops.renew_tls_if_due(now, overlap)),
            ("key.activate", activate_announced(self.ops, now, overlap)),
        ):
            try:
                out, result = await step, "ok"
            except (KeyOpError, KeyStoreError, DirectoryError) as exc:
                logjson.event(log, logging.WARNING, "keys_step_failed", reason=str(exc))
                out, result = Outcome([str(exc)]), "error"
            if out.steps:
                self._log(out)
                await self._audit(action, out, result)
        self._adopt_disk_directory()  # what the steps published
        for serial in self.installed:
            await audit_directory(ctx, serial)
        self.installed.clear()
        self._reload_if_changed()
        await self._prune()
        await self._hold_revoked()
        await self._release_fresh()
        await self._resign_revoked(now)
        await seal_waiting(ctx, now=now)  # mail queued for a site that had no key

    async def _prune(self) -> None:
        """Delete the private files of our retired and revoked keys the directory shows
        so, once the keys in use here are the ring's (an escrow sealed meanwhile to the
        old encryption key is wrapped again first: gateway/trust/escrow_rewrap.py)."""
        self._prune_waiting = False
        if self._ring_stamp() != self._ring_seen:
            return  # not loaded yet: the next round
        out = Outcome([])
        try:
            going = {k.id for k in prunable(self.ops.ring(), self.ctx.directory)}
            if await sealed_to(self.ctx.store, self.ctx.here, going):
                # Received here sealed to a key going: opened first (local delivery opens
                # it with the kept file: opening.py); looked at again every files poll.
                # Said once per set of keys (valise doctor shows it too: keys kept).
                if going != self._kept_said:
                    self._kept_said = going
                    logjson.event(
                        log,
                        logging.WARNING,
                        "key_files_kept",
                        keys=sorted(going),
                        reason="envelopes received sealed to them are not opened yet",
                    )
                self._prune_waiting = True
                return
            await self.ops.prune(self.ctx.directory, out)
        except (KeyStoreError, DirectoryError, OSError) as exc:
            logjson.event(log, logging.WARNING, "keys_step_failed", reason=str(exc))
        if out.steps:
            self._log(out)

    async def _audit(self, action: str, out: Outcome, result: str) -> None:
        ctx = self.ctx
        try:
            await audit_key_event(
                ctx.config, action, "", out, result, actor=ctx.here, store=ctx.store
            )
        except (AuditError, StoreError) as exc:
            logjson.event(log, logging.WARNING, "audit_failed", reason=str(exc))

    def _log(self, out: Outcome) -> None:
        for step in out.steps:
            logjson.event(log, logging.INFO, "keys", site=self.ctx.here, step=step)

    def _adopt_disk_directory(self) -> None:
        """Serve (HQ) or use (a mission, after ``valise keys …`` got one from HQ) a newer
        directory written to disk by another process."""
        path = self.ctx.config.directory / "directory.xml"
        try:
            data = path.read_bytes()
            if parse_directory(data, self.ctx.trust).serial > self.ctx.directory.serial:
                self.ctx.install_directory(data)
                logjson.event(log, logging.INFO, "directory", serial=self.ctx.directory.serial)
                self.installed.append(self.ctx.directory.serial)
        except (OSError, DirectoryError) as exc:
            logjson.event(log, logging.WARNING, "directory_kept", reason=str(exc))

    def _reload_if_changed(self) -> None:
        stamp = self._ring_stamp()
        if stamp == self._ring_seen:
            return
        try:
            keys, tls = load_keys(self.ctx.config)
            for context in self.contexts:
                reload_chain(context, tls.cert_pem, tls.key_pem)
        except (KeyStoreError, TLSConfigError, OSError) as exc:
            logjson.event(log, logging.ERROR, "keys_reload_failed", reason=str(exc))
            return
        tls_changed = tls.cert_pem != self.ctx.tls.cert_pem
        self.ctx.adopt_keys(keys, tls)
        self._ring_seen = stamp
        connector = self.session.connector if self.session is not None else None
        dropped = 0
        if tls_changed and isinstance(connector, PinnedConnector):
            dropped = connector.renew_tls()
        logjson.event(
            log,
            logging.INFO,
            "keys_loaded",
            signing=keys.signing.key_id,
            encryption=keys.decryption.key_id,
            tls_changed=tls_changed,
            idle_connections_closed=dropped,
        )

    async def _hold_revoked(self) -> None:
        revoked = revoked_encryption_keys(self.ctx.directory) - self._held_for
        if not revoked:
            return
        held = await hold_sealed_to(self.ctx, revoked, datetime.now(UTC))
        if not await in_flight_to(self.ctx, revoked):  # else look again when the try ends
            self._held_for |= revoked
        for message_id in held:
            logjson.event(log, logging.WARNING, "held", id=message_id, reason=HOLD_REASON)

    async def _release_fresh(self) -> None:
        for message_id in await release_fresh(self.ctx, datetime.now(UTC)):
            logjson.event(log, logging.INFO, "released", id=message_id, reason="re-sealed")

    async def _resign_revoked(self, now: datetime) -> None:
        """Sign again what a peer refused for our revoked signing key (every round), and
        everything still to send signed with it (when the directory or our key changed)."""
        seen = (self.ctx.directory.serial, self.ctx.keys.signing.key_id)
        every, self._resign_seen = seen != self._resign_seen, seen
        for done in await resign_refused(self.ctx, now=now, every=every):
            logjson.event(
                log,
                logging.INFO if done.done else logging.WARNING,
                "resigned" if done.done else "resign_skipped",
                id=done.message_id,
                detail=done.detail,
            )
        # A replacement for a revoked encryption key may be published now.
        again = every or self._reseal_again
        resealed = await reseal_revoked(self.ctx, now=now) if again else []
        self._reseal_again = any(r.detail == NOTHING_LEFT for r in resealed)
        for one in resealed + await self._receipts.run(self.ctx, now):
            logjson.event(
                log,
                logging.INFO if one.done else logging.WARNING,
                "resealed" if one.done else "reseal_skipped",
                id=one.message_id,
                detail=one.detail,
            )


def revoked_encryption_keys(directory: Directory) -> set[tuple[str, str]]:
    """(site, key id) of every encryption key the directory shows revoked, for the site
    that lists it, and of every retired id (a key retired or revoked, no longer listed:
    its private key is gone): a stanza is held only for its own site's key."""
    return {
        (entry.site, k.key_id)
        for entry in directory.sites
        for k, state in entry.encryption
        if state is KeyState.REVOKED
    } | {(entry.site, key_id) for entry in directory.sites for key_id in entry.retired_ids}


async def hold_sealed_to(
    ctx: SiteContext, revoked: set[tuple[str, str]], now: datetime
) -> list[str]:
    """Put on hold the waiting deliveries of an envelope with a recipient stanza whose
    (site, key id) is in ``revoked``: the pair, never the key id alone (another site
    listing the same id must not stop this site's mail). Per destination: a next hop
    is held only if every open destination routed through it is sealed to such a key
    (at the hub, where hop and destination coincide, just that destination; a
    mission's hub hop only if all of them are: otherwise the hub holds the stale one).
    A message without destination rows (stored before schema v11, a receipt) is held
    whole, as before. Returns the message ids held."""
    held: list[str] = []
    seen: set[str] = set()
    for state in ("queued", "deferred"):
        try:
            entries = await ctx.store.queue(state=state)
        except StoreError:
            continue
        for entry in entries:
            if entry.message_id in seen:
                continue
            seen.add(entry.message_id)
            parsed = await stored_head(ctx, entry.message_id)
            if parsed is None:
                continue
            hits = [s for s in parsed.head.recipients if (s.site, s.key_id) in revoked]
            if not hits:
                continue
            if await _hold_stale(ctx, entry.message_id, hits, now):
                held.append(entry.message_id)
    return held


async def _hold_stale(
    ctx: SiteContext, message_id: str, hits: list[RecipientStanza], now: datetime
) -> bool:
    dests = await ctx.store.destinations(message_id)
    if not dests:
        hit = hits[0]
        reason = f"{HOLD_REASON} {hit.key_id} of {hit.site}"
        return bool(await ctx.store.hold(message_id, now=now, reason=reason))
    via = {d.site: d.hop for d in dests}
    done = 0
    for hop in sorted(hops_to_hold(dests, {s.site for s in hits})):
        hit = next((s for s in hits if via.get(s.site) == hop), hits[0])
        reason = f"{HOLD_REASON} {hit.key_id} of {hit.site}"
        done += await ctx.store.hold(message_id, now=now, reason=reason, peers=[hop])
    return done > 0


async def in_flight_to(ctx: SiteContext, revoked: set[tuple[str, str]]) -> bool:
    """Whether a delivery being tried now (``sending``) is of an envelope with a stanza
    in ``revoked``: its try may fail and leave it deferred, to be held then. (Not held
    now: a try that succeeds would leave the delivery held, the message delivered.)"""
    try:
        entries = await ctx.store.queue(state="sending")
    except StoreError:
        return True
    for entry in entries:
        if await _stanza_in(ctx, entry.message_id, revoked) is not None:
            return True
    return False


async def _stanza_in(
    ctx: SiteContext, message_id: str, revoked: set[tuple[str, str]]
) -> tuple[str, str] | None:
    parsed = await stored_head(ctx, message_id)
    if parsed is None:
        return None
    return next(
        ((s.site, s.key_id) for s in parsed.head.recipients if (s.site, s.key_id) in revoked),
        None,
    )


async def audit_directory(ctx: SiteContext, serial: int) -> None:
    """Record that this site now uses directory ``serial``."""
    try:
        await record(ctx.store, actor=ctx.here, action="directory.install", subject=str(serial))
    except AuditError as exc:
        logjson.event(log, logging.WARNING, "audit_failed", reason=str(exc))
