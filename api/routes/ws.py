"""A run's live progress over WebSocket: the same typed events and sequence numbers as the SSE stream.

Two endpoints, one frame vocabulary (JSON text frames, each with a `kind`):

- `/api/v1/work-orders/{id}/ws?after=N&filter=tool_calls,output&run_id=…` streams one run: replay
  of the events with `seq > after`, then live until the run ends, then an `end` frame and a normal
  close (1000). A client that lost its connection reconnects with `after=<last seq it saw>`.
- `/ws` multiplexes: the client sends `{"op": "subscribe", "work_order_id": …, "after": N,
  "filters": [...]}` and `{"op": "unsubscribe", "work_order_id": …}` (and `{"op": "ping"}`), and
  receives the frames of every subscribed order, each naming its order. A bad subscription gets an
  `error` frame and leaves the connection and the other subscriptions alone.

Server frames: `subscribed`, `event` (`seq` plus the events.jsonl record in `event`), `end` (the
run ended or a replay is complete; `last_seq`, and the run's `status` when its final event was
seen), `unsubscribed`, `pong`, and `error` (`{code, message, details}`, the HTTP error envelope's
body). Close codes: 1000 the stream is complete, 4401 the API key is missing, 4404 unknown work
order, 4422 invalid query parameters, 1011 an unexpected server error.

Like SSE, the source is the run's events.jsonl (`follow_events`), so this works when API and
worker are separate processes and after an API restart; filters only drop frames, they never
change the numbering.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from agentgate.artifacts import ArtifactStore
from agentgate.observability.emitter import EVENTS_REF
from agentgate.observability.events import STREAM_FILTERS, event_category
from agentgate.observability.tail import follow_events, read_events
from api.errors import ApiError, field_error
from api.routes.events import STOP_CHECK_SECONDS, _stop_check, resolve_run

log = logging.getLogger(__name__)
router = APIRouter(tags=["events"])

CLOSE_DONE = 1000
CLOSE_INTERNAL = 1011
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_INVALID = 4422
_CLOSE_FOR_STATUS = {401: CLOSE_UNAUTHORIZED, 404: CLOSE_NOT_FOUND, 422: CLOSE_INVALID}


def _error_frame(exc: ApiError, work_order_id: str | None = None) -> dict[str, Any]:
    error = {"code": exc.code, "message": exc.message, "details": exc.details}
    frame: dict[str, Any] = {"kind": "error", "error": error}
    if work_order_id is not None:
        frame["work_order_id"] = work_order_id
    return frame


def _filters(values: Iterable[str], field: str) -> frozenset[str]:
    """`tool_calls,output` (or a list of names) → the set; empty means everything."""
    names = {part.strip() for value in values for part in str(value).split(",") if part.strip()}
    unknown = sorted(names - set(STREAM_FILTERS))
    if unknown:
        raise field_error(field, f"unknown filter {', '.join(unknown)}; use any of {', '.join(STREAM_FILTERS)}")
    return frozenset(names)


def _after(value: Any, field: str) -> int:
    if value is None or value == "":
        return 0
    try:
        after = int(value)
    except (TypeError, ValueError):
        raise field_error(field, "must be the integer seq of the last event received") from None
    if isinstance(value, bool) or after < 0:
        raise field_error(field, "must be a non-negative integer")
    return after


def _flag(value: Any, field: str, default: bool = True) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise field_error(field, "must be true or false")


class _Connection:
    """One WebSocket: serialized sends, and one streaming task per subscribed work order."""

    def __init__(self, websocket: WebSocket) -> None:
        self.ws = websocket
        self.store = ArtifactStore(websocket.app.state.settings.runs_dir)
        self._send_lock = asyncio.Lock()
        self.tasks: dict[str, asyncio.Task] = {}

    async def send(self, frame: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.ws.send_text(json.dumps(frame, separators=(",", ":"), default=str))

    async def close(self, code: int, reason: str = "") -> None:
        if self.ws.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await self.ws.close(code=code, reason=reason[:120])

    def authorized(self) -> bool:
        """With `AGENTGATE_API_KEY_PROTECT_READS`, streams need the key like any read under /api/."""
        settings = self.ws.app.state.settings
        if not settings.api_key or not getattr(settings, "api_key_protect_reads", False):
            return True
        from api.auth import key_matches, presented_keys

        return key_matches(settings.api_key, presented_keys(self.ws.scope.get("headers") or []))

    async def subscribe(
        self, work_order_id: str, *, after: int, run_id: str | None, filters: frozenset[str], follow: bool
    ) -> asyncio.Task:
        """Resolve the run (ApiError when unknown), say `subscribed`, and start streaming it."""
        ctx, client = await resolve_run(self.ws, self.store, work_order_id, run_id)  # type: ignore[arg-type]
        await self.unsubscribe(work_order_id, quiet=True)  # a second subscribe replaces the first
        await self.send({"kind": "subscribed", "work_order_id": work_order_id, "run_id": ctx.run_id,
                         "after": after, "filters": sorted(filters) or list(STREAM_FILTERS)})  # fmt: skip
        task = asyncio.create_task(self._stream(ctx, client, after, filters, follow))
        self.tasks[work_order_id] = task
        task.add_done_callback(lambda t, w=work_order_id: self._forget(w, t))
        return task

    def _forget(self, work_order_id: str, task: asyncio.Task) -> None:
        if self.tasks.get(work_order_id) is task:
            del self.tasks[work_order_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("websocket stream of %s failed", work_order_id, exc_info=task.exception())

    async def unsubscribe(self, work_order_id: str, quiet: bool = False) -> bool:
        task = self.tasks.pop(work_order_id, None)
        if task is None:
            return False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if not quiet:
            await self.send({"kind": "unsubscribed", "work_order_id": work_order_id})
        return True

    async def _stream(self, ctx, client, after: int, filters: frozenset[str], follow: bool) -> None:
        path = self.store.path(ctx, EVENTS_REF)
        if follow:
            source = follow_events(path, after_seq=after, should_stop=_stop_check(client, self.store, ctx),
                                   stop_check_interval=STOP_CHECK_SECONDS)  # fmt: skip
        else:
            source = _replay(path, after)
        last, status = after, None
        try:
            async for event in source:
                last = event.seq
                if event.terminal:
                    status = getattr(event, "status", None) or event.type
                if filters and event_category(event.type) not in filters:
                    continue
                await self.send({"kind": "event", "work_order_id": ctx.work_order_id, "seq": event.seq,
                                 "event": event.to_record()})  # fmt: skip
            end: dict[str, Any] = {"kind": "end", "work_order_id": ctx.work_order_id, "run_id": ctx.run_id,
                                   "last_seq": last, "reason": "run_ended" if follow else "replayed"}  # fmt: skip
            if status is not None:
                end["status"] = status
            await self.send(end)
        except (WebSocketDisconnect, OSError):
            return  # the client went away; it resumes with after=<its last seq>

    async def shutdown(self) -> None:
        for work_order_id in list(self.tasks):
            await self.unsubscribe(work_order_id, quiet=True)


async def _replay(path, after: int):
    for event in read_events(path, after):
        yield event


async def _refuse(conn: _Connection, exc: ApiError) -> None:
    await conn.send(_error_frame(exc))
    await conn.close(_CLOSE_FOR_STATUS.get(exc.status, CLOSE_INTERNAL), exc.code)


_UNAUTHORIZED = ApiError(401, "unauthorized", "this stream needs the API key: send Authorization: Bearer <key>")


@router.websocket("/api/v1/work-orders/{work_order_id}/ws")
async def work_order_ws(websocket: WebSocket, work_order_id: str) -> None:
    """One run's events: replay from `after`, live until the run ends, then `end` and close 1000."""
    await websocket.accept()
    conn = _Connection(websocket)
    if not conn.authorized():
        await _refuse(conn, _UNAUTHORIZED)
        return
    query = websocket.query_params
    try:
        after = _after(query.get("after"), "query.after")
        filters = _filters(query.getlist("filter") + query.getlist("filters"), "query.filter")
        follow = _flag(query.get("follow"), "query.follow")
        run_id = query.get("run_id") or None
        stream = await conn.subscribe(work_order_id, after=after, run_id=run_id, filters=filters, follow=follow)
    except ApiError as exc:
        await _refuse(conn, exc)
        return
    reader = asyncio.create_task(_drain(websocket))
    try:
        await asyncio.wait({stream, reader}, return_when=asyncio.FIRST_COMPLETED)
        if stream.done() and not stream.cancelled():
            failed = stream.exception() is not None
            await conn.close(CLOSE_INTERNAL if failed else CLOSE_DONE, "error" if failed else "run ended")
    finally:
        reader.cancel()
        await conn.shutdown()


async def _drain(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, to notice when it goes away."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message.get("type") == "websocket.disconnect":
                return


@router.websocket("/ws")
async def multiplexed_ws(websocket: WebSocket) -> None:
    """Subscribe and unsubscribe to any number of work orders over one connection."""
    await websocket.accept()
    conn = _Connection(websocket)
    if not conn.authorized():
        await _refuse(conn, _UNAUTHORIZED)
        return
    try:
        while True:
            try:
                text = await websocket.receive_text()
            except (WebSocketDisconnect, RuntimeError):
                return
            await _handle(conn, text)
    finally:
        await conn.shutdown()


async def _handle(conn: _Connection, text: str) -> None:
    try:
        message = json.loads(text)
    except ValueError:
        message = None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        await conn.send(_error_frame(field_error("message", 'must be a JSON object with "op"')))
        return
    op = message["op"]
    work_order_id = message.get("work_order_id")
    if op == "ping":
        await conn.send({"kind": "pong"})
        return
    if op not in ("subscribe", "unsubscribe"):
        await conn.send(_error_frame(field_error("message.op", "must be subscribe, unsubscribe or ping")))
        return
    if not isinstance(work_order_id, str) or not work_order_id:
        await conn.send(_error_frame(field_error("message.work_order_id", "is required")))
        return
    if op == "unsubscribe":
        if not await conn.unsubscribe(work_order_id):
            error = ApiError(404, "not_subscribed", f"not subscribed to {work_order_id}")
            await conn.send(_error_frame(error, work_order_id))
        return
    try:
        raw_filters = message.get("filters") or []
        if isinstance(raw_filters, str):
            raw_filters = [raw_filters]
        if not isinstance(raw_filters, list):
            raise field_error("message.filters", f"must be a list of {', '.join(STREAM_FILTERS)}")
        run_id = message.get("run_id")
        if run_id is not None and not isinstance(run_id, str):
            raise field_error("message.run_id", "must be a string")
        await conn.subscribe(
            work_order_id,
            after=_after(message.get("after"), "message.after"),
            run_id=run_id,
            filters=_filters(raw_filters, "message.filters"),
            follow=_flag(message.get("follow"), "message.follow"),
        )
    except ApiError as exc:
        await conn.send(_error_frame(exc, work_order_id))
