"""The OpenAPI document says exactly what the HTTP API routes, both ways; and it holds together."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aiohttp import web

from gateway.bridges.http.api import add_routes
from gateway.bridges.http.common import ERROR_CODES
from gateway.bridges.http.openapi import document

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def _routed() -> set[tuple[str, str]]:
    app = web.Application()
    add_routes(app.router)
    return {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None
    }


def _documented() -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in document()["paths"].items()
        for method in item
        if method in METHODS
    }


def test_every_route_is_documented() -> None:
    assert _routed() - _documented() == set()


def test_every_documented_operation_is_routed() -> None:
    assert _documented() - _routed() == set()


def test_the_route_tables_are_not_empty_and_equal() -> None:
    assert _routed() == _documented() and len(_routed()) == 10


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves_and_the_document_is_json() -> None:
    doc = json.loads(json.dumps(document()))
    for ref in _refs(doc):
        node: Any = doc
        for key in ref.removeprefix("#/").split("/"):
            node = node[key]
        assert isinstance(node, dict), ref


def test_path_parameters_are_declared_and_401_everywhere() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0" and doc["security"] == [{"bearer": []}]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (path, method)
            assert "401" in op["responses"], (path, method)


def test_error_codes_are_the_documented_enum() -> None:
    assert set(document()["components"]["schemas"]["Error"]["properties"]["code"]["enum"]) == set(
        ERROR_CODES
    )


def test_the_document_validates_as_openapi_3_1() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document())


def test_document_status_schema_has_destinations() -> None:
    schemas = document()["components"]["schemas"]
    status = schemas["DocumentStatus"]
    assert {"destinations", "receipts", "of", "outstanding"} <= set(status["required"])
    assert "partially_delivered" in status["properties"]["status"]["enum"]
    assert status["properties"]["destinations"]["items"] == {
        "$ref": "#/components/schemas/Destination"
    }
    assert set(schemas["Destination"]["properties"]["state"]["enum"]) == {
        "queued", "forwarded", "delivered", "deferred", "held", "failed",
    }  # fmt: skip
    assert "completed" in schemas["WebhookEvent"]["properties"]["type"]["enum"]
    path = document()["paths"]["/v1/documents/{id}/receipts/{site}"]["get"]
    assert {"200", "404"} <= set(path["responses"])
    assert "409" in document()["paths"]["/v1/documents/{id}/receipt"]["get"]["responses"]
