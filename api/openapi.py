"""The OpenAPI document tells the truth about errors and the API key.

FastAPI documents a 422 as `{detail: [...]}`, but every error here is the envelope of
api/errors.py. Clients generated from the schema, and schemathesis' response-conformance
checks (tests/test_api_fuzz.py), read this document: so every operation gets the envelope
for 422, 4XX and 5XX, and, when an API key is configured, the security requirement on the
methods api/auth.py guards.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.auth import MUTATING_METHODS, PROTECTED_READ_PREFIX

ERROR_ENVELOPE = {
    "type": "object",
    "title": "ErrorEnvelope",
    "required": ["error", "request_id"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "Stable machine-readable code, e.g. validation_error."},
                "message": {"type": "string", "description": "What was wrong and how to fix it; names the field."},
                "details": {"description": "For a 422: [{field, message, type}], one per problem."},
            },
        },
        "request_id": {"type": "string", "description": "Also in the x-request-id header; quote it in reports."},
    },
}
_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}
_ERROR_RESPONSES = {
    "422": "Validation error: the message and details name the field.",
    "4XX": "Client error (401 API key, 404 not found, 409 conflict, ...), in the error envelope.",
    "5XX": "Server-side failure (503: Temporal unreachable), in the error envelope.",
}
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "AGENTGATE_API_KEY as a Bearer token."},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "AGENTGATE_API_KEY."},
}


def document(app: FastAPI, schema: dict[str, Any], *, api_key_set: bool, protect_reads: bool) -> dict[str, Any]:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["ErrorEnvelope"] = ERROR_ENVELOPE
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)  # never sent: the envelope replaces FastAPI's default 422 body
    if api_key_set:
        components["securitySchemes"] = SECURITY_SCHEMES
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            for status, description in _ERROR_RESPONSES.items():
                responses[status] = {"description": description, "content": {"application/json": {"schema": _REF}}}
            guarded = method.upper() in MUTATING_METHODS or (protect_reads and path.startswith(PROTECTED_READ_PREFIX))
            if api_key_set and guarded:
                operation["security"] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
    return schema


def install_openapi(app: FastAPI, settings: Any) -> None:
    """Replace `app.openapi` with one that post-processes FastAPI's document once, then caches it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
                servers=app.servers,
            )
            app.openapi_schema = document(
                app,
                schema,
                api_key_set=bool(settings.api_key),
                protect_reads=bool(getattr(settings, "api_key_protect_reads", False)),
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
