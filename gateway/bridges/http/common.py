"""What every handler of the HTTP API shares: the app's state, errors, authentication.

Rules:
- Every error is JSON ``{"code": ..., "message": ...}`` with a stable ``code``
  (ERROR_CODES, also in the OpenAPI document); an unexpected failure is logged and
  answered ``500 internal_error`` without details.
- Every request, to any path, needs ``Authorization: Bearer <token>`` of an active
  integrator; any other is answered 401, logged (without the token), and its
  connection closed (gateway/bridges/http/listener.py: a refusal never keeps a
  connection alive; a valid token promotes the connection out of the pending pool).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.bridges.http.listener import BUSY_CODE, admitted, refused
from gateway.bridges.integrators import looks_like_token, token_sha256
from gateway.bridges.webhooks import Webhooks
from gateway.site.context import SiteContext
from gateway.store.base import Integrator, StoreError

log = logging.getLogger("valise.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ERROR_CODES: dict[str, str] = {
    "unauthorized": "no valid bearer token",
    "not_found": "no such resource",
    "method_not_allowed": "the resource does not take this method",
    "malformed_request": "the request cannot be read (headers, JSON, cursor)",
    "malformed_multipart": "the multipart body cannot be read",
    "malformed_metadata": "the metadata part or headers are not valid JSON or text",
    "malformed_edxml": "the edXML document is not well-formed or not edXML",
    "invalid_idempotency_key": "the Idempotency-Key header is not acceptable",
    "idempotency_conflict": "the Idempotency-Key was used for a different request",
    "circular": "the document has several destinations: one receipt per destination",
    "payload_too_large": "the body exceeds [http] max_body_bytes",
    "unsupported_encoding": "a Content-Encoding was given; send the body as is",
    "unsupported_media_type": "the body's media type is not accepted here",
    "unknown_site": "a destination is not a site of the directory",
    "unknown_organ": "an edXML To/OrganId (or ResponseFor/OrganId) is served by no site",
    "sender_organ": "an edXML From/OrganId is not an organ the submitting site serves",
    "unsafe_attachment": "an attachment's ZIP would unpack past the limits (a ZIP bomb)",
    "invalid_metadata": "a metadata value is not acceptable",
    "no_documents": "the submission has no document part",
    "not_acceptable": "the representation asked for cannot be produced",
    "store_unavailable": "the store could not be reached",
    "too_many_connections": "[http] max_connections are open; retry shortly",
    "internal_error": "the gateway failed; see its log",
}
assert BUSY_CODE in ERROR_CODES


class ApiError(Exception):
    """An error answer: HTTP status, stable code, one-line message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class ApiState:
    ctx: SiteContext
    webhooks: Webhooks
    max_body_bytes: int
    workdir: Path  # where request bodies are staged (DIR/.http-tmp, 0700)


API = web.AppKey("valise_api", ApiState)
_INTEGRATOR = web.RequestKey("valise_integrator", Integrator)


def state(request: web.Request) -> ApiState:
    return request.app[API]


def integrator(request: web.Request) -> Integrator:
    return request[_INTEGRATOR]


def error_response(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status, headers=headers)


def json_response(body: Any, status: int = 200, **headers: str) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_HTTP_CODES = {
    400: "malformed_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _refusal_closes(request, error_response(exc.status, exc.code, exc.message))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(
            exc.status, "malformed_request" if exc.status < 500 else "internal_error"
        )
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return _refusal_closes(request, error_response(exc.status, code, exc.reason, **headers))
    except StoreError as exc:
        log.error(
            json.dumps({"event": "http_store_error", "path": request.path, "reason": str(exc)})
        )
        return error_response(503, "store_unavailable", "the store could not be reached")
    except Exception as exc:
        log.exception(
            json.dumps(
                {"event": "http_error", "path": request.path, "reason": f"{type(exc).__name__}"}
            )
        )
        return error_response(500, "internal_error", "the gateway failed; see its log")


def _refusal_closes(request: web.Request, answer: web.Response) -> web.Response:
    # However a 401 or 403 is raised, it never keeps its connection alive.
    if answer.status in (401, 403):
        refused(request, answer)
    return answer


def _unauthorized(request: web.Request, reason: str) -> web.Response:
    log.warning(
        json.dumps(
            {
                "event": "http_unauthorized",
                "method": request.method,
                "path": request.path,
                "remote": request.remote,
                "reason": reason,
            }
        )
    )
    answer = error_response(
        401, "unauthorized", reason, **{"WWW-Authenticate": 'Bearer realm="valise"'}
    )
    refused(request, answer)
    return answer


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return _unauthorized(request, "missing bearer token")
    if scheme.lower() != "bearer" or not looks_like_token(token.strip()):
        return _unauthorized(request, "malformed bearer token")
    who = await state(request).ctx.store.integrator_for_token(token_sha256(token.strip()))
    if who is None:
        return _unauthorized(request, "unknown or revoked token")
    request[_INTEGRATOR] = who
    admitted(request)
    return await handler(request)
