"""The tamper-evident audit log: record events, checkpoint the chain, verify it.

The log lives in the store (tables ``audit`` and ``audit_checkpoints``; the encoding and
hash in gateway/store/audit_chain.py, the specification in docs/AUDIT.md).

Rules:
- Message state changes are recorded by the store itself: every history row gets its
  entry in the same transaction (a database trigger), actor = this site's id.
- Everything else is recorded with :func:`record`, one entry in its own transaction:
  key and directory events (actions ``key.*``, ``directory.*``), operator commands
  (``cli.*``, actor ``operator:<unix user>``: gateway/cli/record.py), checkpoints.
- A checkpoint signs (site, seq, hash, at) with the site's signing key; a time-stamp
  token over its SHA-256 is added when a ``stamp`` callable gives one (None: the TSA is
  unavailable, and the checkpoint is kept without). At a mission ``stamp`` sends the
  signed checkpoint to HQ's witness, which time-stamps it (gateway/proof/witness.py).
  :class:`AuditCheckpointer` makes one every ``[audit] checkpoint_every`` entries or
  ``checkpoint_seconds`` seconds, whichever comes first, and only when there is
  something new to cover.
- :func:`verify_store` walks the whole log a page at a time (gateway/proof/audit_verify.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from config.sections import DEFAULT_CHECKPOINT_POLICY
from crypto.keys import SigningKey, VerifyKey
from crypto.recipes import sign
from crypto.tsa_verify import verify_token
from gateway.proof.audit_verify import (
    SEARCH_WINDOW,
    ChainWalker,
    KeyHistory,
    NotWitnessToken,
    Report,
    TokenCheck,
    check_checkpoints,
    classify,
    finish,
)
from gateway.runtime import logjson
from gateway.site.context import SiteContext, archived_directories, read_trust
from gateway.store.audit_chain import (
    CHECKPOINT_ACTION,
    AuditCheckpoint,
    AuditDraft,
    AuditEntry,
    AuditFormatError,
    Witness,
    canonical_detail,
    checkpoint_message,
)
from gateway.store.base import Store, StoreError
from routing.directory import Directory, DirectoryError, parse_directory

log = logging.getLogger("valise.audit")

# (the signed checkpoint, the bytes it signs) -> a time-stamp token over their SHA-256,
# or None when none can be had now.
Stamp = Callable[[AuditCheckpoint, bytes], Awaitable[bytes | None]]
PAGE_ENTRIES = 1000
# How often the checkpointer looks at the head of the log (at most checkpoint_seconds).
CHECK_SECONDS = 5.0


class AuditError(Exception):
    """An audit entry could not be made (a bad field, or the store refused it)."""


async def record(
    store: Store,
    *,
    actor: str,
    action: str,
    subject: str = "",
    result: str = "ok",
    detail: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> None:
    """Append one entry (its own transaction). Raises :class:`AuditError`."""
    if not actor or not action:
        raise AuditError("an audit entry needs an actor and an action")
    at = datetime.now(UTC) if now is None else now
    if at.utcoffset() is None:
        raise AuditError(f"cannot record {action}: now must be timezone-aware")
    try:
        draft = AuditDraft(
            at=at.astimezone(UTC),
            actor=actor,
            action=action,
            subject=subject,
            result=result,
            detail=canonical_detail(detail),
        )
        await store.audit_append(draft)
    except (AuditFormatError, StoreError) as exc:
        raise AuditError(f"cannot record {action}: {exc}") from exc


async def checkpoint_now(
    store: Store,
    *,
    site: str,
    key: SigningKey,
    stamp: Stamp | None = None,
    now: datetime | None = None,
) -> AuditCheckpoint | None:
    """Sign the current head of the log and store it (recorded as ``audit.checkpoint``);
    None when the log is empty or that entry is checkpointed already. Raises StoreError."""
    count, _ = await pending(store)
    head = await store.audit_head()
    if count == 0 or head is None:
        return None
    at = now or datetime.now(UTC)
    message = checkpoint_message(site, head.seq, head.hash, at)
    cp = AuditCheckpoint(head.seq, head.hash, at, key.key_id, sign(key, message))
    token = None
    if stamp is not None:
        try:
            token = await stamp(cp, message)
        except Exception as exc:  # the TSA client's failures must not stop checkpoints
            logjson.event(log, logging.WARNING, "audit_stamp_failed", reason=str(exc))
    cp = AuditCheckpoint(cp.seq, cp.hash, at, cp.signer, cp.signature, token)
    entry = AuditDraft(
        at=at,
        actor=site,
        action=CHECKPOINT_ACTION,
        subject=str(head.seq),
        result="ok",
        detail=canonical_detail(
            {"hash": head.hash.hex(), "signer": key.key_id, "stamped": "yes" if token else "no"}
        ),
    )
    if not await store.audit_checkpoint_add(cp, entry):
        return None
    return cp


async def pending(store: Store) -> tuple[int, AuditCheckpoint | None]:
    """How many entries no checkpoint covers (a checkpoint's own record excluded)."""
    head = await store.audit_head()
    last = await store.audit_last_checkpoint()
    if head is None:
        return 0, last
    covered = 0 if last is None else last.seq
    count = head.seq - covered
    if count == 1 and last is not None and head.action == CHECKPOINT_ACTION:
        count = 0
    return max(count, 0), last


class AuditCheckpointer:
    """The checkpoint loop of a running site (started by gateway/service/workers.py Workers)."""

    def __init__(self, ctx: SiteContext, stamp: Stamp | None = None) -> None:
        self.ctx = ctx
        self.stamp = stamp
        self.every = ctx.config.audit.checkpoint_every
        self.seconds = ctx.config.audit.checkpoint_seconds

    async def tick(self, *, now: datetime, since: datetime) -> AuditCheckpoint | None:
        """Checkpoint if due: ``every`` entries pending, or any after ``seconds``."""
        count, last = await pending(self.ctx.store)
        if count == 0:
            return None
        last_at = since if last is None else max(last.at, since)
        if count < self.every and (now - last_at).total_seconds() < self.seconds:
            return None
        return await checkpoint_now(
            self.ctx.store, site=self.ctx.here, key=self.ctx.keys.signing, stamp=self.stamp, now=now
        )

    async def loop(self) -> None:
        started = datetime.now(UTC)
        while True:
            try:
                await self.ctx.store.audit_identify(self.ctx.here)
                break
            except StoreError as exc:
                logjson.event(log, logging.WARNING, "audit_identify_failed", reason=str(exc))
                await asyncio.sleep(CHECK_SECONDS)
        while True:
            try:
                cp = await self.tick(now=datetime.now(UTC), since=started)
                if cp is not None:
                    logjson.event(log, logging.INFO, "audit_checkpoint", seq=cp.seq)
            except StoreError as exc:
                logjson.event(log, logging.WARNING, "audit_checkpoint_failed", reason=str(exc))
            await asyncio.sleep(min(CHECK_SECONDS, self.seconds))


def held_directories(ctx: SiteContext) -> list[Directory]:
    """The directory in force and every archived version that verifies."""
    directories = {ctx.directory.serial: ctx.directory}
    trust = read_trust(ctx.config.keys_dir)
    for serial, path in archived_directories(ctx.config.directory):
        try:
            directories.setdefault(serial, parse_directory(path.read_bytes(), trust))
        except (DirectoryError, OSError):
            continue
    return [directories[s] for s in sorted(directories)]


def site_verify_keys(ctx: SiteContext) -> dict[str, VerifyKey]:
    """This site's signing keys: the current one and every one an archived (or the
    current) directory lists for it, whatever its state then or now (whether a key
    counts at a checkpoint's time is :func:`site_key_history`'s question)."""
    keys = {ctx.keys.signing.key_id: ctx.keys.signing.public}
    for d in held_directories(ctx):
        for entry in d.sites:
            if entry.site == ctx.here:
                keys.update({k.key_id: k for k, _ in entry.signing})
    return keys


def site_key_history(ctx: SiteContext) -> KeyHistory:
    """The states this site's signing keys had in every directory version held."""
    return KeyHistory(ctx.here, tuple(held_directories(ctx)))


def token_checker(ca_path: Path, policy: str = DEFAULT_CHECKPOINT_POLICY) -> TokenCheck | None:
    """Check checkpoint tokens under the site CA (HQ's TSA certificate chains to it), if
    present; the check gives the token's genTime. A token under another policy than
    ``policy`` (``[tsa] checkpoint_policy``: the witness's) raises NotWitnessToken."""
    try:
        ca_pem = ca_path.read_bytes()
    except OSError:
        return None

    def check(token: bytes, digest: bytes) -> datetime:
        info = verify_token(token, digest, ca_pem)
        if info.policy != policy:
            raise NotWitnessToken(
                f"its token (policy {info.policy}) was not issued by HQ's witness (policy {policy})"
            )
        return info.gen_time

    return check


async def untimed_tail(store: Store) -> tuple[int, int]:
    """(how many, first seq) of the checkpoints after the last time-stamped one: the
    part of the log no token anchors (an earlier untimed checkpoint is covered by the
    later token, which pins the whole chain up to its seq)."""
    count, first, after = 0, 0, 0
    while batch := await store.audit_checkpoints(after=after, limit=PAGE_ENTRIES):
        for cp in batch:
            if cp.token is None:
                count, first = count + 1, first or cp.seq
            else:
                count, first = 0, 0
        after = batch[-1].seq
    return count, first


async def verify_store(
    store: Store,
    *,
    site: str,
    keys: Mapping[str, VerifyKey],
    token_check: TokenCheck | None = None,
    history: KeyHistory | None = None,
    witnessed: Witness | None = None,
    page: int = PAGE_ENTRIES,
) -> Report:
    """Walk the store's whole log and its checkpoints (see gateway/proof/audit_verify.py),
    comparing the chain with HQ's statement ``witnessed`` when there is one."""
    report = Report(witness=witnessed)
    checkpoints: list[AuditCheckpoint] = []
    while batch := await store.audit_checkpoints(
        after=checkpoints[-1].seq if checkpoints else 0, limit=page
    ):
        checkpoints += batch
    good = check_checkpoints(
        checkpoints,
        site=site,
        keys=keys,
        token_check=token_check,
        report=report,
        history=history,
    )
    walker = ChainWalker(good, report, witnessed)
    after = 0
    while not walker.stopped and (entries := await store.audit_entries(after=after, limit=page)):
        walker.feed(entries)
        after = entries[-1].seq
    if walker.suspect is not None:
        s = walker.suspect.seq
        near: list[AuditEntry] = await store.audit_entries(
            after=max(0, s - SEARCH_WINDOW - 1), limit=2 * SEARCH_WINDOW + 1
        )
        report.findings.append(classify(walker.suspect, near))
    finish(walker, good)
    return report
