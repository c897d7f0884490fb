"""The FastAPI application: thin routers over Temporal, one error envelope."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from temporalio.client import Client

from agentgate import storage_check
from agentgate.config import Settings, get_settings
from agentgate.observability.metrics import mount_metrics
from agentgate.observability.tracing import temporal_interceptors
from agentgate.temporal_client import connect
from api.auth import install_api_key
from api.errors import install_error_handlers, request_id
from api.openapi import install_openapi
from api.routes import admin, dashboard, events, health, profiles, queue, rewind, work_orders, ws


class TemporalHolder:
    """Connects lazily and reconnects after a failure, so the API starts before Temporal is up."""

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self.settings = settings
        self.client = client
        self._lock = asyncio.Lock()

    async def get(self) -> Client:
        if self.client is not None:
            return self.client
        async with self._lock:
            if self.client is None:
                self.client = await connect(self.settings, interceptors=temporal_interceptors("agentgate-api"))
        return self.client


def create_app(settings: Settings | None = None, client: Client | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Quarantines corrupt JSON records in a thread while the API already serves (never fatal).
        async with storage_check.in_background(settings, "api") as check:
            app.state.storage_check = check
            yield

    app = FastAPI(
        title="AgentGate",
        version="0.1.0",
        description="Runs AI coding agents against real repositories until their work is verified, on Temporal.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.temporal = TemporalHolder(settings, client)
    install_error_handlers(app)
    mount_metrics(app)
    install_api_key(app, settings)  # inside the request-id middleware below, so a 401 carries the request id
    install_openapi(app, settings)

    @app.middleware("http")
    async def _request_id(request: Request, call_next):
        rid = request_id(request)
        response = await call_next(request)
        response.headers.setdefault("x-request-id", rid)
        return response

    app.include_router(health.router)
    app.include_router(admin.router)  # before work_orders: POST /work-orders/purge is not an id
    app.include_router(work_orders.router)
    app.include_router(rewind.router)
    app.include_router(profiles.router)
    app.include_router(queue.router)
    app.include_router(events.router)
    app.include_router(ws.router)
    app.include_router(dashboard.router)
    return app
