"""HQ as the witness of every site's audit log: checkpoints anchored outside the site.

A site's own store cannot prove its log whole: whoever can write the database can cut
the newest entries together with the checkpoints that cover them. So each mission
sends every checkpoint it signs to HQ (``POST /v1/witness``, which is also its
time-stamp request: HQ answers with the token), and HQ keeps the latest one of each
site in its own store and its own audit log.

Rules:
- HQ takes a checkpoint only from the site itself (the TLS peer, pinned), signed by a
  signing key of that site usable in the directory in force (else 403, nothing kept).
- HQ never goes back (:func:`judge`): a lower seq than it witnessed is a ``rollback``,
  the same seq with another hash a ``fork``; both are refused for good (409), logged,
  recorded on the site's witness row and in HQ's audit log. A higher seq must show
  that it extends what HQ witnessed: the site names the hash its chain has at HQ's
  witnessed seq (``base``), having walked its chain from there to the new head; another
  hash is a fork, no base (or one at another seq) gets 409 ``witness_base`` with HQ's
  statement, and the site asks again once with the base HQ named. The same seq and
  hash again is taken (a new token, no new entry).
- HQ answers with its signed statement (:func:`~gateway.store.audit_chain.witness_message`)
  of what it witnessed: the site keeps the latest one (in its own store, row
  ``audit_witness`` of its own id) after checking HQ's signature, and ``valise audit
  verify`` compares its chain with the statement it fetches from HQ
  (``GET /v1/witness``), or with the one it holds when HQ cannot be reached.
- HQ's token over a checkpoint it witnessed carries ``[tsa] checkpoint_policy``, a
  policy ``/v1/timestamp`` never stamps under (that service stamps any digest for any
  pinned site): only such a token times a checkpoint in ``audit verify``, so a thief
  with a site's key cannot get one over a checkpoint HQ did not witness.
- HQ's own log is not witnessed by anyone (out of reach: docs/AUDIT.md).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from crypto.errors import CryptoError
from crypto.recipes import sign, verify
from crypto.tsa_verify import verify_token
from gateway.proof.audit_verify import ChainWalker, Report
from gateway.proof.witness_format import (
    Handler,
    WitnessError,
    _b64,
    _unb64,
    check_statement,
    checkpoint_request,
    parse_checkpoint_request,
    parse_statement,
    statement_json,
)
from gateway.runtime import logjson
from gateway.site.appkeys import PEER
from gateway.site.connector import PinnedConnector
from gateway.site.context import SiteContext
from gateway.site.tls import client_context
from gateway.store.audit_chain import (
    FORK,
    ROLLBACK,
    WITNESS_ACTION,
    ZERO_HASH,
    AuditCheckpoint,
    AuditDraft,
    AuditFormatError,
    Witness,
    canonical_detail,
    canonical_time,
    checkpoint_message,
    witness_message,
)
from gateway.store.base import Store, StoreError
from routing.directory import DirectoryError

log = logging.getLogger("valise.audit")

MEDIA_TYPE = "application/json"
MAX_REQUEST_BYTES = 8 * 1024  # a checkpoint and its base are a few hundred bytes
FETCH_TIMEOUT_SECONDS = 10.0
PAGE_ENTRIES = 1000
# What the site does after a refusal: ask again with a base (WITNESS_BASE) or not at all.
WITNESS_BASE = "witness_base"
WITNESSED, SAME = "witnessed", "same"


@dataclass(frozen=True)
class Judgement:
    """What HQ does with a checkpoint: WITNESSED, SAME, WITNESS_BASE, ROLLBACK or FORK."""

    verdict: str
    reason: str


def judge(
    held: Witness | None, seq: int, hash_: bytes, base: tuple[int, bytes] | None
) -> Judgement:
    """HQ's decision on a site's checkpoint (seq, hash) against what it witnessed."""
    if held is None:
        return Judgement(WITNESSED, "the first checkpoint witnessed of this site")
    w = held.seq
    if seq < w:
        return Judgement(ROLLBACK, f"checkpoint at seq {seq} is behind the witnessed seq {w}")
    if seq == w:
        if hash_ == held.hash:
            return Judgement(SAME, f"seq {w} witnessed already with this hash")
        return Judgement(FORK, f"seq {w} was witnessed with another hash: the chain forked")
    if base is None or base[0] != w:
        return Judgement(WITNESS_BASE, f"name the hash the chain has at the witnessed seq {w}")
    if base[1] != held.hash:
        return Judgement(
            FORK, f"the chain's hash at the witnessed seq {w} is not the witnessed one: it forked"
        )
    return Judgement(WITNESSED, f"extends the witnessed seq {w}")


def _answer(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"code": code, "message": message, **extra}, status=status)


# SHA-256 of the bytes to stamp -> HQ's DER TimeStampToken over it, or None (logged).
Issue = Callable[[bytes], bytes | None]


def witness_handlers(ctx: SiteContext, issue: Issue) -> tuple[Handler, Handler]:
    """(POST, GET) handlers of /v1/witness at HQ (module rules); ``issue`` is HQ's TSA
    (gateway/proof/timestamping.py wires it)."""

    async def post(request: web.Request) -> web.Response:
        site: str = request[PEER]
        if request.content_type != MEDIA_TYPE:
            return _answer(415, "media_type", f"expected {MEDIA_TYPE}")
        if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
            return _answer(413, "too_large", f"a checkpoint is at most {MAX_REQUEST_BYTES} bytes")
        body = await request.content.read(MAX_REQUEST_BYTES + 1)
        if len(body) > MAX_REQUEST_BYTES:
            return _answer(413, "too_large", f"a checkpoint is at most {MAX_REQUEST_BYTES} bytes")
        try:
            cp, base = parse_checkpoint_request(body)
        except WitnessError as exc:
            return _answer(400, "bad_checkpoint", str(exc))
        refusal = _signature_refusal(ctx, site, cp)
        if refusal is not None:
            logjson.event(log, logging.WARNING, "audit_witness_refused", site=site, reason=refusal)
            return _answer(403, "bad_signature", refusal)
        return await witness_checkpoint(ctx, site, cp, base, issue)

    async def get(request: web.Request) -> web.Response:
        site: str = request[PEER]
        held = await ctx.store.audit_witness(site)
        if held is None:
            return _answer(404, "not_witnessed", f"no checkpoint of {site} witnessed yet")
        return web.json_response({"witness": statement_json(held)})

    return post, get


def _signature_refusal(ctx: SiteContext, site: str, cp: AuditCheckpoint) -> str | None:
    try:
        entry = ctx.directory.site(site)
    except DirectoryError as exc:
        return str(exc)
    key = entry.verify_keys().get(cp.signer)
    if key is None:
        return entry.refusal(cp.signer)
    try:
        verify(key, cp.signature, checkpoint_message(site, cp.seq, cp.hash, cp.at))
    except (CryptoError, AuditFormatError):
        return f"the checkpoint signature of {site} does not verify under key {cp.signer}"
    return None


async def witness_checkpoint(
    ctx: SiteContext,
    site: str,
    cp: AuditCheckpoint,
    base: tuple[int, bytes] | None,
    issue: Issue,
) -> web.Response:
    """Judge a checkpoint whose signature verified, keep and answer (module rules)."""
    held = await ctx.store.audit_witness(site)
    j = judge(held, cp.seq, cp.hash, base)
    now = datetime.now(UTC)
    detail = {"seq": str(cp.seq), "hash": cp.hash.hex(), "signer": cp.signer}
    if j.verdict in (ROLLBACK, FORK):
        assert held is not None  # judge() says so
        marked = replace(
            held, conflict=j.verdict, conflict_seq=cp.seq, conflict_hash=cp.hash, conflict_at=now
        )
        entry = _entry(ctx, site, f"refused: {j.verdict}", now, {**detail, "reason": j.reason})
        await ctx.store.audit_witness_save(marked, expect_seq=held.seq, entry=entry)
        logjson.event(
            log, logging.ERROR, "audit_witness_conflict", site=site, kind=j.verdict, reason=j.reason
        )
        return _answer(409, j.verdict, j.reason, witness=statement_json(held))
    if j.verdict == WITNESS_BASE:
        assert held is not None
        return _answer(409, WITNESS_BASE, j.reason, witness=statement_json(held))
    issued = issue(hashlib.sha256(checkpoint_message(site, cp.seq, cp.hash, cp.at)).digest())
    token = None if issued is None else _b64(issued)
    if j.verdict == SAME:
        assert held is not None
        return web.json_response({"token": token, "witness": statement_json(held)})
    message = witness_message(ctx.here, site, cp.seq, cp.hash, cp.at, now)
    signing = ctx.keys.signing
    w = Witness(
        site, cp.seq, cp.hash, cp.at, cp.signer, cp.signature, ctx.here, now,
        signing.key_id, sign(signing, message),
    )  # fmt: skip
    if held is not None:  # a conflict seen before stays on record for the operator
        w = replace(
            w,
            conflict=held.conflict,
            conflict_seq=held.conflict_seq,
            conflict_hash=held.conflict_hash,
            conflict_at=held.conflict_at,
        )
    entry = _entry(ctx, site, "ok", now, detail)
    if not await ctx.store.audit_witness_save(
        w, expect_seq=None if held is None else held.seq, entry=entry
    ):
        return _answer(409, "busy", "another checkpoint of this site was witnessed meanwhile")
    logjson.event(log, logging.INFO, "audit_witnessed", site=site, seq=cp.seq)
    return web.json_response({"token": token, "witness": statement_json(w)})


def _entry(
    ctx: SiteContext, site: str, result: str, now: datetime, d: dict[str, str]
) -> AuditDraft:
    return AuditDraft(now, ctx.here, WITNESS_ACTION, site, result, canonical_detail(d))


# -- a mission: send a checkpoint, keep HQ's statement ---------------------------------


async def chain_base(store: Store, seq: int, upto: int) -> bytes:
    """The hash this chain has at ``seq``, if the entries from there to ``upto`` hold
    together (each hashes to its stored hash and links to the one before); else 32
    zero bytes: a chain that does not hold together extends nothing."""
    report = Report()
    start = await store.audit_entries(after=seq - 1, limit=1)
    if not start or start[0].seq != seq:
        return ZERO_HASH
    walker = ChainWalker({}, report)
    walker.expected, walker.prev = seq, start[0].prev
    after = seq - 1
    while not walker.stopped and after < upto:
        entries = await store.audit_entries(after=after, limit=min(PAGE_ENTRIES, upto - after))
        if not entries:
            break
        walker.feed(entries)
        after = entries[-1].seq
    if walker.stopped or report.findings or after < upto:
        return ZERO_HASH
    return start[0].hash


async def keep_statement(ctx: SiteContext, w: Witness) -> bool:
    """Keep HQ's statement about this site's chain if it is newer than the one held.
    Raises :class:`WitnessError` when it is not HQ's, or not about this site."""
    if w.site != ctx.here or w.witness != ctx.config.site.hub:
        raise WitnessError(f"a statement about {w.site} by {w.witness}, not about us by HQ")
    check_statement(w, [ctx.directory])
    held = await ctx.store.audit_witness(ctx.here)
    if held is not None and (w.seq, w.witnessed_at) <= (held.seq, held.witnessed_at):
        return False
    return await ctx.store.audit_witness_save(w, expect_seq=None if held is None else held.seq)


async def send_checkpoint(
    ctx: SiteContext, session: ClientSession, cp: AuditCheckpoint, message: bytes
) -> bytes | None:
    """Send ``cp`` to HQ's witness; HQ's time-stamp token over ``message``, or None
    (HQ refused it, or cannot be reached: logged). Keeps HQ's statement."""
    held = await ctx.store.audit_witness(ctx.here)
    base = None
    if held is not None and held.seq < cp.seq:
        base = (held.seq, await chain_base(ctx.store, held.seq, cp.seq))
    for _ in range(2):
        status, answer = await _post(ctx, session, checkpoint_request(cp, base))
        statement = answer.get("witness")
        if statement is not None:
            try:
                await keep_statement(ctx, parse_statement(statement))
            except (WitnessError, StoreError) as exc:
                logjson.event(log, logging.WARNING, "audit_witness_statement", reason=str(exc))
        code = answer.get("code")
        if status == 409 and code == WITNESS_BASE and statement is not None:
            w = parse_statement(statement)
            base = (w.seq, await chain_base(ctx.store, w.seq, cp.seq))
            continue
        if status != 200:
            level = logging.ERROR if code in (ROLLBACK, FORK) else logging.WARNING
            logjson.event(
                log, level, "audit_witness_refused", status=status, code=code,
                reason=str(answer.get("message", ""))[:200],
            )  # fmt: skip
            return None
        token = _unb64(answer["token"], "token") if answer.get("token") else None
        if token is not None:
            digest, policy = hashlib.sha256(message).digest(), ctx.config.tsa.checkpoint_policy
            verify_token(token, digest, ctx.tls.ca_pem, policy=policy)
        return token
    return None


async def _post(
    ctx: SiteContext, session: ClientSession, body: bytes
) -> tuple[int, dict[str, Any]]:
    cfg = ctx.config
    try:
        async with session.post(
            f"{cfg.site.hub_endpoint.rstrip('/')}/v1/witness",
            data=body,
            headers={"Content-Type": MEDIA_TYPE},
            timeout=ClientTimeout(total=cfg.relay.request_timeout_seconds),
        ) as resp:
            status, text = resp.status, await resp.text()
    except (OSError, TimeoutError, ClientError) as exc:
        raise WitnessError(f"{cfg.site.hub} unreachable: {type(exc).__name__}: {exc}") from None
    try:
        answer = json.loads(text)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise WitnessError(f"{cfg.site.hub} answered {status} without a JSON object")
    return status, answer


async def fetch_statement(ctx: SiteContext, session: ClientSession) -> Witness | None:
    """HQ's latest statement about this site (checked, and kept if newer), None when
    HQ witnessed nothing of it yet. Raises :class:`WitnessError`."""
    cfg = ctx.config
    try:
        async with session.get(
            f"{cfg.site.hub_endpoint.rstrip('/')}/v1/witness",
            timeout=ClientTimeout(total=FETCH_TIMEOUT_SECONDS),
        ) as resp:
            status, text = resp.status, await resp.text()
    except (OSError, TimeoutError, ClientError) as exc:
        raise WitnessError(f"{cfg.site.hub} unreachable: {type(exc).__name__}: {exc}") from None
    if status == 404:
        return None
    if status != 200:
        raise WitnessError(f"{cfg.site.hub} answered {status}: {text[:200]}")
    try:
        w = parse_statement(json.loads(text).get("witness"))
    except (ValueError, AttributeError):
        raise WitnessError(f"{cfg.site.hub} answered a malformed statement") from None
    await keep_statement(ctx, w)
    return w


def hub_session(ctx: SiteContext) -> ClientSession:
    """A client session to HQ over the channel (pinned, as gateway/service/workers.py's)."""
    hub, hub_endpoint = ctx.config.site.hub, ctx.config.site.hub_endpoint.rstrip("/")

    def expect(origin: str) -> tuple[str, tuple[str, ...]] | None:
        for entry in ctx.directory.sites:
            if entry.endpoint.rstrip("/") == origin:
                return entry.site, entry.tls_pins
        return (hub, ()) if origin == hub_endpoint else None

    tls = client_context(ctx.tls.cert_pem, ctx.tls.key_pem, ctx.tls.ca_pem)
    return ClientSession(connector=PinnedConnector(expect=expect, ssl=tls))


async def latest_statement(ctx: SiteContext) -> tuple[Witness | None, str]:
    """The statement ``audit verify`` compares this site's chain with, and a note on
    where it came from: HQ's (fetched now), else the one held here."""
    if ctx.config.is_hub:
        return None, "HQ's own log is witnessed by no other site"
    held = await ctx.store.audit_witness(ctx.here)
    hub = ctx.config.site.hub
    try:
        async with hub_session(ctx) as session:
            fetched = await fetch_statement(ctx, session)
    except (WitnessError, StoreError, OSError, ClientError) as exc:
        if held is None:
            return None, f"{hub} not reachable ({exc}) and no statement of {hub} held here"
        return held, (
            f"{hub} not reachable ({exc}): compared with {hub}'s statement held here "
            f"(seq {held.seq}, {canonical_time(held.witnessed_at)})"
        )
    if fetched is None and held is None:
        return None, f"{hub} has witnessed no checkpoint of this site yet"
    best = max((w for w in (fetched, held) if w is not None), key=lambda w: w.seq)
    return best, f"compared with {hub}'s statement (seq {best.seq}) fetched now"
