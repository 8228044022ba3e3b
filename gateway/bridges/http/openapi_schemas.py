"""The components of the HTTP API's OpenAPI document (gateway/bridges/http/openapi.py):
its schemas, and the building blocks its paths share (references, error responses,
the patterns of the server's own checks).
"""

from __future__ import annotations

from typing import Any

from envelope.limits import MAX_DESTINATIONS, MAX_SUBJECT_CHARS
from envelope.values import DOC_CLASS_RE, DOSSIER_RE, SITE_ID_RE
from gateway.bridges.http.common import ERROR_CODES
from gateway.bridges.http.params import CURSOR_PATTERN, TIME_PATTERN
from gateway.store.base import DestState

JSON = "application/json"
ENVELOPE = "application/vnd.valise.envelope"
ID = {"name": "id", "in": "path", "required": True, "schema": {"$ref": "#/components/schemas/Id"}}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ref(name)}}}


def error_responses(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in (401, *statuses)}


_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_STR = {"type": ["string", "null"]}
PART_N = {"name": "n", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}
BINARY = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
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
SITE = {"type": "string", "pattern": f"^{SITE_ID_RE.pattern}$"}
CLASS = {"type": "string", "pattern": f"^{DOC_CLASS_RE.pattern}$"}
DOSSIER = {"type": "string", "pattern": f"^{DOSSIER_RE.pattern}$"}
PRIORITY = {"enum": ["flash", "immediate", "priority", "routine"]}
# What check_text lets through: no C0 controls, no DEL, no non-characters.
_TEXT = "^[^\\x00-\\x1f\\x7f\\ufffe\\uffff]*$"
EXPIRES = {
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
    "SiteId": {**SITE, "description": "a site of the directory in force"},
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
                "items": ref("SiteId"),
            },
            "class": {**CLASS, "default": "document"},
            "subject": {"type": "string", "maxLength": MAX_SUBJECT_CHARS, "pattern": _TEXT},
            "priority": PRIORITY,
            "dossier": DOSSIER,
            "expires": EXPIRES,
            "in_reply_to": ref("Id"),
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["id", "status", "location"],
        "properties": {
            "id": ref("Id"),
            "status": {"const": "queued"},
            "location": {"type": "string"},
            "waiting_for_key": {
                "description": "Destinations with no active encryption key yet: the"
                " document waits, held, and is sealed to their key once published.",
                "type": "array",
                "items": ref("SiteId"),
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
            "site": SITE,
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
            "id": ref("Id"),
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
                "items": SITE,
                "description": "destinations neither delivered nor failed",
            },
            "failed": {"type": "array", "items": SITE, "description": "failed destinations"},
            "destinations": {"type": "array", "items": ref("Destination")},
            "hops": {
                "description": "state per next hop: delivered once every destination"
                " through it has its receipt (kept from before circulars; see destinations)",
                "type": "object",
                "additionalProperties": {"type": "string"},
            },
            "history": {"type": "array", "items": ref("Transition")},
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
            "id": ref("Id"),
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
            "items": {"type": "array", "items": ref("InboxSummary")},
            "next_cursor": {"oneOf": [{"type": "null"}, ref("Cursor")]},
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
            "id": ref("Id"),
            "from": {"type": "string"},
            "to": {"type": "array", "items": {"type": "string"}},
            "state": {"enum": ["available", "acked"]},
            "received": {"oneOf": [{"type": "null"}, _TIME]},
            "created": _TIME,
            "expires": _TIME,
            "priority": PRIORITY,
            "class": {"type": "string"},
            "dossier": _NULLABLE_STR,
            "in_reply_to": _NULLABLE_STR,
            "subject": _NULLABLE_STR,
            "parts": {"type": "array", "items": ref("Part")},
            "edxml": {"type": "string"},
            "kind": _KIND,
            "edxml_header": {"oneOf": [{"type": "null"}, ref("EdxmlHeader")]},
        },
    },
    "Acked": {"type": "object", "properties": {"id": ref("Id"), "state": {"const": "acked"}}},
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
                    "id": ref("Id"),
                    "document": {"type": "string", "description": "its status resource"},
                    "inbox": {"type": "string", "description": "received: the inbox item"},
                    "origin": {**SITE, "description": "received: the sending site"},
                    "site": {**SITE, "description": "delivered: the destination receipted"},
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
