"""One settings class for every process (API, worker, CLI, embedded stack).

Values come from `AGENTGATE_*` environment variables (or a `.env` file), and from the
file named by `AGENTGATE_CONFIG_FILE` (YAML, TOML, JSON or .env) so that a cluster
deployment is pure configuration; the defaults describe the embedded single-machine stack.
Precedence: constructor arguments, then environment, then the config file, then `.env`.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    InitSettingsSource,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

CONFIG_FILE_ENV = "AGENTGATE_CONFIG_FILE"


class ConfigError(ValueError):
    """A setting that cannot work as given; the message names the `AGENTGATE_*` variable to fix."""


def env_name(field: str) -> str:
    return f"AGENTGATE_{field.upper()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTGATE_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path("~/.agentgate"), description="State root: runs, workspaces, Temporal DB, logs.")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    task_queue: str = "agentgate"

    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_key: str | None = Field(
        default=None, description="When set, mutating API requests need `Authorization: Bearer <key>` (api/auth.py)."
    )
    api_key_protect_reads: bool = Field(
        default=False, description="With api_key set, also require it for reads under /api/ (health stays open)."
    )
    validate_local_paths: bool = Field(
        default=True, description="Check at submit time that a local source is a git repository on this host."
    )
    temporal_port: int = 7233
    ui_port: int = 8233
    retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="Embedded stack: how long Temporal keeps closed runs (the dev server's own default is 1 day).",
    )

    host_id: str = Field(default_factory=socket.gethostname, description="Identity of this worker's host.")
    max_concurrent_agents: int = Field(default=2, ge=1, description="Agent slots on this worker (a per-host guard).")
    max_concurrent_activities: int = Field(default=20, ge=1)
    # The global queue (workflows/admission.py). Capacity is only the admission workflow's
    # initial value: at run time it changes with PUT /api/v1/queue/capacity, not with a restart.
    capacity: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Initial global capacity (agent runs at once across all workers); default max_concurrent_agents.",
    )
    queue_reconcile_seconds: float = Field(
        default=30.0, gt=0, description="How often the queue checks for runs that ended without releasing a slot."
    )
    queue_wait_warn_seconds: float = Field(
        default=3600.0, gt=0, description="Queue health is degraded once the oldest order has waited this long."
    )

    agent_grace_seconds: float = Field(default=10.0, ge=0, description="SIGTERM to SIGKILL grace period.")
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    sandbox_default_provider: Literal["auto", "bubblewrap", "none"] = Field(
        default="auto",
        description="Sandbox of agents whose work order and profile name none (docs/sandbox.md): auto = the "
        "strongest available, bubblewrap = fail rather than run unconfined, none = trusted local use, unsandboxed.",
    )

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def runs_dir(self) -> Path:
        if self.artifact_dir is not None:  # the shared artifact store of a multi-host deployment
            return self.artifact_dir.expanduser().resolve()
        return self.home_dir / "runs"

    @property
    def workspaces_dir(self) -> Path:
        return self.home_dir / "workspaces"

    @property
    def service_state_dirs(self) -> list[str]:
        """What a sandboxed agent or gate must not see: every run's artifacts and workspace, the Temporal DB,
        logs, spill. The run's own workspace, run folder and private HOME are bound back on top."""
        return sorted({str(self.home_dir), str(self.runs_dir), str(self.workspaces_dir)})

    @property
    def profiles_dir(self) -> Path:
        """User harness profiles (`<name>.yaml`), read by the API at submission; built-ins ship with the package."""
        return self.home_dir / "profiles"

    @property
    def host_task_queue(self) -> str:
        """The worker-specific queue for activities bound to a workspace on this host's disk."""
        return f"{self.task_queue}.host.{self.host_id}"

    @property
    def agent_task_queue(self) -> str:
        """Agent runs on this host: the worker polls it with `max_concurrent_agents` slots."""
        return f"{self.host_task_queue}.agents"

    @property
    def queue_capacity(self) -> int:
        """The admission queue's initial capacity: AGENTGATE_CAPACITY, else this worker's agent slots."""
        return self.capacity if self.capacity is not None else self.max_concurrent_agents

    @property
    def admission_workflow_id(self) -> str:
        """The one admission (queue) workflow of this deployment: `<task_queue>-admission`."""
        return f"{self.task_queue}-admission"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    def workflow_ui_url(self, workflow_id: str, run_id: str | None = None) -> str:
        base = f"{self.temporal_ui_url.rstrip('/')}/namespaces/{self.temporal_namespace}/workflows/{workflow_id}"
        return f"{base}/{run_id}/history" if run_id else base

    # -- cluster (deploy) --
    # Everything a multi-host deployment needs, so that pointing AgentGate at a production
    # Temporal cluster or Temporal Cloud changes configuration only (see docs/deploy.md).
    config_file: Path | None = Field(
        default=None,
        description="YAML/TOML/JSON/.env file with these settings (set via AGENTGATE_CONFIG_FILE); env vars win.",
    )
    temporal_tls: bool | None = Field(
        default=None,
        description="Unset: TLS when a TLS file, server name or Temporal API key is set. "
        "true: TLS with the system roots. false: plaintext.",
    )
    temporal_tls_server_root_ca_cert: Path | None = Field(
        default=None, description="PEM CA bundle the server certificate must chain to; default: system roots."
    )
    temporal_tls_client_cert: Path | None = Field(default=None, description="PEM client certificate for mTLS.")
    temporal_tls_client_key: Path | None = Field(default=None, description="PEM private key of the client certificate.")
    temporal_tls_server_name: str | None = Field(
        default=None, description="SNI and certificate name override when it differs from the address host."
    )
    temporal_api_key: SecretStr | None = Field(
        default=None, description="Temporal Cloud API key (bearer auth); implies TLS unless temporal_tls=false."
    )

    metrics_host: str = Field(default="127.0.0.1", description="Bind address of the worker's Prometheus /metrics.")
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="Port of the worker's Prometheus /metrics.")
    worker_graceful_shutdown_seconds: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, how long running activities may finish before they are cancelled (Temporal "
        "graceful_shutdown_timeout); keep it below the orchestrator's kill deadline.",
    )

    artifact_store: Literal["filesystem", "s3"] = Field(
        default="filesystem", description="Only `filesystem` is implemented; share it across hosts with a volume."
    )
    artifact_dir: Path | None = Field(
        default=None, description="Artifact store root (default HOME/runs); a shared volume on multi-host setups."
    )
    artifact_s3_bucket: str | None = Field(default=None, description="Reserved for an object-store backend.")
    artifact_s3_prefix: str = Field(default="agentgate/runs", description="Reserved for an object-store backend.")
    artifact_s3_endpoint_url: str | None = Field(default=None, description="Reserved for an object-store backend.")
    artifact_s3_region: str | None = Field(default=None, description="Reserved for an object-store backend.")

    @field_validator("artifact_store")
    @classmethod
    def _refuse_unimplemented_artifact_store(cls, value: str) -> str:
        # Failing at start-up beats a worker that silently writes artifacts to its own disk
        # while the operator believes they go to a bucket every host can read.
        if value == "s3":
            raise ValueError(
                "AGENTGATE_ARTIFACT_STORE=s3 is not available in this build (no object-store client is bundled); "
                "use AGENTGATE_ARTIFACT_STORE=filesystem with AGENTGATE_ARTIFACT_DIR on a shared volume "
                "(NFS, EFS, a ReadWriteMany PVC) mounted at the same path on every host"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _config_file_path(init_settings)
        file_source = (config_file_source(settings_cls, path),) if path else ()
        return (init_settings, env_settings, *file_source, dotenv_settings, file_secret_settings)


def _config_file_path(init_settings: PydanticBaseSettingsSource) -> Path | None:
    init_kwargs = init_settings.init_kwargs if isinstance(init_settings, InitSettingsSource) else {}
    raw = init_kwargs.get("config_file") or os.environ.get(CONFIG_FILE_ENV)
    return Path(raw).expanduser() if raw else None


def config_file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    """The pydantic-settings source for one config file, chosen by its suffix.

    YAML, TOML and JSON files hold field names as keys (`temporal_address: ...`) and an
    unknown key is an error, because a misspelt setting silently ignored in production is
    worse than a worker that refuses to start. A .env file holds `AGENTGATE_*` names.
    """
    if not path.is_file():
        raise ConfigError(f"{CONFIG_FILE_ENV}={path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            source: PydanticBaseSettingsSource = YamlConfigSettingsSource(settings_cls, yaml_file=path)
        elif suffix == ".toml":
            source = TomlConfigSettingsSource(settings_cls, toml_file=path)
        elif suffix == ".json":
            source = JsonConfigSettingsSource(settings_cls, json_file=path)
        elif suffix == ".env" or path.name.startswith(".env") or path.name.endswith(".env"):
            return DotEnvSettingsSource(settings_cls, env_file=path)
        else:
            raise ConfigError(f"{CONFIG_FILE_ENV}={path}: unknown format; use .yaml, .yml, .toml, .json or .env")
    except ConfigError:
        raise
    except Exception as err:  # parse errors of any of the three formats
        raise ConfigError(f"{CONFIG_FILE_ENV}={path}: cannot parse: {err}") from err
    data: Any = getattr(source, "init_kwargs", {})
    unknown = sorted(set(data) - set(settings_cls.model_fields) - {"config_file"})
    if unknown:
        raise ConfigError(f"{CONFIG_FILE_ENV}={path}: unknown setting(s) {', '.join(unknown)}")
    return source


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
