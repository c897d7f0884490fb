"""What every activity needs, built once per worker and shared by the activity classes."""

from __future__ import annotations

from dataclasses import dataclass

from agentgate.artifacts import ArtifactStore
from agentgate.config import Settings


@dataclass
class ActivityDeps:
    settings: Settings
    store: ArtifactStore

    @classmethod
    def from_settings(cls, settings: Settings) -> ActivityDeps:
        settings.runs_dir.mkdir(parents=True, exist_ok=True)
        settings.workspaces_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings=settings, store=ArtifactStore(settings.runs_dir))
