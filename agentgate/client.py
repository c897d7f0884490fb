"""A typed Python client for the AgentGate HTTP API; the CLI uses it for everything."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote

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

    def submit(self, work_order: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        """`{id, status, created, position, links}`; the same `idempotency_key` returns the same work order."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/api/v1/work-orders", json=work_order, headers=headers)

    def get(self, work_order_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/work-orders/{work_order_id}")

    def list(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return self._call("GET", "/api/v1/work-orders", params=params)["items"]

    def list_page(self, cursor: str | None = None, limit: int = 50, **filters: Any) -> dict[str, Any]:
        """One page, `{items, next_cursor}`; filters: status, agent, repository, label, created_after/before."""
        params = {k: v for k, v in {**filters, "cursor": cursor}.items() if v is not None}
        return self._call("GET", "/api/v1/work-orders", params={**params, "limit": limit})

    def cancel(self, work_order_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/api/v1/work-orders/{work_order_id}")

    def stop(self, work_order_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/work-orders/{work_order_id}/stop")

    def kill(self, work_order_id: str, reason: str) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/work-orders/{work_order_id}/kill", json={"reason": reason})

    def rerun(self, work_order_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/work-orders/{work_order_id}/runs")

    def rewind(
        self,
        work_order_id: str,
        to_iteration: int,
        agent: str | dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """A new run from checkpoint `to_iteration` (of the latest run, or `run_id`), optionally with another agent."""
        body: dict[str, Any] = {"to_iteration": to_iteration}
        if agent is not None:
            body["agent"] = agent
        if run_id is not None:
            body["run_id"] = run_id
        return self._call("POST", f"/api/v1/work-orders/{work_order_id}/rewind", json=body)

    def ready(self) -> dict[str, Any]:
        return self._call("GET", "/health/ready")

    # -- the global queue (docs/architecture.md, "The queue") --
    def queue_stats(self) -> dict[str, Any]:
        return self._call("GET", "/api/v1/queue/stats")

    def queue_snapshot(self) -> dict[str, Any]:
        """The stats plus every waiting order's position (`positions`) and the slot holders (`holders`)."""
        return self._call("GET", "/api/v1/queue")

    def queue_position(self, work_order_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/work-orders/{quote(work_order_id, safe='')}/position")

    def set_queue_capacity(self, capacity: int) -> dict[str, Any]:
        return self._call("PUT", "/api/v1/queue/capacity", json={"capacity": capacity})

    def queue_health(self) -> dict[str, Any]:
        """The health report: answered with 200 (healthy, degraded) or 503 (unhealthy), both returned here."""
        try:
            response = self._http.request("GET", "/api/v1/queue/health")
        except httpx.HTTPError as exc:
            message = f"cannot reach the AgentGate API at {self._http.base_url}: {exc}"
            raise ApiRequestError(0, "unreachable", message) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code in (200, 503) and isinstance(body, dict) and "status" in body:
            return body
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            raise ApiRequestError(response.status_code, error.get("code", "http_error"), error.get("message", ""))
        raise ApiRequestError(response.status_code, "http_error", response.text[:500])

    def purge(
        self,
        *,
        ids: list[str] | None = None,
        statuses: list[str] | None = None,
        older_than_days: float | None = None,
        dry_run: bool = True,
        force: bool = False,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """`POST /work-orders/purge`: a report per order; nothing is deleted unless `dry_run=False`."""
        body: dict[str, Any] = {"dry_run": dry_run, "force": force}
        for key, value in (("ids", ids), ("statuses", statuses), ("older_than_days", older_than_days)):
            if value is not None:
                body[key] = value
        if limit is not None:
            body["limit"] = limit
        return self._call("POST", "/api/v1/work-orders/purge", json=body)

    # -- harness profiles (docs/profiles.md) --
    def list_profiles(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/v1/profiles")["items"]

    def get_profile(self, name: str, resolve: bool = False) -> dict[str, Any]:
        params = {"resolve": "true"} if resolve else {}
        return self._call("GET", f"/api/v1/profiles/{quote(name, safe='')}", params=params)

    def create_profile(self, name: str, document: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/api/v1/profiles", json={**document, "name": name})

    def replace_profile(self, name: str, document: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", f"/api/v1/profiles/{quote(name, safe='')}", json=document)

    def delete_profile(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/api/v1/profiles/{quote(name, safe='')}")

    def validate_profile(self, name: str, document: dict[str, Any] | None = None) -> dict[str, Any]:
        """`{valid, chain, hash, resolved}` or `{valid: false, message, errors}`; a `document` is not stored."""
        kwargs = {"json": document} if document is not None else {}
        return self._call("POST", f"/api/v1/profiles/{quote(name, safe='')}/validate", **kwargs)

    # -- live events (docs/observability.md) --
    def artifact(self, work_order_id: str, name: str, run_id: str | None = None) -> Any:
        """One file of the run folder: parsed JSON for `.json`, else text."""
        path = f"/api/v1/work-orders/{quote(work_order_id, safe='')}/artifacts/{quote(name)}"
        if name.endswith(".json"):
            return self._call("GET", path, params={"run_id": run_id} if run_id else {})
        try:
            response = self._http.get(path, params={"run_id": run_id} if run_id else {})
        except httpx.HTTPError as exc:
            raise ApiRequestError(0, "unreachable", f"cannot reach the AgentGate API: {exc}") from exc
        if response.status_code >= 400:
            raise _api_error(response)
        return response.text

    def events(
        self,
        work_order_id: str,
        *,
        after: int = 0,
        run_id: str | None = None,
        reconnect_timeout: float = 60.0,
        on_reconnect: Callable[[int, str], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The run's events (the events.jsonl records, `seq` ascending) from the SSE stream, live until it ends.

        A dropped connection (API restart, proxy, network) is resumed with `Last-Event-ID` and
        the run id of the first connection, so no event is repeated or lost; `on_reconnect(last_seq,
        reason)` hears about each attempt. Ends after the run's terminal event, or when the stream
        ends and the work order's status is final. Raises `ApiRequestError`: at once for an unknown
        order or bad input (4xx) and when the first connection fails; status 0 when the API stays
        unreachable for `reconnect_timeout` seconds after a drop.
        """
        path = f"/api/v1/work-orders/{quote(work_order_id, safe='')}/events"
        last, pinned, connected = after, run_id, False
        failing_since: float | None = None
        delay = 0.2
        timeout = httpx.Timeout(10.0, read=45.0)  # the API pings every 15 s; silence beyond that is a dead link
        while True:
            headers = {"Accept": "text/event-stream", **({"Last-Event-ID": str(last)} if last else {})}
            params = {"run_id": pinned} if pinned else {}
            reason = "the stream ended before the run did"
            try:
                with self._http.stream("GET", path, params=params, headers=headers, timeout=timeout) as response:
                    if response.status_code >= 400:
                        response.read()
                        error = _api_error(response)
                        if response.status_code < 500:
                            raise error
                        raise httpx.TransportError(error.message)
                    pinned = pinned or response.headers.get("x-agentgate-run-id")
                    connected, failing_since, delay = True, None, 0.2
                    for record in iter_sse(response.iter_lines()):
                        seq = record.get("seq")
                        if isinstance(seq, int) and seq <= last:
                            continue  # already delivered before the reconnect
                        last = seq if isinstance(seq, int) else last
                        yield record
                        if record.get("type") in ("run_completed", "run_canceled", "run_failed"):
                            return
                try:
                    if self.get(work_order_id).get("status") in ("succeeded", "failed", "canceled"):
                        return  # closed without a final event (its worker died): the status is the answer
                except ApiRequestError as exc:
                    reason = exc.message
            except httpx.HTTPError as exc:
                if not connected:
                    raise ApiRequestError(
                        0, "unreachable", f"cannot reach the AgentGate API at {self._http.base_url}: {exc}"
                    ) from exc
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > reconnect_timeout:
                message = f"lost the event stream of {work_order_id} for {reconnect_timeout:.0f} s: {reason}"
                raise ApiRequestError(0, "unreachable", message)
            if on_reconnect is not None:
                on_reconnect(last, reason)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _api_error(response: httpx.Response) -> ApiRequestError:
    try:
        err = response.json()["error"]
        return ApiRequestError(response.status_code, err["code"], err["message"], err.get("details"))
    except (ValueError, KeyError, TypeError):
        return ApiRequestError(response.status_code, "http_error", response.text[:500])


def iter_sse(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Server-sent events → their JSON `data` objects (comments, `retry:` and pings skipped)."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                try:
                    record = json.loads("\n".join(data))
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    yield record
            data = []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            if name == "data":
                data.append(value[1:] if value.startswith(" ") else value)
