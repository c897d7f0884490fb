"""Liveness (the process answers) and readiness (Temporal reachable, artifact store writable; worker polling
reported)."""

from __future__ import annotations

import asyncio
import tempfile

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from agentgate import queue
from api.deps import SettingsDep

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
async def live() -> dict:
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request, settings: SettingsDep) -> JSONResponse:
    checks: dict[str, dict] = {}
    try:
        client = await asyncio.wait_for(request.app.state.temporal.get(), timeout=3)
        await asyncio.wait_for(client.service_client.check_health(), timeout=3)
        checks["temporal"] = {"ok": True, "address": settings.temporal_address}
    except Exception as exc:
        checks["temporal"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    try:
        settings.runs_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=settings.runs_dir, prefix=".ready-"):
            pass
        checks["artifact_store"] = {"ok": True, "path": str(settings.runs_dir)}
    except OSError as exc:
        checks["artifact_store"] = {"ok": False, "error": str(exc)}
    if checks["temporal"]["ok"]:
        # Reported, not required: the API can accept orders (they queue) while no worker runs, so a
        # scaled-to-zero worker pool must not take the API out of its load balancer. /api/v1/queue/health
        # is the check that fails (503) without workers.
        try:
            found = await asyncio.wait_for(queue.pollers(client, settings, settings.task_queue), timeout=3)
            checks["worker_polling"] = {"ok": bool(found), "required": False, "task_queue": settings.task_queue,
                                        "pollers": len(found)}  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - a report, never a failure of the probe itself
            checks["worker_polling"] = {"ok": False, "required": False, "error": f"{type(exc).__name__}: {exc}"}
    ok = all(c["ok"] for c in checks.values() if c.get("required", True))
    return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)
