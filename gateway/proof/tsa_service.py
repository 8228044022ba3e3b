"""HQ's time-stamping authority as a service: its key files, the authority loaded from
them, and the /v1/timestamp and /v1/witness handlers (the missions' stamper is
gateway/proof/timestamping.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from config.site import SiteConfig
from crypto.random import SYSTEM_RANDOM
from crypto.tsa_errors import TimestampError
from crypto.x509 import TSA_DAYS, CertificateError, SiteCA, issue_tsa_certificate
from gateway.proof.timestamp_batch import (
    REQUEST_MEDIA_TYPE,
    RESPONSE_MEDIA_TYPE,
    BatchError,
    BatchTooLarge,
    frame,
    max_body_bytes,
    unframe,
)
from gateway.proof.witness import witness_handlers
from gateway.proof.witness_format import Handler as WitnessHandler
from gateway.runtime import logjson
from gateway.site.appkeys import PEER
from gateway.site.context import SiteContext, load_site_ca, write_private_key
from gateway.site.files import write_private
from gateway.site.keystore import KeyStoreError, _read_private

if TYPE_CHECKING:
    from crypto.tsa import TimeStampAuthority

log = logging.getLogger("valise.timestamping")
TSA_CERT, TSA_KEY = "tsa.crt", "tsa.key"
TSA_FRACTION_DIGITS = 3  # genTime to the millisecond
SERIAL_BYTES = 16  # random token serial numbers: 128 bits, unique in practice


class TimestampingError(Exception):
    """HQ's time-stamp authority cannot be set up (one line says why)."""


def write_tsa_files(
    keys_dir: Path, ca: SiteCA, *, site: str, now: datetime, passphrase: bytes | None
) -> None:
    """Issue HQ's TSA certificate under ``ca`` and write keys/tsa.key (0600), then
    keys/tsa.crt. It lasts TSA_DAYS, or less when the CA ends sooner. Raises
    :class:`TimestampingError`."""
    days = min(TSA_DAYS, (ca.not_after - now) // timedelta(days=1))
    if days < 1:
        raise TimestampingError("the site CA expires within a day: no TSA certificate")
    try:
        cert, key = issue_tsa_certificate(ca, f"{site} TSA", now=now, days=days)
    except CertificateError as exc:
        raise TimestampingError(f"issuing the TSA certificate: {exc}") from exc
    # The key first: a crash before the certificate leaves no certificate, and the next
    # start issues both again.
    write_private_key(keys_dir / TSA_KEY, key, passphrase)
    write_private(keys_dir / TSA_CERT, cert)


def load_authority(
    config: SiteConfig, *, now: datetime, policy: str | None = None
) -> TimeStampAuthority:
    """HQ's TSA from keys/tsa.crt and keys/tsa.key, stamping under ``policy`` (by
    default ``[tsa] policy``; the witness's tokens: ``[tsa] checkpoint_policy``).

    An HQ created before time-stamping has neither file: both are made then, under the
    site CA (keys/ca.key). Raises :class:`TimestampingError`, or KeyStoreError for a
    key file readable by others.
    """
    k = config.keys_dir
    if not (k / TSA_CERT).exists() or not (k / TSA_KEY).exists():
        try:
            ca = load_site_ca(k, config.key_passphrase)
        except CertificateError as exc:
            raise TimestampingError(f"the site CA in {k}: {exc}") from exc
        write_tsa_files(k, ca, site=config.site.id, now=now, passphrase=config.key_passphrase)
        logjson.event(log, logging.INFO, "tsa_created", cert=str(k / TSA_CERT))
    from crypto.tsa import TimeStampAuthority  # pyasn1, loaded when needed: tsa_errors.py

    try:
        return TimeStampAuthority(
            (k / TSA_CERT).read_bytes(),
            _read_private(k / TSA_KEY, config.key_passphrase),
            policy=config.tsa.policy if policy is None else policy,
            fraction_digits=TSA_FRACTION_DIGITS,
        )
    except TimestampError as exc:
        raise TimestampingError(f"{k / TSA_CERT}: {exc}") from exc


def _serials(n: int) -> list[int]:
    """``n`` distinct random serial numbers (positive, below 2**160, as RFC 3161 wants)."""
    while True:
        serials = [
            int.from_bytes(SYSTEM_RANDOM.random_bytes(SERIAL_BYTES), "big") + 1 for _ in range(n)
        ]
        if len(set(serials)) == n:
            return serials


def issue_batch(
    tsa: TimeStampAuthority, requests: Sequence[bytes], *, now: datetime, policy: str
) -> list[bytes]:
    """One DER TimeStampResp per DER TimeStampReq, in order: a token for each acceptable
    request (those asking for the certificate and those not, one batch each), a
    rejection for each other one."""
    from crypto.tsa import parse_request
    from crypto.tsa import rejection as tsa_rejection
    from crypto.tsa import response as tsa_response

    answers: list[bytes | None] = [None] * len(requests)
    groups: dict[bool, list[tuple[int, bytes, int | None]]] = {True: [], False: []}
    for i, der in enumerate(requests):
        try:
            req = parse_request(der, policy=policy)
        except TimestampError as exc:
            answers[i] = tsa_rejection(exc.failure, str(exc))
            continue
        groups[req.cert_req].append((i, req.imprint, req.nonce))
    for cert_req, group in groups.items():
        if not group:
            continue
        try:
            tokens = tsa.issue_many(
                [imprint for _, imprint, _ in group],
                serials=_serials(len(group)),
                now=now,
                nonces=[nonce for _, _, nonce in group],
                cert_req=cert_req,
            )
            for (i, _, _), token in zip(group, tokens, strict=True):
                answers[i] = tsa_response(token)
        except TimestampError as exc:
            for i, _, _ in group:
                answers[i] = tsa_rejection(exc.failure, str(exc))
    return [a if a is not None else tsa_rejection("systemFailure") for a in answers]


# -- POST /v1/timestamp (HQ) -------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def timestamp_handler(ctx: SiteContext) -> Handler:
    """The handler of ``POST /v1/timestamp`` (see the module rules). The authority is
    loaded on the first request (and its files made if need be)."""
    held: list[TimeStampAuthority] = []
    limit = max_body_bytes()

    async def handle(request: web.Request) -> web.Response:
        peer: str = request[PEER]
        if request.content_type != REQUEST_MEDIA_TYPE:
            return _refuse(415, f"expected {REQUEST_MEDIA_TYPE}")
        if request.content_length is not None and request.content_length > limit:
            return _refuse(413, f"a time-stamp batch is at most {limit} bytes")
        try:
            body = await asyncio.wait_for(request.read(), ctx.config.relay.request_timeout_seconds)
        except TimeoutError:
            return _refuse(408, "request body too slow")
        try:
            requests = unframe(body)
        except BatchTooLarge as exc:
            return _refuse(413, f"batch refused: {exc}")
        except BatchError as exc:
            return _refuse(400, f"batch refused: {exc}")
        now = datetime.now(UTC)
        try:
            if not held:
                held.append(load_authority(ctx.config, now=now))
        except (TimestampingError, KeyStoreError, OSError) as exc:
            logjson.event(log, logging.ERROR, "tsa_unavailable", reason=str(exc))
            return _refuse(503, "the time-stamp authority is not available")
        answers = issue_batch(held[0], requests, now=now, policy=ctx.config.tsa.policy)
        logjson.event(log, logging.INFO, "timestamp_served", peer=peer, n=len(answers))
        return web.Response(body=frame(answers), content_type=RESPONSE_MEDIA_TYPE)

    return handle


def witness_routes(ctx: SiteContext) -> tuple[WitnessHandler, WitnessHandler]:
    """The (POST, GET) handlers of ``/v1/witness`` (HQ), stamping with HQ's TSA."""
    held: list[TimeStampAuthority] = []

    def issue(digest: bytes) -> bytes | None:
        now = datetime.now(UTC)
        try:
            if not held:
                held.append(
                    load_authority(ctx.config, now=now, policy=ctx.config.tsa.checkpoint_policy)
                )
            return held[0].issue_many([digest], serials=_serials(1), now=now)[0]
        except (TimestampingError, TimestampError, KeyStoreError, OSError) as exc:
            logjson.event(log, logging.ERROR, "tsa_unavailable", reason=str(exc))
            return None

    return witness_handlers(ctx, issue)


def _refuse(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


# -- the stamper (every site) ------------------------------------------------------------
