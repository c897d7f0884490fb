"""A run's live progress over SSE, and the files of its run folder.

The worker appends `events.jsonl`; the API only reads it (`follow_events`), so the stream
works when API and worker are separate processes and survives an API restart: a client
reconnects with `Last-Event-ID` (the last `seq` it saw) and gets exactly what came after.
Temporal is asked which run is the latest and whether it is still open; when Temporal
cannot answer, the artifact store on disk is enough to replay and to tell that a run ended.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import FileResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from agentgate.artifacts import ArtifactError, ArtifactStore
from agentgate.models import WORK_ORDER_ID_PATTERN, RunContext
from agentgate.observability.emitter import EVENTS_REF
from agentgate.observability.tail import follow_events, read_events
from api.deps import SettingsDep, StoreDep
from api.errors import ApiError, field_error

router = APIRouter(prefix="/api/v1/work-orders", tags=["events"])

_RUN_ID = re.compile(r"^[A-Za-z0-9-]{1,80}$")
_TERMINAL_STATUSES = {"succeeded", "failed", "canceled"}
# How often an idle stream asks Temporal whether the run is still open; a worker that died before
# writing its final event must not hold the stream open forever.
STOP_CHECK_SECONDS = 2.0
PING_SECONDS = 15


def _not_found(work_order_id: str) -> ApiError:
    return ApiError(404, "not_found", f"work order {work_order_id} does not exist")


async def _client_or_none(request: Request) -> Client | None:
    """The Temporal client when reachable; replay from disk must not depend on it."""
    try:
        return await asyncio.wait_for(request.app.state.temporal.get(), timeout=3)
    except Exception:
        return None


def _newest_run_on_disk(store: ArtifactStore, work_order_id: str) -> str | None:
    folder = store.work_order_dir(work_order_id)
    try:
        runs = [p for p in folder.iterdir() if p.is_dir() and _RUN_ID.match(p.name)]
    except OSError:
        return None
    if not runs:
        return None

    def started(p: Path) -> float:
        for name in (EVENTS_REF, "run.json"):
            try:
                return (p / name).stat().st_mtime
            except OSError:
                continue
        return p.stat().st_mtime

    return max(runs, key=started).name


async def resolve_run(
    request: Request, store: ArtifactStore, work_order_id: str, run_id: str | None
) -> tuple[RunContext, Client | None]:
    """The run to read: the one asked for, else Temporal's latest run, else the newest folder on disk."""
    if not re.match(WORK_ORDER_ID_PATTERN, work_order_id):
        raise _not_found(work_order_id)  # also keeps the id from naming a path outside the store
    if run_id is not None and not _RUN_ID.match(run_id):
        raise field_error("query.run_id", "must be a Temporal run id")
    client = await _client_or_none(request)
    if run_id is None and client is not None:
        try:
            run_id = (await client.get_workflow_handle(work_order_id).describe()).run_id
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                client = None  # Temporal is unwell: fall back to the disk
        except Exception:
            client = None
    if run_id is None:
        run_id = _newest_run_on_disk(store, work_order_id)
    if run_id is None:
        raise _not_found(work_order_id)
    return RunContext(work_order_id=work_order_id, run_id=run_id), client


def _run_ended_on_disk(store: ArtifactStore, ctx: RunContext) -> bool:
    try:
        return json.loads(store.read_text(ctx, "run.json")).get("status") in _TERMINAL_STATUSES
    except (OSError, ValueError, AttributeError):
        return False


def _stop_check(client: Client | None, store: ArtifactStore, ctx: RunContext):
    async def closed() -> bool:
        if client is not None:
            try:
                desc = await client.get_workflow_handle(ctx.work_order_id, run_id=ctx.run_id).describe()
                return desc.status != WorkflowExecutionStatus.RUNNING
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    return True
            except Exception:
                pass  # Temporal unreachable for a moment: ask the disk instead
        return _run_ended_on_disk(store, ctx)

    return closed


def _resume_point(last_event_id: str | None, after: int | None) -> int:
    start = after or 0
    if last_event_id is not None and last_event_id.strip():
        try:
            start = max(start, int(last_event_id.strip()))
        except ValueError:
            raise field_error("header.last-event-id", "must be the integer seq of the last event received") from None
        if start < 0:
            raise field_error("header.last-event-id", "must not be negative")
    return start


@router.get("/{work_order_id}/events", response_class=EventSourceResponse)
async def events(
    work_order_id: str,
    request: Request,
    store: StoreDep,
    last_event_id: Annotated[str | None, Header(max_length=40)] = None,
    after: Annotated[int | None, Query(ge=0, description="Replay only the events with seq > after.")] = None,
    run_id: Annotated[str | None, Query(max_length=80)] = None,
    follow: Annotated[bool, Query(description="false: replay what is recorded so far, then end.")] = True,
) -> EventSourceResponse:
    """Server-sent events of the latest run: replay, then live until the run ends.

    `id:` is the event's `seq`, so a reconnecting EventSource (or any client sending
    `Last-Event-ID`) resumes without loss or repeats; `event:` is its type, `data:` the JSON line.
    """
    ctx, client = await resolve_run(request, store, work_order_id, run_id)
    start = _resume_point(last_event_id, after)
    path = store.path(ctx, EVENTS_REF)

    async def stream():
        if follow:
            stop = _stop_check(client, store, ctx)
            source = follow_events(path, after_seq=start, should_stop=stop, stop_check_interval=STOP_CHECK_SECONDS)
        else:
            source = _replay(path, start)
        first = True
        async for event in source:
            retry = 2000 if first else None
            yield ServerSentEvent(data=event.to_json(), id=str(event.seq), event=event.type, retry=retry, sep="\n")
            first = False

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-AgentGate-Run-Id": ctx.run_id}
    return EventSourceResponse(stream(), ping=PING_SECONDS, headers=headers, sep="\n")


async def _replay(path: Path, after: int):
    for event in read_events(path, after):
        yield event


@router.get("/{work_order_id}/artifacts")
async def list_artifacts(
    work_order_id: str,
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    run_id: Annotated[str | None, Query(max_length=80)] = None,
) -> dict:
    """The files of the run folder, so a page can link every one of them."""
    ctx, _ = await resolve_run(request, store, work_order_id, run_id)
    root = store.run_dir(ctx)
    items = []
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if not path.is_file() or path.is_symlink() or any(part.startswith(".") for part in rel.split("/")):
                continue
            st = path.stat()
            items.append({"name": rel, "bytes": st.st_size, "url": _artifact_url(ctx, rel)})
    return {"work_order_id": ctx.work_order_id, "run_id": ctx.run_id, "folder": str(root), "items": items}


def _artifact_url(ctx: RunContext, name: str) -> str:
    return f"/api/v1/work-orders/{ctx.work_order_id}/artifacts/{name}?run_id={ctx.run_id}"


@router.get("/{work_order_id}/artifacts/{name:path}")
async def artifact(
    work_order_id: str,
    name: str,
    request: Request,
    store: StoreDep,
    run_id: Annotated[str | None, Query(max_length=80)] = None,
) -> FileResponse:
    """One file of the run folder, as text or JSON: never a name outside the folder, never rendered as HTML."""
    ctx, _ = await resolve_run(request, store, work_order_id, run_id)
    missing = ApiError(404, "not_found", f"no artifact {name!r} in run {ctx.run_id} of {work_order_id}")
    if any(part.startswith(".") for part in name.split("/")):
        raise missing
    try:
        target = store.path(ctx, name)
    except ArtifactError:
        raise missing from None
    root = store.run_dir(ctx).resolve()
    try:
        resolved = target.resolve(strict=True)
    except OSError:
        raise missing from None
    if not resolved.is_relative_to(root) or not resolved.is_file():
        raise missing
    media = "application/json" if resolved.suffix == ".json" else "text/plain; charset=utf-8"
    headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox", "Cache-Control": "no-cache"}
    return FileResponse(resolved, media_type=media, headers=headers, content_disposition_type="inline")
