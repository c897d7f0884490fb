"""A typed Python client for the AgentGate HTTP API; the CLI uses it for everything."""

from __future__ import annotations

from typing import Any

import httpx


class ApiRequestError(Exception):
    """The API answered with an error envelope (or could not be reached: status 0)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


class AgentGateClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentGateClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiRequestError(
                0, "unreachable", f"cannot reach the AgentGate API at {self._http.base_url}: {exc}"
            ) from exc
        if response.status_code >= 400:
            try:
                err = response.json()["error"]
                raise ApiRequestError(response.status_code, err["code"], err["message"], err.get("details"))
            except (ValueError, KeyError, TypeError):
                raise ApiRequestError(response.status_code, "http_error", response.text[:500]) from None
        return response.json() if response.content else None

    def submit(self, work_order: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/api/v1/work-orders", json=work_order)

    def get(self, work_order_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/work-orders/{work_order_id}")

    def list(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return self._call("GET", "/api/v1/work-orders", params=params)["items"]

    def cancel(self, work_order_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/api/v1/work-orders/{work_order_id}")

    def stop(self, work_order_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/work-orders/{work_order_id}/stop")

    def kill(self, work_order_id: str, reason: str) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/work-orders/{work_order_id}/kill", json={"reason": reason})

    def rerun(self, work_order_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/work-orders/{work_order_id}/runs")

    def ready(self) -> dict[str, Any]:
        return self._call("GET", "/health/ready")
