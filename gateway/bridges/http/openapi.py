"""The OpenAPI 3.1 document of the HTTP API, served at ``/v1/openapi.json``: its paths
(gateway/bridges/http/openapi_paths.py) and components
(gateway/bridges/http/openapi_schemas.py), put together here.

A test holds it true both ways: every route of the app is documented here, and
every documented path and method is routed (tests/unit/test_http_openapi.py).

Rules:
- A request schema is no looser than the server: a value the document allows is one
  the server reads (its patterns come from the server's own checks). What JSON
  Schema cannot say (an expiry window, an edXML grammar, Valise-To for a raw body)
  is said in descriptions and answered 400/422.
- A response schema is what the handler writes, field for field.
- Served with the sites of the directory in force as the values of ``to``.
- Schemathesis runs against a live site with every check (tests/integration/
  test_http_schemathesis.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.bridges.http.openapi_paths import PATHS, WEBHOOK
from gateway.bridges.http.openapi_schemas import SCHEMAS, json_response

_STATUS_TEXT = {
    400: "Malformed request",
    401: "No valid bearer token",
    404: "Not found",
    406: "Not acceptable",
    409: "Idempotency-Key reused for another request, or a circular's single receipt asked",
    413: "Body over [http] max_body_bytes",
    415: "Content-Encoding or media type not accepted",
    422: "Metadata not acceptable (unknown_site, unknown_organ, sender_organ, unsafe_attachment,"
    " invalid_metadata, no_documents)",
    503: "Store unavailable",
}


def document(sites: Sequence[str] = ()) -> dict[str, Any]:
    """The document; with ``sites`` (the directory's), ``to`` takes those values only."""
    schemas = SCHEMAS
    if sites:
        schemas = {**SCHEMAS, "SiteId": {**SCHEMAS["SiteId"], "enum": sorted(sites)}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Valise integrators' HTTP API", "version": "1"},
        "security": [{"bearer": []}],
        "paths": PATHS,
        "webhooks": {"event": WEBHOOK},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
            "responses": {
                f"E{s}": json_response("Error", text) for s, text in _STATUS_TEXT.items()
            },
        },
    }
