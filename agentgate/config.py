"""One settings class for every process (API, worker, CLI, embedded stack).

Values come from `AGENTGATE_*` environment variables (or a `.env` file); the defaults
describe the embedded single-machine stack.
"""

from __future__ import annotations

import socket
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTGATE_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path("~/.agentgate"), description="State root: runs, workspaces, Temporal DB, logs.")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    task_queue: str = "agentgate"

    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_key: str | None = None
    temporal_port: int = 7233
    ui_port: int = 8233

    host_id: str = Field(default_factory=socket.gethostname, description="Identity of this worker's host.")
    max_concurrent_agents: int = Field(default=2, ge=1, description="Agent slots on this worker (capacity).")
    max_concurrent_activities: int = Field(default=20, ge=1)

    agent_grace_seconds: float = Field(default=10.0, ge=0, description="SIGTERM to SIGKILL grace period.")
    heartbeat_seconds: float = Field(default=5.0, gt=0)

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def runs_dir(self) -> Path:
        return self.home_dir / "runs"

    @property
    def workspaces_dir(self) -> Path:
        return self.home_dir / "workspaces"

    @property
    def host_task_queue(self) -> str:
        """The worker-specific queue for activities bound to a workspace on this host's disk."""
        return f"{self.task_queue}.host.{self.host_id}"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    def workflow_ui_url(self, workflow_id: str, run_id: str | None = None) -> str:
        base = f"{self.temporal_ui_url.rstrip('/')}/namespaces/{self.temporal_namespace}/workflows/{workflow_id}"
        return f"{base}/{run_id}/history" if run_id else base


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
