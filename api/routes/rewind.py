"""Rewind: a new run of a finished work order, starting from one of its durable checkpoints.

`POST /api/v1/work-orders/{id}/rewind {to_iteration, agent?, run_id?}`: 201 with the new run's
id; 404 for an unknown order, 409 while a run of it is still going, 422 (naming the field)
for an iteration the run has no checkpoint of, or an unusable agent.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentgate import service
from agentgate.models import KNOWN_AGENT_DRIVERS, AgentSpec
from api.deps import ClientDep, SettingsDep
from api.errors import ApiError, field_error

router = APIRouter(prefix="/api/v1/work-orders", tags=["work-orders"])


class RewindRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_iteration: int = Field(ge=1, le=10_000, description="The iteration whose checkpoint the new run starts from.")
    agent: str | AgentSpec | None = Field(
        default=None, description="Another agent for the new run: a driver name, or a whole agent spec."
    )
    run_id: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F-]{36}$",
        description="The run to rewind, a Temporal run id (default: the latest run).",
    )

    @field_validator("agent")
    @classmethod
    def _known_driver(cls, value: str | AgentSpec | None) -> str | AgentSpec | None:
        if isinstance(value, str) and value not in KNOWN_AGENT_DRIVERS:
            raise ValueError(f"unknown agent {value!r}; choose one of: {', '.join(KNOWN_AGENT_DRIVERS)}")
        return value


@router.post("/{work_order_id}/rewind", status_code=201)
async def rewind(work_order_id: str, body: RewindRequest, client: ClientDep, settings: SettingsDep) -> dict:
    """Start a new run from checkpoint `to_iteration`; the earlier runs stay in history."""
    agent = body.agent.model_dump() if isinstance(body.agent, AgentSpec) else body.agent
    try:
        handle, order = await service.rewind_work_order(
            client, settings, work_order_id, body.to_iteration, agent=agent, run_id=body.run_id
        )
    except service.WorkOrderNotFound:
        raise ApiError(404, "not_found", f"work order {work_order_id} does not exist") from None
    except service.WorkOrderConflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except service.RewindError as exc:
        raise field_error(f"body.{exc.field}", str(exc)) from None
    desc = await handle.describe()
    assert order.resume_from is not None
    return {
        "id": work_order_id,
        "run_id": desc.run_id,
        "status": "queued",
        "resume_from": order.resume_from.model_dump(),
        "agent": order.agent.driver,
        "links": {
            "self": f"/api/v1/work-orders/{work_order_id}",
            "temporal_ui": settings.workflow_ui_url(work_order_id, desc.run_id),
        },
    }
