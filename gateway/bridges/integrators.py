"""Integrators of the HTTP API: their bearer tokens, webhook secrets and idempotency.

Rules:
- A token is 32 random bytes (``vlt_`` + URL-safe base64), shown once by
  ``valise integrator add``; the store keeps only its SHA-256. A plain hash is
  enough because the token is random (no dictionary to try); lookups go by the
  hash, so no token is ever compared in the clear.
- A webhook secret is Standard Webhooks' ``whsec_`` + base64 of 24 random bytes; it
  must be kept to sign, so it is stored as is and shown once as well.
- An ``Idempotency-Key`` is remembered per integrator for IDEMPOTENCY_TTL; a request
  is "the same" when its fingerprint (the normalised metadata and each part's name,
  media type and SHA-256) is the same, whatever multipart boundary carried it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

TOKEN_PREFIX = "vlt_"  # noqa: S105 - a prefix, not a secret
TOKEN_BYTES = 32
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SECRET_BYTES = 24
IDEMPOTENCY_TTL = timedelta(hours=24)
MAX_IDEMPOTENCY_KEY_CHARS = 255
# A dot-atom of 1-64 characters: an integrator's name is also its mailbox, the local
# part of the only address it may send as over SMTP (gateway/bridges/mail/address.py).
NAME_RE = re.compile(r"(?=[a-z0-9._-]{1,64}\Z)[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9_-]+)*")
# Printable ASCII, no space; also the pattern the OpenAPI document states.
IDEMPOTENCY_KEY_PATTERN = rf"^[\x21-\x7e]{{1,{MAX_IDEMPOTENCY_KEY_CHARS}}}$"
_KEY_RE = re.compile(IDEMPOTENCY_KEY_PATTERN)
_TOKEN_RE = re.compile(r"vlt_[A-Za-z0-9_-]{43}")
MAX_URL_CHARS = 2048


class IntegratorError(ValueError):
    """A name, URL or key that an integrator (or the operator) got wrong. One line."""


def new_token() -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(
        secrets.token_bytes(TOKEN_BYTES)
    ).decode().rstrip("=")


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(token: str) -> bool:
    return _TOKEN_RE.fullmatch(token) is not None


def new_webhook_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def check_name(name: str) -> str:
    if NAME_RE.fullmatch(name) is None:
        raise IntegratorError(
            f"integrator name {name!r} must be 1-64 of a-z 0-9 . _ - (starting alphanumeric,"
            " no leading, trailing or doubled dot: it is also a mailbox)"
        )
    return name


def check_webhook_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL_CHARS:
        raise IntegratorError(f"webhook URL {url!r} must be an http:// or https:// URL")
    return url


def check_idempotency_key(key: str) -> str:
    if _KEY_RE.fullmatch(key) is None:
        raise IntegratorError(
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters"
        )
    return key


def fingerprint(metadata: Mapping[str, Any], parts: Sequence[tuple[str, str, str]]) -> str:
    """SHA-256 hex of the request's meaning: metadata, then (name, media type, sha256) per part."""
    canonical = json.dumps(
        {"metadata": dict(metadata), "parts": [list(p) for p in parts]},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        default=str,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
