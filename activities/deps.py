"""What every activity needs, built once per worker and shared by the activity classes."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import ValidationError
from temporalio import activity

from agentgate.artifacts import ArtifactStore, default_spill_dirs
from agentgate.config import Settings
from agentgate.models import RunContext, WorkOrder

log = logging.getLogger(__name__)

WORK_ORDER_REF = "work-order.json"


@dataclass
class ActivityDeps:
    settings: Settings
    store: ArtifactStore

    @classmethod
    def from_settings(cls, settings: Settings) -> ActivityDeps:
        settings.runs_dir.mkdir(parents=True, exist_ok=True)
        settings.workspaces_dir.mkdir(parents=True, exist_ok=True)
        # A full artifact store must not cost the run its work order, prompt or feedback (`keep_text`).
        spill = [settings.home_dir / "spill", *default_spill_dirs()]
        return cls(settings=settings, store=ArtifactStore(settings.runs_dir, spill_dirs=spill))

    def work_order(self, ctx: RunContext, given: WorkOrder | None = None) -> WorkOrder:
        """The run's work order: from the input when an older history carried it, else work-order.json."""
        if given is not None:
            return given
        return WorkOrder.model_validate_json(self.store.read_text(ctx, WORK_ORDER_REF))

    async def load_work_order(self, ctx: RunContext, given: WorkOrder | None = None) -> WorkOrder:
        """`work_order`, but never lost to a full or damaged store: work-order.json where prepare kept it
        (the run folder or a spill folder), else the run's own input in Temporal's history."""
        if given is not None:
            return given
        path = self.store.locate(ctx, WORK_ORDER_REF)
        if path is not None:
            try:
                return WorkOrder.model_validate_json(path.read_text(encoding="utf-8"))
            except (OSError, ValueError, ValidationError) as exc:
                log.warning("%s of run %s cannot be read (%s): using the run's input", path, ctx.run_id, exc)
        return await order_from_history(ctx)


async def order_from_history(ctx: RunContext) -> WorkOrder:
    """The WorkOrder this run was started with: the input of its first history event."""
    client = activity.client()
    handle = client.get_workflow_handle(ctx.work_order_id, run_id=ctx.run_id)
    async for event in handle.fetch_history_events():
        attrs = event.workflow_execution_started_event_attributes
        [order] = await client.data_converter.decode(attrs.input.payloads, [WorkOrder])
        return order
    raise RuntimeError(f"run {ctx.run_id} of {ctx.work_order_id} has no history")
