"""The FastAPI application: thin routers over Temporal, one error envelope."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from temporalio.client import Client

from agentgate.config import Settings, get_settings
from agentgate.observability.metrics import mount_metrics
from agentgate.observability.tracing import temporal_interceptors
from agentgate.temporal_client import connect
from api.errors import install_error_handlers, request_id
from api.routes import dashboard, events, health, work_orders


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

    @app.middleware("http")
    async def _request_id(request: Request, call_next):
        rid = request_id(request)
        response = await call_next(request)
        response.headers.setdefault("x-request-id", rid)
        return response

    app.include_router(health.router)
    app.include_router(work_orders.router)
    app.include_router(events.router)
    app.include_router(dashboard.router)
    return app
