"""What every activity needs, built once per worker and shared by the activity classes."""

from __future__ import annotations

from dataclasses import dataclass

from agentgate.artifacts import ArtifactStore
from agentgate.config import Settings
from agentgate.models import RunContext, WorkOrder

WORK_ORDER_REF = "work-order.json"


@dataclass
class ActivityDeps:
    settings: Settings
    store: ArtifactStore

    @classmethod
    def from_settings(cls, settings: Settings) -> ActivityDeps:
        settings.runs_dir.mkdir(parents=True, exist_ok=True)
        settings.workspaces_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings=settings, store=ArtifactStore(settings.runs_dir))

    def work_order(self, ctx: RunContext, given: WorkOrder | None = None) -> WorkOrder:
        """The run's work order: from the input when an older history carried it, else work-order.json."""
        if given is not None:
            return given
        return WorkOrder.model_validate_json(self.store.read_text(ctx, WORK_ORDER_REF))
