"""The OpenAPI 3.1 document of the HTTP API, served at ``/v1/openapi.json``.

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

from envelope.limits import MAX_DESTINATIONS, MAX_SUBJECT_CHARS
from envelope.values import DOC_CLASS_RE, DOSSIER_RE, SITE_ID_RE
from gateway.bridges.edxml import MEDIA_TYPE as EDXML
from gateway.bridges.http.common import ERROR_CODES
from gateway.bridges.http.params import CURSOR_PATTERN, TIME_PATTERN
from gateway.bridges.integrators import IDEMPOTENCY_KEY_PATTERN
from gateway.store.base import DestState

JSON = "application/json"
ENVELOPE = "application/vnd.valise.envelope"
ID = {"name": "id", "in": "path", "required": True, "schema": {"$ref": "#/components/schemas/Id"}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(name)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in (401, *statuses)}


_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_STR = {"type": ["string", "null"]}
PART_N = {"name": "n", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
_BINARY = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
_KIND = {
    "description": "the edXML kind from the kept header (new, revocation, update,"
    " replacement, status); null for a document that came without edXML",
    "oneOf": [
        {"type": "null"},
        {"enum": ["new", "revocation", "update", "replacement", "status"]},
    ],
}
_INBOX_ITEM_FIELDS = [
    "id",
    "from",
    "to",
    "state",
    "received",
    "created",
    "expires",
    "priority",
    "class",
    "dossier",
    "in_reply_to",
    "subject",
    "parts",
    "edxml",
]
_SITE = {"type": "string", "pattern": f"^{SITE_ID_RE.pattern}$"}
_CLASS = {"type": "string", "pattern": f"^{DOC_CLASS_RE.pattern}$"}
_DOSSIER = {"type": "string", "pattern": f"^{DOSSIER_RE.pattern}$"}
_PRIORITY = {"enum": ["flash", "immediate", "priority", "routine"]}
# What check_text lets through: no C0 controls, no DEL, no non-characters.
_TEXT = "^[^\\x00-\\x1f\\x7f\\ufffe\\uffff]*$"
_EXPIRES = {
    **_TIME,
    "pattern": TIME_PATTERN,
    "description": "after now and at most [relay] max_expires_days ahead (default 90 days);"
    " otherwise 422 invalid_metadata",
}

SCHEMAS: dict[str, Any] = {
    "Id": {
        "type": "string",
        "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
    },
    "SiteId": {**_SITE, "description": "a site of the directory in force"},
    "Error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"enum": sorted(ERROR_CODES)}, "message": {"type": "string"}},
    },
    "Metadata": {
        "type": "object",
        "required": ["to"],
        "additionalProperties": False,
        "properties": {
            "to": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_DESTINATIONS,
                "items": _ref("SiteId"),
            },
            "class": {**_CLASS, "default": "document"},
            "subject": {"type": "string", "maxLength": MAX_SUBJECT_CHARS, "pattern": _TEXT},
            "priority": _PRIORITY,
            "dossier": _DOSSIER,
            "expires": _EXPIRES,
            "in_reply_to": _ref("Id"),
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["id", "status", "location"],
        "properties": {
            "id": _ref("Id"),
            "status": {"const": "queued"},
            "location": {"type": "string"},
            "waiting_for_key": {
                "description": "Destinations with no active encryption key yet: the"
                " document waits, held, and is sealed to their key once published.",
                "type": "array",
                "items": _ref("SiteId"),
            },
        },
    },
    "Transition": {
        "type": "object",
        "properties": {
            "at": _TIME,
            "peer": _NULLABLE_STR,
            "state": {"type": "string"},
            "reason": {"type": "string"},
        },
    },
    "Destination": {
        "type": "object",
        "description": "One final destination of the document, as the origin knows it.",
        "required": ["site", "state", "reason", "receipt"],
        "additionalProperties": False,
        "properties": {
            "site": _SITE,
            "state": {"enum": [s.value for s in DestState]},
            "reason": {"type": "string"},
            "receipt": {
                "description": "null until this destination's signed receipt is in",
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["at", "sha256", "href", "media_type", "size"],
                        "additionalProperties": False,
                        "properties": {
                            "at": _TIME,
                            "sha256": {
                                "description": "the receipt envelope's digest (SPEC 4.3)",
                                "oneOf": [
                                    {"type": "null"},
                                    {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                                ],
                            },
                            "href": {
                                "description": "/v1/documents/{id}/receipts/{site}; null"
                                " when no receipt envelope is kept here",
                                **_NULLABLE_STR,
                            },
                            "media_type": {"const": ENVELOPE},
                            "size": {"type": "integer", "minimum": 0},
                        },
                    },
                ],
            },
        },
    },
    "DocumentStatus": {
        "type": "object",
        "required": [
            "id",
            "status",
            "receipts",
            "of",
            "outstanding",
            "failed",
            "destinations",
            "hops",
            "history",
            "receipt",
        ],
        "properties": {
            "id": _ref("Id"),
            "status": {
                "description": "delivered only when every destination's receipt is in;"
                " partially_delivered once some are (see outstanding); failed when"
                " nothing is open and no receipt came; else the most urgent open state",
                "enum": [
                    "queued",
                    "sending",
                    "deferred",
                    "held",
                    "forwarded",
                    "partially_delivered",
                    "delivered",
                    "failed",
                    "deleted",
                ],
            },
            "receipts": {
                "type": "integer",
                "minimum": 0,
                "description": "destinations whose receipt is in",
            },
            "of": {
                "type": "integer",
                "minimum": 0,
                "description": "destinations (0: a message stored before per-destination state)",
            },
            "outstanding": {
                "type": "array",
                "items": _SITE,
                "description": "destinations neither delivered nor failed",
            },
            "failed": {"type": "array", "items": _SITE, "description": "failed destinations"},
            "destinations": {"type": "array", "items": _ref("Destination")},
            "hops": {
                "description": "state per next hop: delivered once every destination"
                " through it has its receipt (kept from before circulars; see destinations)",
                "type": "object",
                "additionalProperties": {"type": "string"},
            },
            "history": {"type": "array", "items": _ref("Transition")},
            "receipt": {
                "description": "the receipt of a single-destination document, else null:"
                " a circular has one receipt per destination (see destinations)",
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "properties": {
                            "href": {"type": "string"},
                            "media_type": {"type": "string"},
                            "size": {"type": "integer"},
                        },
                    },
                ],
            },
            "to": {"type": "array", "items": {"type": "string"}},
            "created": _TIME,
            "expires": _TIME,
            "priority": {"type": "string"},
            "class": {"type": "string"},
            "dossier": _NULLABLE_STR,
            "in_reply_to": _NULLABLE_STR,
        },
    },
    "InboxSummary": {
        "type": "object",
        "required": ["id", "from", "state", "received", "subject", "parts", "size", "href"],
        "properties": {
            "id": _ref("Id"),
            "from": {"type": "string"},
            "state": {"enum": ["available", "acked"]},
            "received": _TIME,
            "subject": _NULLABLE_STR,
            "parts": {"type": "integer", "description": "how many parts"},
            "size": {"type": "integer"},
            "href": {"type": "string"},
            "kind": _KIND,
        },
    },
    "InboxPage": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref("InboxSummary")},
            "next_cursor": {"oneOf": [{"type": "null"}, _ref("Cursor")]},
        },
    },
    "Cursor": {
        "type": "string",
        "pattern": CURSOR_PATTERN,
        "description": "where the next page starts; opaque, from next_cursor",
    },
    "Part": {
        "type": "object",
        "required": ["n", "name", "media_type", "size", "href"],
        "properties": {
            "n": {"type": "integer", "minimum": 0},
            "name": {"type": "string"},
            "media_type": {"type": "string"},
            "size": {"type": "integer"},
            "href": {"type": "string"},
            "unzipped": {
                "type": "string",
                "description": "an edXML part that is the SDK's ZIP of one file: where the"
                " file itself is served, unzipped (the part stays the ZIP, as sent)",
            },
        },
    },
    "EdxmlHeader": {
        "description": "what the kept edXML header says (the sender's claim, as sent)",
        "type": "object",
        "properties": {
            "kind": _KIND,
            "document_id": {"type": "string"},
            "response_for": {
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "properties": {
                            "organ_id": {"type": "string"},
                            "code": {"type": "string"},
                            "document_id": {"type": "string"},
                        },
                    },
                ]
            },
            "status_code": _NULLABLE_STR,
            "status_description": _NULLABLE_STR,
            "replaces": {"type": "array", "items": {"type": "string"}},
        },
    },
    # Not an allOf of InboxSummary: there "parts" is a count, here the list of parts.
    "InboxItem": {
        "type": "object",
        "required": _INBOX_ITEM_FIELDS,
        "properties": {
            "id": _ref("Id"),
            "from": {"type": "string"},
            "to": {"type": "array", "items": {"type": "string"}},
            "state": {"enum": ["available", "acked"]},
            "received": {"oneOf": [{"type": "null"}, _TIME]},
            "created": _TIME,
            "expires": _TIME,
            "priority": _PRIORITY,
            "class": {"type": "string"},
            "dossier": _NULLABLE_STR,
            "in_reply_to": _NULLABLE_STR,
            "subject": _NULLABLE_STR,
            "parts": {"type": "array", "items": _ref("Part")},
            "edxml": {"type": "string"},
            "kind": _KIND,
            "edxml_header": {"oneOf": [{"type": "null"}, _ref("EdxmlHeader")]},
        },
    },
    "Acked": {"type": "object", "properties": {"id": _ref("Id"), "state": {"const": "acked"}}},
    "WebhookEvent": {
        "type": "object",
        "required": ["type", "timestamp", "data"],
        "properties": {
            "type": {"enum": ["received", "delivered", "failed", "completed"]},
            "timestamp": _TIME,
            "data": {
                "type": "object",
                "required": ["id"],
                "properties": {
                    "id": _ref("Id"),
                    "document": {"type": "string", "description": "its status resource"},
                    "inbox": {"type": "string", "description": "received: the inbox item"},
                    "origin": {**_SITE, "description": "received: the sending site"},
                    "site": {**_SITE, "description": "delivered: the destination receipted"},
                    "receipt_sha256": {
                        "type": "string",
                        "pattern": "^[0-9a-f]{64}$",
                        "description": "delivered: the receipt envelope's digest",
                    },
                    "delivered": {
                        "type": "string",
                        "pattern": "^[0-9]+$",
                        "description": "delivered, completed: destinations receipted now",
                    },
                    "of": {
                        "type": "string",
                        "pattern": "^[0-9]+$",
                        "description": "delivered, completed: destinations",
                    },
                    "failed": {
                        "type": "string",
                        "description": "completed: the failed destinations, comma-separated"
                        " (empty: none)",
                    },
                    "sites": {
                        "type": "string",
                        "description": "failed: the destinations this failure closed,"
                        " comma-separated",
                    },
                    "reason": {"type": "string", "description": "failed: why"},
                },
            },
        },
    },
}

_STATUS_TEXT = {
    400: "Malformed request",
    401: "No valid bearer token",
    404: "Not found",
    406: "Not acceptable",
    409: "Idempotency-Key reused for another request, or a circular's single receipt asked",
    413: "Body over [http] max_body_bytes",
    415: "Content-Encoding or media type not accepted",
    422: "Metadata not acceptable (unknown_site, unknown_organ, unsafe_attachment,"
    " invalid_metadata, no_documents)",
    503: "Store unavailable",
}


def _raw_header(name: str, schema: dict[str, Any], what: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "schema": schema,
        "description": f"raw body only: {what}",
    }


# The metadata of a raw body (gateway/bridges/http/staging.py HEADER_FIELDS).
_RAW_HEADERS = [
    _raw_header(
        "Valise-To",
        {"type": "string", "pattern": f"^{SITE_ID_RE.pattern}(,{SITE_ID_RE.pattern})*$"},
        "the destination sites, comma-separated; required for a raw body (else 422)",
    ),
    _raw_header("Valise-Class", _CLASS, "the document class"),
    _raw_header(
        "Valise-Subject",
        {"type": "string", "pattern": "^(?:[\\x20-\\x24\\x26-\\x7e]|%[0-9A-Fa-f]{2})*$"},
        "the subject, percent-encoded UTF-8",
    ),
    _raw_header("Valise-Priority", _PRIORITY, "the priority"),
    _raw_header("Valise-Dossier", _DOSSIER, "the dossier id"),
    _raw_header("Valise-Expires", {**_EXPIRES, "format": "date-time"}, "the expiry"),
    _raw_header("Valise-In-Reply-To", _ref("Id"), "the message id answered"),
    _raw_header(
        "Valise-Filename",
        {"type": "string", "pattern": "^(?:[\\x20-\\x24\\x26-\\x7e]|%[0-9A-Fa-f]{2})+$"},
        "the file name, percent-encoded UTF-8 (or Content-Disposition)",
    ),
]

_SUBMIT = {
    "operationId": "submitDocument",
    "summary": "Seal and queue a document; 202 only after the durable commit",
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
            "description": "1-255 printable ASCII characters, no space",
        },
        *_RAW_HEADERS,
    ],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "description": "first the metadata part (application/json, Metadata),"
                    " then one part per file (multipart/mixed and multipart/related are"
                    " read the same way)",
                    "required": ["metadata", "file"],
                    "additionalProperties": False,
                    "properties": {
                        "metadata": _ref("Metadata"),
                        "file": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "format": "binary"},
                        },
                    },
                },
                "encoding": {
                    "metadata": {"contentType": "application/json"},
                    "file": {"contentType": "application/octet-stream"},
                },
            },
            EDXML: {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "an edXML (QCVN 102:2016) document; see EDXML.md"
                    " (else 400 malformed_edxml)",
                }
            },
            "application/octet-stream": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "any other media type: a raw body, metadata in Valise-* headers",
                }
            },
        },
    },
    "responses": {
        "202": {
            **_json("Accepted", "Queued durably"),
            # No link to the receipt: it exists only once the destinations delivered.
            "links": {
                "status": {
                    "operationId": "documentStatus",
                    "parameters": {"id": "$response.body#/id"},
                },
            },
            "headers": {
                "Location": {"schema": {"type": "string"}},
                "Idempotent-Replayed": {
                    "schema": {"const": "true"},
                    "description": "the Idempotency-Key was seen: the first answer again",
                },
            },
        },
        **_errors(400, 409, 413, 415, 422, 503),
    },
}

PATHS: dict[str, Any] = {
    "/v1/documents": {"post": _SUBMIT},
    "/v1/documents/{id}": {
        "get": {
            "operationId": "documentStatus",
            "summary": "Status per destination, history and receipts of a submitted document",
            "parameters": [ID],
            "responses": {"200": _json("DocumentStatus", "The document's status"), **_errors(404)},
        }
    },
    "/v1/documents/{id}/receipt": {
        "get": {
            "operationId": "documentReceipt",
            "summary": "The signed receipt envelope of a single-destination document",
            "description": "409 circular for a document with several destinations: each"
            " has its own receipt, at /v1/documents/{id}/receipts/{site}.",
            "parameters": [ID],
            "responses": {
                "200": {
                    "description": "The receipt envelope bytes",
                    "content": {ENVELOPE: {"schema": {"type": "string", "format": "binary"}}},
                },
                **_errors(404, 409),
            },
        }
    },
    "/v1/documents/{id}/receipts/{site}": {
        "get": {
            "operationId": "documentDestinationReceipt",
            "summary": "The signed receipt envelope of one destination",
            "description": "404 when the site is not a destination of the document, or its"
            " receipt is not in yet.",
            "parameters": [
                ID,
                {"name": "site", "in": "path", "required": True, "schema": _SITE},
            ],
            "responses": {
                "200": {
                    "description": "The receipt envelope bytes, signed by that destination",
                    "content": {ENVELOPE: {"schema": {"type": "string", "format": "binary"}}},
                },
                **_errors(404),
            },
        }
    },
    "/v1/inbox": {
        "get": {
            "operationId": "inboxList",
            "summary": "Documents delivered here, oldest first, cursor-paged",
            "parameters": [
                {"name": "cursor", "in": "query", "schema": _ref("Cursor")},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                },
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"enum": ["available", "acked", "all"], "default": "available"},
                },
            ],
            "responses": {
                "200": {
                    **_json("InboxPage", "One page"),
                    "links": {
                        "item": {
                            "operationId": "inboxItem",
                            "parameters": {"id": "$response.body#/items/0/id"},
                        },
                        "ack": {
                            "operationId": "inboxAck",
                            "parameters": {"id": "$response.body#/items/0/id"},
                        },
                        "next": {
                            "operationId": "inboxList",
                            "parameters": {"cursor": "$response.body#/next_cursor"},
                        },
                    },
                },
                **_errors(400),
            },
        }
    },
    "/v1/inbox/{id}": {
        "get": {
            "operationId": "inboxItem",
            "summary": "One delivered document (JSON, or edXML with format=edxml or Accept)",
            "parameters": [
                ID,
                {"name": "format", "in": "query", "schema": {"enum": ["json", "edxml"]}},
            ],
            "responses": {
                "200": {
                    "description": "The document",
                    "links": {
                        "part": {
                            "operationId": "inboxPart",
                            "parameters": {
                                "id": "$request.path.id",
                                "n": "$response.body#/parts/0/n",
                            },
                        },
                        "unzipped": {
                            "operationId": "inboxPartUnzipped",
                            "parameters": {
                                "id": "$request.path.id",
                                "n": "$response.body#/parts/0/n",
                            },
                        },
                    },
                    "content": {
                        JSON: {"schema": _ref("InboxItem")},
                        EDXML: {"schema": {"type": "string"}},
                    },
                },
                **_errors(404, 406),
            },
        }
    },
    "/v1/inbox/{id}/parts/{n}": {
        "get": {
            "operationId": "inboxPart",
            "summary": "One part, streamed with its media type and file name",
            "parameters": [ID, PART_N],
            "responses": {
                "200": {
                    "description": "The part's bytes, with its sealed Content-Type and file name",
                    "content": _BINARY,
                },
                **_errors(404),
            },
        }
    },
    "/v1/inbox/{id}/parts/{n}/unzipped": {
        "get": {
            "operationId": "inboxPartUnzipped",
            "summary": "The file inside an edXML part that is the SDK's ZIP of it, unzipped"
            " (bounded as at submission)",
            "parameters": [ID, PART_N],
            "responses": {
                "200": {
                    "description": "The file, its media type guessed from its name",
                    "content": _BINARY,
                },
                **_errors(404, 422),
            },
        }
    },
    "/v1/inbox/{id}/ack": {
        "post": {
            "operationId": "inboxAck",
            "summary": "Acknowledge a delivered document",
            "parameters": [ID],
            "responses": {"200": _json("Acked", "Acknowledged"), **_errors(404)},
        }
    },
    "/v1/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {JSON: {"schema": {"type": "object"}}},
                },
                **_errors(),
            },
        }
    },
}

_WEBHOOK = {
    "post": {
        "summary": "received, delivered, failed, completed; signed in the Standard Webhooks way",
        "description": "Headers webhook-id, webhook-timestamp and webhook-signature"
        " (v1,<base64 HMAC-SHA256 of id.timestamp.body>). delivered is sent once per"
        " destination whose receipt is in (data.site, delivered k of n): for a document"
        " with several destinations it is not the end. completed is sent once, when no"
        " destination is open any more, with delivered k of n and the failed sites; a"
        " receipt arriving after a destination failed still sends delivered, but no"
        " second completed.",
        "requestBody": {"content": {JSON: {"schema": _ref("WebhookEvent")}}},
        "responses": {"2XX": {"description": "Accepted; anything else is retried with backoff"}},
    }
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
        "webhooks": {"event": _WEBHOOK},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
            "responses": {f"E{s}": _json("Error", text) for s, text in _STATUS_TEXT.items()},
        },
    }
