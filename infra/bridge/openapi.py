"""The bridge's OpenAPI 3.1 document, built from the pydantic models its endpoints validate against.

Served at `GET /openapi.json`, so webhook senders (and schemathesis) read the same request schemas the
bridge enforces: the document cannot drift from the code. Starlette has no generator of its own.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from infra.bridge.auth import SIGNATURE_HEADER, TOKEN_HEADER
from infra.bridge.models import LabelStudioEvent, LakeFSHookEvent

REF = "#/components/schemas/{model}"


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict[str, Any]:
    return _json(description, {"$ref": REF.format(model="Error")})


def _hook(summary: str, model: str, ok: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "operationId": summary.split(":")[0].strip().lower().replace(" ", "_"),
        "security": [{"token": []}, {"signature": []}],
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}}},
        "responses": {
            "200": _json(ok, {"$ref": REF.format(model="Outcome")}),
            "400": _err("the body is not JSON, or not a valid payload (the message names the fields)"),
            "401": _err(f"missing or wrong {TOKEN_HEADER} / {SIGNATURE_HEADER}"),
            **extra,
        },
    }}


def openapi_document() -> dict[str, Any]:
    _, top = models_json_schema([(LakeFSHookEvent, "validation"), (LabelStudioEvent, "validation")],
                                ref_template=REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    schemas["Error"] = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
    schemas["Outcome"] = {"type": "object", "properties": {
        "status": {"type": "string", "enum": ["emitted", "duplicate", "skipped", "ignored", "queued", "ok"]}},
        "additionalProperties": True}
    schemas["MergeVerdict"] = {"type": "object", "required": ["status", "message"], "properties": {
        "status": {"type": "string", "enum": ["ok", "blocked", "ignored"]}, "message": {"type": "string"},
        "checked": {"type": "array", "items": {"type": "string"}},
        "problems": {"type": "array", "items": {"type": "string"}}}}
    unavailable = {"503": _err("Prefect did not accept the event; the sender retries (the ledger keeps the key)")}
    return {
        "openapi": "3.1.0",
        "info": {"title": "lakeloop bridge", "version": "1",
                 "description": "lakeFS action webhooks and Label Studio webhooks in, Prefect events out."},
        "paths": {
            "/health": {"get": {"summary": "liveness and counters", "operationId": "health", "security": [],
                                "responses": {"200": _json("up", {"type": "object"})}}},
            "/lakefs/events": _hook("lakefs events: post-commit / post-merge to a Prefect event", "LakeFSHookEvent",
                                    "emitted, duplicate, skipped or ignored", unavailable),
            "/lakefs/pre-merge": _hook(
                "lakefs pre-merge: the merge gate", "LakeFSHookEvent", "ignored (not a pre-merge event)",
                {"200": _json("the merge may go on", {"$ref": REF.format(model="MergeVerdict")}),
                 "400": _json("malformed, or the merge is blocked (the message says why)",
                              {"oneOf": [{"$ref": REF.format(model="Error")},
                                         {"$ref": REF.format(model="MergeVerdict")}]}),
                 "500": _err("the gate itself failed (a defect): the merge stays blocked")}),
            "/label-studio/events": _hook("label studio events: answers to labels.ready", "LabelStudioEvent",
                                          "emitted, queued, duplicate or ignored", unavailable),
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": TOKEN_HEADER},
                "signature": {"type": "apiKey", "in": "header", "name": SIGNATURE_HEADER,
                              "description": "sha256=<hex HMAC-SHA256 of the body with the shared secret>"},
            },
        },
    }
