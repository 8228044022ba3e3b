"""HQ's record of which directory each site has fetched, as the gate of a rotation.

``valise keys rotate`` publishes a new key as next; it becomes active once every site
has fetched a directory announcing it, or at its deadline (routing/announce.py). HQ
knows who fetched what (its store's ``directory_fetches``, written when it serves
``/v1/directory`` to a site's own certificate); a mission asks HQ:

``GET /v1/directory/fetched`` (HQ only) answers ``{"serial": S, "fetched_by_all": F}``:
the version HQ serves and the newest version every active site but HQ has fetched.

Rules:
- Only a site whose certificate is pinned in the directory reaches it (the channel's
  mutual TLS and pin check, as for /v1/hop): not a bootstrap certificate, not a
  revoked, replaced or unknown one, not a disabled site.
- Read-only and the same answer for every asker: it takes no parameters and records
  nothing (asking is not fetching). It reveals one number, that *some* site is
  behind, not which.
- A site cannot move the answer for another: its fetches count for itself only, and a
  site that never fetches holds an activation back until the deadline, no longer.
- The asker treats any failure (HQ unreachable, a refusal, a malformed answer) as
  "not known": only the deadline applies then.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from config.site import SiteConfig
from gateway.runtime import logjson
from gateway.runtime.errors import PeerError
from gateway.site.appkeys import CONTEXT
from gateway.site.context import open_store
from gateway.site.keyring import KeyRing, RingKey, ring_lock, save_ring
from gateway.site.ring_states import announce, announced
from gateway.store.base import Store, StoreError
from gateway.trust.outcome import Outcome
from routing.announce import (
    MAX_ANSWER_BYTES,
    AnnounceAnswerError,
    FetchedByAll,
    activation_reason,
    encode_answer,
    fetched_by_all,
    parse_answer,
)
from routing.directory import Directory, DirectoryError, KeyState


class KeyOps(Protocol):
    """What announcing and activating a key need of the key operations
    (gateway/trust/lifecycle.py KeyOps, which calls this module)."""

    config: SiteConfig
    site: str
    keys_dir: Path
    store: Store | None

    def ring(self) -> KeyRing: ...

    def directory(self) -> Directory: ...

    async def sync(self, out: Outcome) -> None: ...

    async def activate(
        self, key_id: str, overlap: timedelta, *, dry_run: bool = False, out: Outcome | None = None
    ) -> Outcome: ...

    def hub_session(self) -> AbstractAsyncContextManager[ClientSession]: ...


log = logging.getLogger("valise.keys")
FETCHED_PATH = "/v1/directory/fetched"
ASK_TIMEOUT_SECONDS = 10.0


class AnnounceError(Exception):
    """The version fetched by all is not known now; one line says why."""


async def hub_fetched_by_all(store: Store, directory: Directory) -> FetchedByAll:
    """HQ: the answer, from its store's record of fetches. Raises StoreError."""
    fetched = {f.site: f.serial for f in await store.directory_fetches()}
    return FetchedByAll(directory.serial, fetched_by_all(directory, fetched))


async def fetched_handler(request: web.Request) -> web.Response:
    """HQ's GET /v1/directory/fetched (the channel's middleware admitted a pinned peer)."""
    ctx = request.app[CONTEXT]
    try:
        answer = await hub_fetched_by_all(ctx.store, ctx.directory)
    except StoreError as exc:
        logjson.event(log, logging.WARNING, "fetched_unknown", reason=str(exc))
        return web.json_response({"error": "the store is unavailable; try again later"}, status=503)
    return web.Response(body=encode_answer(answer), content_type="application/json")


async def ask_hub(
    session: ClientSession, hub_endpoint: str, timeout: float = ASK_TIMEOUT_SECONDS
) -> FetchedByAll:
    """A mission: HQ's answer over the channel session. Raises AnnounceError."""
    url = f"{hub_endpoint.rstrip('/')}{FETCHED_PATH}"
    try:
        async with session.get(url, timeout=ClientTimeout(total=timeout)) as resp:
            body = await resp.content.read(MAX_ANSWER_BYTES + 1)
            if resp.status != 200:
                raise AnnounceError(f"HQ answered {resp.status} to {FETCHED_PATH}")
    except (OSError, TimeoutError, ClientError, PeerError) as exc:
        raise AnnounceError(f"HQ unreachable: {type(exc).__name__}: {exc}") from None
    try:
        return parse_answer(body)
    except AnnounceAnswerError as exc:
        raise AnnounceError(f"HQ answered nonsense to {FETCHED_PATH}: {exc}") from None


async def site_fetched_by_all(ops: KeyOps) -> int:
    """The newest directory version every site that counts has fetched: HQ reads its
    store, a mission asks HQ. Raises AnnounceError."""
    if ops.config.is_hub:
        store = ops.store if ops.store is not None else await open_store(ops.config)
        try:
            return (await hub_fetched_by_all(store, ops.directory())).fetched_by_all
        except (StoreError, DirectoryError) as exc:
            raise AnnounceError(f"HQ's record of fetches is not readable: {exc}") from None
        finally:
            if store is not ops.store:
                await store.close()
    async with ops.hub_session() as session:
        return (await ask_hub(session, ops.config.site.hub_endpoint)).fetched_by_all


async def announce_key(
    ops: KeyOps,
    key_id: str,
    overlap: timedelta,
    wait: timedelta,
    out: Outcome,
    *,
    dry_run: bool = False,
) -> Outcome:
    """The end of ``keys rotate`` for a published next key: record in the ring the
    directory version that announced it and its deadline (now + ``wait``; the first
    announcement stands when run again), then activate it if that is due already
    (every site fetched it, or no site counts), else say when it will be."""
    now = datetime.now(UTC)
    if dry_run:
        held = ops.ring().find(key_id)
        if held is not None and held.announced_in:
            out.add(
                f"{held.kind} key {key_id} is announced in directory {held.announced_in}:"
                f" activates when every site has fetched it, at the latest at {held.activate_by}"
            )
        else:
            out.add(
                "would wait: the key activates when every site has fetched the directory"
                f" announcing it, at the latest at {(now + wait).isoformat()}"
            )
        return out
    with ring_lock(ops.keys_dir):
        ring = ops.ring()
        k = ring.get(key_id)
        if k.key_state is not KeyState.NEXT:
            out.add(f"{k.kind} key {key_id} is {k.state} already")
            return out
        serial = ops.directory().serial
        if announce(ring, key_id, serial=serial, deadline=now + wait, overlap=overlap):
            save_ring(ring)
        k = ring.get(key_id)
    try:
        fetched: int | None = await site_fetched_by_all(ops)
    except AnnounceError as exc:
        fetched = None
        out.add(f"not known who has fetched it yet ({exc}); the deadline applies")
    return await _activate_if_due(ops, k, overlap, out, fetched, now)


async def _activate_if_due(
    ops: KeyOps, k: RingKey, overlap: timedelta, out: Outcome, fetched: int | None, now: datetime
) -> Outcome:
    deadline = k.deadline
    assert deadline is not None  # an announced key has one (keyring._check_announce)
    reason = activation_reason(k.announced_in, deadline, fetched, now)
    if reason is None:
        out.add(
            f"{k.kind} key {k.id} announced as next in directory {k.announced_in}: activates"
            f" when every site has fetched directory {k.announced_in}, at the latest at"
            f" {k.activate_by} (a running site does it; `valise keys activate` at once)"
        )
        return out
    out.add(f"{reason}: activating {k.kind} key {k.id}")
    if k.overlap_seconds is not None:  # what ``keys rotate --overlap`` asked for
        overlap = timedelta(seconds=k.overlap_seconds)
    return await ops.activate(k.id, overlap, out=out)


async def activate_announced(ops: KeyOps, now: datetime, overlap: timedelta) -> Outcome:
    """The running site's step: activate (and publish) every announced next key whose
    time has come, the key it replaces retiring for the overlap ``keys rotate`` asked
    for (``overlap`` if it asked none); publish an announced key's activation that
    did not reach HQ (its sync failed). Asks who has fetched what only when a
    deadline alone does not decide. Raises KeyOpError, KeyStoreError, DirectoryError
    (the caller logs and retries)."""
    out = Outcome()
    ring = ops.ring()
    states = ops.directory().site(ops.site).states()
    if any(
        k.announced_in
        and k.key_state is KeyState.ACTIVE
        and states.get(k.id, ("", None))[1] is KeyState.NEXT
        for k in ring.keys
    ):
        await ops.sync(out)
    waiting = announced(ring)
    if not waiting:
        return out
    fetched: int | None = None
    if any(k.deadline is not None and k.deadline > now for k in waiting):
        try:
            fetched = await site_fetched_by_all(ops)
        except AnnounceError as exc:
            logjson.event(log, logging.INFO, "fetched_unknown", reason=str(exc))
    for k in waiting:
        deadline = k.deadline
        assert deadline is not None
        if activation_reason(k.announced_in, deadline, fetched, now) is not None:
            await _activate_if_due(ops, k, overlap, out, fetched, now)
    return out


__all__ = [
    "FETCHED_PATH",
    "AnnounceError",
    "activate_announced",
    "announce_key",
    "ask_hub",
    "fetched_handler",
    "hub_fetched_by_all",
    "site_fetched_by_all",
]
