"""The OpenAPI 3.1 document of the HTTP API, served at ``/v1/openapi.json``.

A test holds it true both ways: every route of the app is documented here, and
every documented path and method is routed (tests/unit/test_http_openapi.py).
"""

from __future__ import annotations

from typing import Any

from gateway.bridges.edxml import MEDIA_TYPE as EDXML
from gateway.bridges.http_common import ERROR_CODES
from gateway.bridges.http_staging import HEADER_FIELDS

JSON = "application/json"
ID = {"name": "id", "in": "path", "required": True, "schema": {"$ref": "#/components/schemas/Id"}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(name)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in (401, *statuses)}


_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_STR = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Id": {
        "type": "string",
        "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
    },
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
            "to": {"type": "array", "minItems": 1, "items": {"type": "string"}},
            "class": {"type": "string", "default": "document"},
            "subject": {"type": "string", "maxLength": 998},
            "priority": {"enum": ["flash", "immediate", "priority", "routine"]},
            "dossier": {"type": "string"},
            "expires": _TIME,
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
    "DocumentStatus": {
        "type": "object",
        "required": ["id", "status", "history", "receipt"],
        "properties": {
            "id": _ref("Id"),
            "status": {
                "enum": [
                    "queued",
                    "sending",
                    "deferred",
                    "held",
                    "forwarded",
                    "delivered",
                    "failed",
                    "deleted",
                ]
            },
            "hops": {"type": "object", "additionalProperties": {"type": "string"}},
            "history": {"type": "array", "items": _ref("Transition")},
            "receipt": {
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
                ]
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
        "properties": {
            "id": _ref("Id"),
            "from": {"type": "string"},
            "state": {"enum": ["available", "acked"]},
            "received": _TIME,
            "subject": _NULLABLE_STR,
            "parts": {"type": "integer"},
            "size": {"type": "integer"},
            "href": {"type": "string"},
        },
    },
    "InboxPage": {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref("InboxSummary")},
            "next_cursor": _NULLABLE_STR,
        },
    },
    "Part": {
        "type": "object",
        "properties": {
            "n": {"type": "integer"},
            "name": {"type": "string"},
            "media_type": {"type": "string"},
            "size": {"type": "integer"},
            "href": {"type": "string"},
        },
    },
    "InboxItem": {
        "allOf": [
            _ref("InboxSummary"),
            {
                "type": "object",
                "properties": {
                    "to": {"type": "array", "items": {"type": "string"}},
                    "created": _TIME,
                    "expires": _TIME,
                    "priority": {"type": "string"},
                    "class": {"type": "string"},
                    "dossier": _NULLABLE_STR,
                    "in_reply_to": _NULLABLE_STR,
                    "parts": {"type": "array", "items": _ref("Part")},
                    "edxml": {"type": "string"},
                },
            },
        ]
    },
    "Acked": {"type": "object", "properties": {"id": _ref("Id"), "state": {"const": "acked"}}},
    "WebhookEvent": {
        "type": "object",
        "required": ["type", "timestamp", "data"],
        "properties": {
            "type": {"enum": ["received", "delivered", "failed"]},
            "timestamp": _TIME,
            "data": {"type": "object", "required": ["id"], "properties": {"id": _ref("Id")}},
        },
    },
}

_STATUS_TEXT = {
    400: "Malformed request",
    401: "No valid bearer token",
    404: "Not found",
    406: "Not acceptable",
    409: "Idempotency-Key reused for another request",
    413: "Body over [http] max_body_bytes",
    415: "Content-Encoding or media type not accepted",
    422: "Metadata not acceptable (unknown_site, invalid_metadata, no_documents)",
    503: "Store unavailable",
}

_RAW_HEADERS = [
    {
        "name": h,
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": f"raw body: metadata {key} (percent-encoded UTF-8)",
    }
    for h, key in HEADER_FIELDS.items()
]

_SUBMIT = {
    "operationId": "submitDocument",
    "summary": "Seal and queue a document; 202 only after the durable commit",
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": 255},
        },
        *_RAW_HEADERS,
        {
            "name": "Valise-Filename",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "description": "first the metadata part (application/json, Metadata),"
                    " then one part per file",
                }
            },
            "multipart/mixed": {"schema": {"type": "string", "format": "binary"}},
            EDXML: {
                "schema": {
                    "type": "string",
                    "description": "an edXML (QCVN 102:2016) document; see EDXML.md",
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
            "summary": "Status, history and receipt of a submitted document",
            "parameters": [ID],
            "responses": {"200": _json("DocumentStatus", "The document's status"), **_errors(404)},
        }
    },
    "/v1/documents/{id}/receipt": {
        "get": {
            "operationId": "documentReceipt",
            "summary": "The signed receipt envelope",
            "parameters": [ID],
            "responses": {
                "200": {
                    "description": "The receipt envelope bytes",
                    "content": {
                        "application/vnd.valise.envelope": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
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
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
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
            "responses": {"200": _json("InboxPage", "One page"), **_errors(400)},
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
            "parameters": [
                ID,
                {
                    "name": "n",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0},
                },
            ],
            "responses": {
                "200": {
                    "description": "The part's bytes, with its sealed Content-Type and file name",
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                },
                **_errors(404),
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
        "summary": "received, delivered, failed; signed in the Standard Webhooks way",
        "description": "Headers webhook-id, webhook-timestamp and webhook-signature"
        " (v1,<base64 HMAC-SHA256 of id.timestamp.body>).",
        "requestBody": {"content": {JSON: {"schema": _ref("WebhookEvent")}}},
        "responses": {"2XX": {"description": "Accepted; anything else is retried with backoff"}},
    }
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Valise integrators' HTTP API", "version": "1"},
        "security": [{"bearer": []}],
        "paths": PATHS,
        "webhooks": {"event": _WEBHOOK},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
            "responses": {f"E{s}": _json("Error", text) for s, text in _STATUS_TEXT.items()},
        },
    }
