"""The sandbox policy a work order (or profile) carries.

This module is imported by `agentgate.models`' neighbours inside the Temporal workflow sandbox, so
it must stay pure: no I/O, no clock, no subprocess at import time or in validators.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ProviderName = Literal["auto", "none", "bubblewrap", "docker", "podman"]
NetworkMode = Literal["none", "allowlist", "full"]
Phase = Literal["setup", "agent", "verify", "delivery"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOST = re.compile(r"^(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?$")


# What network `allowlist` must include for each agent CLI to reach its model provider.
PROVIDER_API_HOSTS: dict[str, list[str]] = {
    "claude-code": ["api.anthropic.com", "statsig.anthropic.com", "console.anthropic.com"],
    "codex": ["api.openai.com", "chatgpt.com", "auth.openai.com"],
    "opencode": ["api.anthropic.com", "api.openai.com", "openrouter.ai", "models.dev"],
    "command": [],
}


# Secrets that belong to the delivery phase alone (activities/delivery.py reads them from the worker's
# environment there): no agent or gate may be handed them, whatever a work order asks for.
DELIVERY_ONLY_SECRETS = ("AGENTGATE_GITHUB_TOKEN", "GITHUB_TOKEN")


class SandboxConfigError(ValueError):
    """A policy the chosen provider cannot honour; raised instead of silently running with less isolation."""


class SandboxPolicy(BaseModel):
    """How one phase's processes are isolated, what they may reach, what they may use.

    Defaults are the agent phase's: offline, no secrets, no resource limits beyond the wall clock
    the build activity already enforces. `None` for a limit means "not limited".
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    provider: ProviderName = "auto"
    network: NetworkMode = Field(default="none", description="none (default for the agent phase), allowlist, full.")
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="For network=allowlist: host, host:port or *.domain. No port means 443 and 80.",
    )
    setup_network: NetworkMode = Field(
        default="full", description="Network of the setup phase (dependency install), see `for_phase`."
    )
    verify_network: NetworkMode = Field(
        default="none",
        description="Network of the verify phase's gates: none (hermetic, default); full for a gate that downloads.",
    )
    memory_mb: int | None = Field(default=None, ge=16)
    cpu_seconds: int | None = Field(default=None, ge=1, description="CPU time per process (RLIMIT_CPU).")
    cpus: float | None = Field(default=None, gt=0, description="CPU bandwidth in cores (cgroup quota / --cpus).")
    pids: int | None = Field(default=None, ge=8, description="Processes and threads of the whole sandbox.")
    disk_mb: int | None = Field(default=None, ge=1, description="Workspace size; also caps any single file.")
    read_only_paths: list[str] = Field(
        default_factory=list, description="Extra host paths visible read-only (e.g. the prompt file's directory)."
    )
    writable_paths: list[str] = Field(
        default_factory=list, description="Extra host paths writable inside (e.g. an agent CLI's session store)."
    )
    hidden_paths: list[str] = Field(default_factory=list, description="Extra host paths made empty inside.")
    protect_git: bool = Field(
        default=True,
        description="Keep the workspace's .git/config and .git/hooks read-only: the worker runs git there later.",
    )
    secrets: list[str] = Field(
        default_factory=list, description="Names of worker env vars injected into the agent phase only."
    )
    image: str | None = Field(default=None, description="Container image for docker/podman (must hold the CLI).")
    allow_unsandboxed: bool = Field(
        default=True,
        description="If `auto` finds no isolating provider: run unsandboxed with a recorded warning (True) or fail.",
    )

    @field_validator("secrets")
    @classmethod
    def _env_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(f"secret {name!r} is not an environment variable name")
            if name in DELIVERY_ONLY_SECRETS:
                raise ValueError(f"secret {name!r} is the delivery token: only the delivery phase receives it")
        return value

    @field_validator("allow_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            if not _HOST.match(host):
                raise ValueError(f"allow_hosts entry {host!r} must be host, host:port or *.domain")
        return [h.lower() for h in value]

    @field_validator("read_only_paths", "writable_paths", "hidden_paths")
    @classmethod
    def _absolute(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"path {path!r} must be absolute")
        return value

    @model_validator(mode="after")
    def _allowlist_needs_hosts(self) -> SandboxPolicy:
        if self.network == "allowlist" and not self.allow_hosts:
            raise ValueError("network 'allowlist' needs at least one allow_hosts entry")
        return self

    def for_phase(self, phase: Phase) -> SandboxPolicy:
        """The policy a given phase runs with: secrets reach only the agent; setup gets `setup_network`,
        the verify phase's gates (code the agent wrote) `verify_network`."""
        if phase == "agent":
            return self
        update: dict = {"secrets": []}
        if phase in ("setup", "verify"):
            network = self.setup_network if phase == "setup" else self.verify_network
            update["network"] = "none" if network == "allowlist" and not self.allow_hosts else network
        return self.model_copy(update=update)

    def limits_summary(self) -> dict[str, int | float]:
        return {
            k: v
            for k, v in (
                ("memory_mb", self.memory_mb),
                ("cpu_seconds", self.cpu_seconds),
                ("cpus", self.cpus),
                ("pids", self.pids),
                ("disk_mb", self.disk_mb),
            )
            if v is not None
        }
