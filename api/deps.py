"""Dependencies of the routes: settings, the Temporal client, the artifact store."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from temporalio.client import Client

from agentgate.artifacts import ArtifactStore
from agentgate.config import Settings
from api.errors import ApiError


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_client(request: Request) -> Client:
    holder = request.app.state.temporal
    try:
        return await holder.get()
    except Exception as exc:
        raise ApiError(503, "temporal_unavailable", f"Temporal is not reachable: {exc}") from exc


def get_store(request: Request) -> ArtifactStore:
    return ArtifactStore(request.app.state.settings.runs_dir)


SettingsDep = Annotated[Settings, Depends(get_settings)]
ClientDep = Annotated[Client, Depends(get_client)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
