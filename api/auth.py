"""The API key: one ASGI middleware guards every mutating request, whatever router serves it.

It is a middleware rather than a per-route dependency so that a router added tomorrow is
protected without anyone remembering to opt in, and so the key is checked before the body
is parsed (an unauthenticated caller learns nothing from validation errors).

Policy, when `AGENTGATE_API_KEY` is set:
- POST, PUT, PATCH and DELETE need `Authorization: Bearer <key>` or `X-API-Key: <key>`, on any path;
- reads (GET, HEAD, OPTIONS) stay open, unless `AGENTGATE_API_KEY_PROTECT_READS=true`, which
  also guards reads under `/api/` (health probes, `/metrics`, the dashboard's static shell and the
  OpenAPI document stay open so probes work and a browser can load the page that asks for the key).
With no key set nothing is checked: the single-machine default, where the dashboard's buttons just work.

The comparison is constant-time over the raw header bytes (hmac.compare_digest), so neither
timing nor a non-ASCII header can tell an attacker anything or crash the check.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import envelope

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PROTECTED_READ_PREFIX = "/api/"
REALM = 'Bearer realm="agentgate"'


def presented_keys(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """The credentials a request carries: the Bearer token and the X-API-Key value, as raw bytes."""
    keys = []
    for name, value in headers:
        lname = name.lower()
        if lname == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                keys.append(token.strip())
        elif lname == b"x-api-key" and value.strip():
            keys.append(value.strip())
    return keys


def key_matches(expected: str, presented: list[bytes]) -> bool:
    want = expected.encode("utf-8")
    # Compare every presented key (no early exit) so the answer's timing does not depend on which one was right.
    matched = False
    for key in presented:
        matched |= hmac.compare_digest(want, key)
    return matched


def needs_key(method: str, path: str, protect_reads: bool) -> bool:
    if method.upper() in MUTATING_METHODS:
        return True
    return protect_reads and path.startswith(PROTECTED_READ_PREFIX)


class ApiKeyMiddleware:
    """Answers 401 (the error envelope, `WWW-Authenticate: Bearer`) before the route runs."""

    def __init__(self, app: ASGIApp, settings: Any) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = self.settings.api_key
        if scope["type"] != "http" or not key:
            await self.app(scope, receive, send)
            return
        protect_reads = bool(getattr(self.settings, "api_key_protect_reads", False))
        if not needs_key(scope["method"], scope["path"], protect_reads):
            await self.app(scope, receive, send)
            return
        presented = presented_keys(scope.get("headers") or [])
        if key_matches(key, presented):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if presented:
            message = "the API key is not valid"
            challenge = f'{REALM}, error="invalid_token"'
        else:
            message = "this request needs the API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
            challenge = REALM
        response = envelope(request, 401, "unauthorized", message, headers={"WWW-Authenticate": challenge})
        await response(scope, receive, send)


def install_api_key(app: Any, settings: Any) -> None:
    app.add_middleware(ApiKeyMiddleware, settings=settings)
