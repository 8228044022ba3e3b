"""The paths and the webhook of the HTTP API's OpenAPI document
(gateway/bridges/http/openapi.py): each route, its parameters and its answers.
"""

from __future__ import annotations

from typing import Any

from envelope.values import SITE_ID_RE
from gateway.bridges.edxml import MEDIA_TYPE as EDXML
from gateway.bridges.http.openapi_schemas import (
    BINARY,
    CLASS,
    DOSSIER,
    ENVELOPE,
    EXPIRES,
    ID,
    JSON,
    PART_N,
    PRIORITY,
    SITE,
    error_responses,
    json_response,
    ref,
)
from gateway.bridges.integrators import IDEMPOTENCY_KEY_PATTERN


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
    _raw_header("Valise-Class", CLASS, "the document class"),
    _raw_header(
        "Valise-Subject",
        {"type": "string", "pattern": "^(?:[\\x20-\\x24\\x26-\\x7e]|%[0-9A-Fa-f]{2})*$"},
        "the subject, percent-encoded UTF-8",
    ),
    _raw_header("Valise-Priority", PRIORITY, "the priority"),
    _raw_header("Valise-Dossier", DOSSIER, "the dossier id"),
    _raw_header("Valise-Expires", {**EXPIRES, "format": "date-time"}, "the expiry"),
    _raw_header("Valise-In-Reply-To", ref("Id"), "the message id answered"),
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
                        "metadata": ref("Metadata"),
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
            **json_response("Accepted", "Queued durably"),
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
        **error_responses(400, 409, 413, 415, 422, 503),
    },
}

PATHS: dict[str, Any] = {
    "/v1/documents": {"post": _SUBMIT},
    "/v1/documents/{id}": {
        "get": {
            "operationId": "documentStatus",
            "summary": "Status per destination, history and receipts of a submitted document",
            "parameters": [ID],
            "responses": {
                "200": json_response("DocumentStatus", "The document's status"),
                **error_responses(404),
            },
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
                **error_responses(404, 409),
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
                {"name": "site", "in": "path", "required": True, "schema": SITE},
            ],
            "responses": {
                "200": {
                    "description": "The receipt envelope bytes, signed by that destination",
                    "content": {ENVELOPE: {"schema": {"type": "string", "format": "binary"}}},
                },
                **error_responses(404),
            },
        }
    },
    "/v1/inbox": {
        "get": {
            "operationId": "inboxList",
            "summary": "Documents delivered here, oldest first, cursor-paged",
            "parameters": [
                {"name": "cursor", "in": "query", "schema": ref("Cursor")},
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
                    **json_response("InboxPage", "One page"),
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
                **error_responses(400),
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
                        JSON: {"schema": ref("InboxItem")},
                        EDXML: {"schema": {"type": "string"}},
                    },
                },
                **error_responses(404, 406),
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
                    "content": BINARY,
                },
                **error_responses(404),
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
                    "content": BINARY,
                },
                **error_responses(404, 422),
            },
        }
    },
    "/v1/inbox/{id}/ack": {
        "post": {
            "operationId": "inboxAck",
            "summary": "Acknowledge a delivered document",
            "parameters": [ID],
            "responses": {"200": json_response("Acked", "Acknowledged"), **error_responses(404)},
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
                **error_responses(),
            },
        }
    },
}

WEBHOOK = {
    "post": {
        "summary": "received, delivered, failed, completed; signed in the Standard Webhooks way",
        "description": "Headers webhook-id, webhook-timestamp and webhook-signature"
        " (v1,<base64 HMAC-SHA256 of id.timestamp.body>). delivered is sent once per"
        " destination whose receipt is in (data.site, delivered k of n): for a document"
        " with several destinations it is not the end. completed is sent once, when no"
        " destination is open any more, with delivered k of n and the failed sites; a"
        " receipt arriving after a destination failed still sends delivered, but no"
        " second completed.",
        "requestBody": {"content": {JSON: {"schema": ref("WebhookEvent")}}},
        "responses": {"2XX": {"description": "Accepted; anything else is retried with backoff"}},
    }
}
