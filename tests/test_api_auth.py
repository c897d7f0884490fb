"""The API key over real HTTP: every mutating route, whichever router added it, needs it; reads stay open."""

from __future__ import annotations

import asyncio
import re

import pytest

from agentgate.client import AgentGateClient, ApiRequestError
from api.auth import key_matches, presented_keys
from tests.conftest import running_api

KEY = "s3cret-key-for-tests"
MUTATING = ("post", "put", "patch", "delete")
MISSING_ID = "wo_0000000000nothere"


def _fill(path: str) -> str:
    """A concrete URL for a templated path: ids that exist nowhere, so an authorized call cannot change anything."""
    return re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: MISSING_ID if "id" in m[1] else "nothing-here", path)


def _assert_401(response, *, invalid: bool) -> None:
    assert response.status_code == 401, (response.request.method, response.request.url, response.text)
    body = response.json()
    assert body["error"]["code"] == "unauthorized" and body["request_id"]
    assert response.headers["x-request-id"] == body["request_id"]
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    assert ('error="invalid_token"' in challenge) is invalid


async def test_every_mutating_route_needs_the_key(dev_env, settings):
    settings.api_key = KEY
    async with running_api(dev_env, settings) as http:
        schema = (await http.get("/openapi.json")).json()  # reads stay open: the schema too
        mutating = [(m, p) for p, item in schema["paths"].items() for m in item if m in MUTATING]
        assert ("post", "/api/v1/work-orders") in mutating and ("delete", "/api/v1/work-orders/{work_order_id}") in (
            mutating
        )
        for method, path in mutating:
            url = _fill(path)
            # The key is checked before the body is even parsed: a garbage body is still a 401.
            _assert_401(await http.request(method, url, content=b"{not json"), invalid=False)
            _assert_401(await http.request(method, url, headers={"Authorization": "Bearer wrong"}), invalid=True)
            _assert_401(await http.request(method, url, headers={"X-API-Key": "wrong"}), invalid=True)
            _assert_401(await http.request(method, url, headers={"Authorization": f"Basic {KEY}"}), invalid=False)
            # The OpenAPI document says so, so generated clients send the key.
            assert schema["paths"][path][method]["security"] == [{"bearerAuth": []}, {"apiKeyHeader": []}]
            # With the key the request gets past the check. Only where it cannot change anything: a body that
            # is not JSON (422 before the route runs) or an id that exists nowhere (404).
            operation = schema["paths"][path][method]
            if "requestBody" not in operation and url == path:
                continue
            for headers in ({"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"}, {"X-API-Key": KEY}):
                headers["Content-Type"] = "application/json"
                response = await http.request(method, url, headers=headers, content=b"{not json")
                assert response.status_code in (404, 409, 422), (method, path, response.text)
        assert set(schema["components"]["securitySchemes"]) == {"bearerAuth", "apiKeyHeader"}

        # A route nobody has written yet is covered too (the middleware is keyed on the method, not the route).
        _assert_401(await http.post("/api/v1/not-a-route-yet"), invalid=False)
        unknown = await http.post("/api/v1/not-a-route-yet", headers={"X-API-Key": KEY})
        assert unknown.status_code in (404, 405) and unknown.json()["error"]["code"] in (
            "not_found",
            "method_not_allowed",
        )

        # Non-ASCII credentials are just wrong, never a crash.
        weird = await http.post("/api/v1/work-orders", headers={"Authorization": "Bearer ключ".encode()})
        _assert_401(weird, invalid=True)

        # Reads stay open without the key.
        assert (await http.get("/api/v1/work-orders")).status_code == 200
        assert (await http.get(f"/api/v1/work-orders/{MISSING_ID}")).status_code == 404
        assert (await http.get("/health/live")).status_code == 200
        assert (await http.head("/health/live")).status_code in (200, 405)


async def test_no_key_configured_means_no_check(dev_env, settings):
    """The single-machine default: the dashboard's submit and cancel buttons work without any key."""
    assert not settings.api_key
    async with running_api(dev_env, settings) as http:
        cancel = await http.delete(f"/api/v1/work-orders/{MISSING_ID}")
        assert cancel.status_code == 404 and cancel.json()["error"]["code"] == "not_found"
        submit = await http.post("/api/v1/work-orders", json={"task_prompt": "x"})
        assert submit.status_code == 422  # validated, not refused
        schema = (await http.get("/openapi.json")).json()
        assert "securitySchemes" not in schema.get("components", {})
        assert "security" not in schema["paths"]["/api/v1/work-orders"]["post"]


async def test_protect_reads_guards_api_reads_but_not_probes(dev_env, settings):
    settings.api_key, settings.api_key_protect_reads = KEY, True
    async with running_api(dev_env, settings) as http:
        _assert_401(await http.get("/api/v1/work-orders"), invalid=False)
        _assert_401(await http.get(f"/api/v1/work-orders/{MISSING_ID}/events"), invalid=False)
        assert (await http.get("/api/v1/work-orders", headers={"X-API-Key": KEY})).status_code == 200
        assert (await http.get("/health/live")).status_code == 200
        assert (await http.get("/health/ready")).status_code == 200
        assert (await http.get("/openapi.json")).status_code == 200
        schema = (await http.get("/openapi.json")).json()
        assert schema["paths"]["/api/v1/work-orders"]["get"]["security"]


async def test_the_typed_client_and_so_the_cli_send_the_key(dev_env, settings):
    settings.api_key = KEY
    async with running_api(dev_env, settings) as http:
        base = str(http.base_url)

        def cancel_with(key: str | None) -> ApiRequestError:
            with AgentGateClient(base, api_key=key) as client, pytest.raises(ApiRequestError) as info:
                client.cancel(MISSING_ID)
            return info.value

        assert (await asyncio.to_thread(cancel_with, KEY)).status == 404
        refused = await asyncio.to_thread(cancel_with, None)
        assert refused.status == 401 and refused.code == "unauthorized" and "Authorization: Bearer" in refused.message
        assert (await asyncio.to_thread(cancel_with, "not-it")).status == 401


def test_key_parsing_and_comparison():
    headers = [(b"authorization", b"Bearer  abc "), (b"x-api-key", b"def"), (b"authorization", b"Basic abc")]
    assert presented_keys(headers) == [b"abc", b"def"]
    assert key_matches("def", presented_keys(headers)) and not key_matches("xyz", presented_keys(headers))
    assert not key_matches("abc", []) and not key_matches("abc", [b""])
    assert key_matches("ключ", ["ключ".encode()])
