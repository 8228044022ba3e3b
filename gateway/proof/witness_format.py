"""The audit witness's wire format: a checkpoint request and HQ's signed statement, as
JSON, parsed and checked (gateway/proof/witness.py serves and sends them)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from crypto.errors import CryptoError
from crypto.keys import VerifyKey
from crypto.recipes import verify
from gateway.store.audit_chain import (
    AuditCheckpoint,
    AuditFormatError,
    Witness,
    canonical_time,
    witness_message,
)
from routing.directory import Directory, DirectoryError


class WitnessError(Exception):
    """HQ's answer about a checkpoint cannot be used (one line says why)."""


# -- the wire format -------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise WitnessError(f"{what} is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise WitnessError(f"{what} is not base64") from None


def _hash(value: object, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 64:
        raise WitnessError(f"{what} is not a 32-byte hash in hex")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise WitnessError(f"{what} is not a 32-byte hash in hex") from None


def _seq(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**63:
        raise WitnessError(f"{what} is not a seq")
    return value


def _time(value: object, what: str) -> datetime:
    if not isinstance(value, str):
        raise WitnessError(f"{what} is not a time")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise WitnessError(f"{what} is not a time") from None
    if moment.utcoffset() is None or canonical_time(moment) != value:
        raise WitnessError(f"{what} is not written YYYY-MM-DDTHH:MM:SS.ffffffZ")
    return moment.astimezone(UTC)


def checkpoint_request(cp: AuditCheckpoint, base: tuple[int, bytes] | None) -> bytes:
    """The body a site posts to HQ's /v1/witness."""
    return json.dumps(
        {
            "seq": cp.seq,
            "hash": cp.hash.hex(),
            "at": canonical_time(cp.at),
            "signer": cp.signer,
            "signature": _b64(cp.signature),
            "base": None if base is None else {"seq": base[0], "hash": base[1].hex()},
        }
    ).encode()


def parse_checkpoint_request(body: bytes) -> tuple[AuditCheckpoint, tuple[int, bytes] | None]:
    """Raises :class:`WitnessError`."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WitnessError("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise WitnessError("the body is not a JSON object")
    signer = doc.get("signer")
    if not isinstance(signer, str) or not 0 < len(signer) <= 128:
        raise WitnessError("signer is not a key id")
    cp = AuditCheckpoint(
        _seq(doc.get("seq"), "seq"),
        _hash(doc.get("hash"), "hash"),
        _time(doc.get("at"), "at"),
        signer,
        _unb64(doc.get("signature"), "signature"),
    )
    raw_base = doc.get("base")
    if raw_base is None:
        return cp, None
    if not isinstance(raw_base, dict):
        raise WitnessError("base is not an object")
    return cp, (_seq(raw_base.get("seq"), "base seq"), _hash(raw_base.get("hash"), "base hash"))


def statement_json(w: Witness) -> dict[str, Any]:
    return {
        "site": w.site,
        "seq": w.seq,
        "hash": w.hash.hex(),
        "at": canonical_time(w.at),
        "signer": w.signer,
        "signature": _b64(w.signature),
        "witness": w.witness,
        "witnessed_at": canonical_time(w.witnessed_at),
        "witness_signer": w.witness_signer,
        "witness_signature": _b64(w.witness_signature),
    }


def parse_statement(doc: object) -> Witness:
    """A statement as HQ sends it (its signature is not checked here). Raises
    :class:`WitnessError`."""
    if not isinstance(doc, dict):
        raise WitnessError("the witness statement is not an object")
    texts = [doc.get(k) for k in ("site", "signer", "witness", "witness_signer")]
    if not all(isinstance(t, str) and t for t in texts):
        raise WitnessError("the witness statement lacks a site, signer or witness")
    site, signer, witness, witness_signer = (str(t) for t in texts)
    return Witness(
        site,
        _seq(doc.get("seq"), "witnessed seq"),
        _hash(doc.get("hash"), "witnessed hash"),
        _time(doc.get("at"), "checkpoint time"),
        signer,
        _unb64(doc.get("signature"), "checkpoint signature"),
        witness,
        _time(doc.get("witnessed_at"), "witness time"),
        witness_signer,
        _unb64(doc.get("witness_signature"), "witness signature"),
    )


def check_statement(w: Witness, directories: list[Directory]) -> None:
    """HQ's signature on ``w`` under a signing key of ``w.witness`` that one of
    ``directories`` lists as usable. Raises :class:`WitnessError`."""
    keys: dict[str, VerifyKey] = {}
    for d in directories:
        try:
            keys.update(d.site(w.witness).verify_keys())
        except DirectoryError:
            continue
    key = keys.get(w.witness_signer)
    if key is None:
        raise WitnessError(f"the statement's signer {w.witness_signer} is no key of {w.witness}")
    try:
        message = witness_message(w.witness, w.site, w.seq, w.hash, w.at, w.witnessed_at)
        verify(key, w.witness_signature, message)
    except (CryptoError, AuditFormatError):
        raise WitnessError(f"{w.witness}'s signature on the statement does not verify") from None


# -- HQ: POST /v1/witness, GET /v1/witness ---------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
