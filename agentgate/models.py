"""Domain models shared by the API, the workflow and the activities.

Everything here must be importable inside the Temporal workflow sandbox, so nothing
in this module does I/O or reads the clock: defaults that need "now" are filled in by
the API / CLI before a work order enters Temporal.
"""

from __future__ import annotations

import re
import shlex
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from agentgate.delivery.models import DeliverySpec
from agentgate.sandbox.policy import DELIVERY_ONLY_SECRETS, SandboxPolicy
from agentgate.workspace_sources import ACCEPTED_FORMS, normalize_workspace_source
from workflows.convergence import ConvergenceConfig

# ---------------------------------------------------------------------------
# Work order input
# ---------------------------------------------------------------------------

KNOWN_AGENT_DRIVERS = ("command", "claude-code", "codex", "opencode")
WORK_ORDER_ID_PATTERN = r"^wo_[0-9a-z]{10,40}$"
PROFILE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LocalSource(_Strict):
    """A git repository on this machine. Never modified in place: the run works on its own clone."""

    type: Literal["local"] = "local"
    path: str = Field(min_length=1, description="Absolute path of a git repository on the worker's host.")


class GitSource(_Strict):
    type: Literal["git"] = "git"
    url: str = Field(min_length=1, description="Any URL `git clone` accepts (https, ssh, file).")
    branch: str | None = None


_GH_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class GitHubSource(_Strict):
    type: Literal["github"] = "github"
    # The pattern is documented in the schema only; the validator below gives the clearer message.
    owner: str = Field(min_length=1, json_schema_extra={"pattern": _GH_NAME.pattern})
    repo: str = Field(min_length=1, json_schema_extra={"pattern": _GH_NAME.pattern})
    branch: str | None = None

    @field_validator("owner", "repo")
    @classmethod
    def _github_name(cls, value: str) -> str:
        if not _GH_NAME.match(value):
            raise ValueError("must contain only letters, digits, '-', '_' and '.'")
        return value


class FreshSource(_Strict):
    """A new, empty repository created for the run."""

    type: Literal["fresh"] = "fresh"
    template: str | None = Field(default=None, description="Optional local directory copied in as the first commit.")


# Every natural form (a git URL, "owner/name", a local path, ...) is normalized to one of the four
# models before the discriminated union validates; see agentgate/workspace_sources.py.
WorkspaceSource = Annotated[
    LocalSource | GitSource | GitHubSource | FreshSource,
    Field(discriminator="type", description="Where the code comes from. Accepted forms: " + "; ".join(ACCEPTED_FORMS)),
    BeforeValidator(
        normalize_workspace_source,
        json_schema_input_type=LocalSource | GitSource | GitHubSource | FreshSource | str,
    ),
]


class AgentSpec(_Strict):
    """Which agent driver runs the build phase, and how."""

    driver: str = Field(default="command", description=f"One of: {', '.join(KNOWN_AGENT_DRIVERS)}.")
    command: str | None = Field(
        default=None, description="For the `command` driver: the shell command run in the workspace."
    )
    model: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("driver")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if value not in KNOWN_AGENT_DRIVERS:
            raise ValueError(f"unknown agent {value!r}; choose one of: {', '.join(KNOWN_AGENT_DRIVERS)}")
        return value

    @model_validator(mode="after")
    def _command_needs_command(self) -> AgentSpec:
        if self.driver == "command":
            if not self.command:
                raise ValueError("the `command` driver needs `command` (the shell command to run)")
            try:
                shlex.split(self.command)
            except ValueError as exc:
                raise ValueError(f"command is not valid shell syntax: {exc}") from exc
        return self

    @model_validator(mode="after")
    def _no_delivery_token_for_the_agent(self) -> AgentSpec:
        names = self.options.get("env_passthrough") or []
        names = names.replace(",", " ").split() if isinstance(names, str) else names
        leaked = [str(n) for n in names if str(n) in DELIVERY_ONLY_SECRETS] if isinstance(names, list) else []
        if leaked:
            raise ValueError(
                f"options.env_passthrough names {', '.join(leaked)}, the delivery token: only the delivery phase "
                "receives it; remove it (the agent never needs it to change code)"
            )
        return self


class GateSpec(_Strict):
    """A verification gate: for now one command whose exit code decides."""

    name: str | None = None
    command: str = Field(min_length=1)
    timeout_seconds: float = Field(default=600, gt=0, le=24 * 3600)
    expected_exit_code: int = 0

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"command": value}
        return value

    @property
    def display_name(self) -> str:
        return self.name or self.command


class WorkOrderRequest(_Strict):
    """What a caller submits. Validation errors name the field."""

    task_prompt: str = Field(
        max_length=200_000, description="What the agent must do.", json_schema_extra={"pattern": r"\S"}
    )
    workspace_source: WorkspaceSource
    agent: AgentSpec
    max_iterations: int = Field(default=3, ge=1, le=200)
    max_wall_clock_seconds: float = Field(default=3600, gt=0, le=7 * 24 * 3600)
    gates: list[GateSpec] = Field(default_factory=list, max_length=50)
    priority: int = Field(default=3, ge=1, le=5, description="1 = most urgent, 5 = least (Temporal's convention).")
    labels: list[str] = Field(default_factory=list, max_length=20)
    max_total_tokens: int | None = Field(
        default=None, gt=0, description="Budget: stop before the next iteration once the run used this many tokens."
    )
    max_cost_usd: float | None = Field(
        default=None, gt=0, description="Budget: stop before the next iteration once the run cost this much."
    )
    delivery: DeliverySpec = Field(default_factory=DeliverySpec)
    convergence: ConvergenceConfig = Field(default_factory=ConvergenceConfig)
    gate_plan_source: Literal["auto", "profile", "workspace", "ci-workflow", "default"] = Field(
        default="auto", description="Where the gate plan comes from (docs/verify-yaml.md)."
    )
    skip_levels: list[Literal["L0", "L1", "L2", "L3"]] = Field(default_factory=list)
    protected_paths: list[str] = Field(
        default_factory=list, max_length=100, description="Globs the agent must not change (gate integrity)."
    )
    sandbox: SandboxPolicy | None = Field(
        default=None,
        description="Isolation of the agent phase (docs/sandbox.md); unset: the worker's default, sandboxed and "
        "offline (LLM CLIs reach only their provider's API).",
    )
    verify_timeout_seconds: float = Field(default=3600, gt=0, le=24 * 3600, description="Limit of one verify phase.")
    max_queue_seconds: float | None = Field(
        default=None,
        gt=0,
        le=30 * 24 * 3600,
        description="Longest wait for a slot in the global queue; past it the run ends failed_timeout (queue_timeout).",
    )
    fairness_key: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.:/@-]{1,128}$",
        description="E.g. a tenant or repository: inside a priority, keys take turns, so one key cannot starve others.",
    )
    host_start_timeout_seconds: float = Field(
        default=120,
        ge=5,
        le=24 * 3600,
        description="How long a phase may wait for the worker holding the workspace before the run moves to another "
        "worker, restored from its last checkpoint.",
    )
    profile: str | None = Field(
        default=None,
        pattern=PROFILE_NAME_PATTERN,
        description="Harness profile (docs/profiles.md) whose values fill every field this request leaves unset.",
    )

    @field_validator("task_prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("task_prompt must not be empty")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        for label in value:
            if not re.match(r"^[A-Za-z0-9_.:/-]{1,64}$", label):
                raise ValueError(f"label {label!r} must be 1-64 of letters, digits, and _ . : / -")
        return value


class CheckpointPointer(_Strict):
    """A durable checkpoint (agentgate/checkpoints.py): iteration `iteration` of run `run_id` of this work order."""

    run_id: str
    iteration: int = Field(ge=1)
    ref: str = Field(description="The ref in the work order's checkpoint repository.")
    commit: str


class WorkOrder(WorkOrderRequest):
    """A work order as it enters Temporal: id and creation time are fixed by the submitter."""

    id: str = Field(pattern=WORK_ORDER_ID_PATTERN)
    created_at: datetime
    profile_hash: str | None = Field(
        default=None, description="sha256 of the resolved profile the order was built from (traceability)."
    )
    resume_from: CheckpointPointer | None = Field(
        default=None, description="Set by `agentgate rewind`: the run starts from this checkpoint of an earlier run."
    )

    def repo_label(self) -> str:
        src = self.workspace_source
        if isinstance(src, LocalSource):
            return src.path
        if isinstance(src, GitSource):
            return src.url
        if isinstance(src, GitHubSource):
            return f"{src.owner}/{src.repo}"
        return "fresh"


# ---------------------------------------------------------------------------
# Phase results: small, reference-carrying objects that travel through Temporal history
# ---------------------------------------------------------------------------


class RunContext(_Strict):
    """Identifies one run of one work order in the artifact store."""

    work_order_id: str
    run_id: str


class WorkspaceInfo(_Strict):
    path: str
    base_commit: str
    branch: str
    task_queue: str = Field(description="Queue of the worker that holds this workspace on disk.")
    agent_task_queue: str | None = Field(
        default=None, description="That worker's agent-slot queue: its size is the worker's agent capacity."
    )
    source_path: str | None = Field(default=None, description="Local source repository to deliver the branch to.")
    host_id: str | None = Field(default=None, description="Identity of the worker that holds the workspace.")
    checkpoint_ref: str | None = Field(
        default=None, description="The base commit's checkpoint ref (agentgate/checkpoints.py)."
    )


class TokenUsage(_Strict):
    input: int = 0
    output: int = 0
    cache_creation: int = 0
    cache_read: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_creation + self.cache_read

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            input=self.input + other.input,
            output=self.output + other.output,
            cache_creation=self.cache_creation + other.cache_creation,
            cache_read=self.cache_read + other.cache_read,
        )


class ErrorType(StrEnum):
    AGENT_CRASH = "agent_crash"
    AGENT_TIMEOUT = "agent_timeout"
    AGENT_STALLED = "agent_stalled"
    AGENT_TASK_FAILURE = "agent_task_failure"
    AGENT_AUTH = "agent_auth"
    TYPECHECK_FAILED = "typecheck_failed"
    LINT_FAILED = "lint_failed"
    TEST_FAILED = "test_failed"
    BLACKBOX_FAILED = "blackbox_failed"
    CONTRACT_FAILED = "contract_failed"
    CI_FAILED = "ci_failed"
    WORKSPACE_ERROR = "workspace_error"
    SNAPSHOT_ERROR = "snapshot_error"
    DELIVERY_ERROR = "delivery_error"
    BUDGET_EXCEEDED = "budget_exceeded"
    RESOURCE_EXCEEDED = "resource_exceeded"
    CANCELED = "canceled"
    QUEUE_TIMEOUT = "queue_timeout"
    SYSTEM_ERROR = "system_error"


class BuildError(_Strict):
    """A classified failure with enough context to diagnose it from the files alone."""

    type: ErrorType
    message: str
    phase: str | None = None
    iteration: int | None = None
    exit_code: int | None = None
    stdout_tail: str | None = None
    stderr_tail: str | None = None
    files: list[str] = Field(default_factory=list, description="Artifact references worth opening first.")


class AgentSummary(_Strict):
    """What the workflow needs of a build; the full AgentResult lives in `agent-<N>.json`."""

    success: bool
    exit_code: int | None
    duration_ms: int
    model: str | None = None
    session_id: str | None = None
    turns: int | None = None
    tokens: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float | None = None
    tool_calls: int = 0
    final_message: str | None = Field(default=None, max_length=4000, description="The agent's last message, bounded.")
    result_ref: str
    stdout_ref: str
    stderr_ref: str
    error: BuildError | None = None
    sandbox_provider: str | None = Field(
        default=None, description="The sandbox provider the agent ran in (bubblewrap, docker, none, ...)."
    )
    sandbox_network: str | None = Field(default=None, description="Its network policy in force: none, allowlist, full.")


class SnapshotResult(_Strict):
    commit: str
    changed: bool
    files_changed: int = 0
    insertions: int = 0
    deletions: int = 0
    patch_ref: str
    checkpoint_ref: str | None = Field(
        default=None, description="The commit's durable copy outside the worker (agentgate/checkpoints.py)."
    )


class GateOutcome(_Strict):
    name: str
    command: str
    passed: bool
    exit_code: int | None
    duration_ms: int
    output_ref: str
    output_bytes: int = 0
    excerpt: str = Field(default="", description="The tail of the output, bounded, for summaries.")
    timed_out: bool = False
    level: str | None = Field(default=None, description="Verification level: integrity, L0, L1, L2 or L3.")
    kind: str | None = Field(default=None, description="What the check is: test, lint, typecheck, secret, ...")


class VerificationSummary(_Strict):
    passed: bool
    gates: list[GateOutcome] = Field(default_factory=list)
    report_ref: str
    progress: float | None = Field(default=None, description="Fraction of planned checks passing, 0..1.")
    failed_level: str | None = None
    integrity_violations: list[str] = Field(default_factory=list, description="Typed reasons the diff weakened gates.")
    warnings: int = 0
    plan_source: str | None = None
    sandbox_provider: str | None = Field(
        default=None, description="The sandbox provider the gate commands ran in (bubblewrap, none, ...)."
    )
    sandbox_network: str | None = Field(default=None, description="The gates' network policy in force: none, full.")

    @property
    def failed_gates(self) -> list[GateOutcome]:
        return [g for g in self.gates if not g.passed]


class FeedbackResult(_Strict):
    ref: str
    summary: str


class PhaseTiming(_Strict):
    phase: str
    started_at: datetime
    ended_at: datetime

    @property
    def duration_ms(self) -> int:
        return int((self.ended_at - self.started_at).total_seconds() * 1000)


class IterationRecord(_Strict):
    iteration: int
    started_at: datetime
    ended_at: datetime | None = None
    phases: list[PhaseTiming] = Field(default_factory=list)
    agent: AgentSummary | None = None
    snapshot: SnapshotResult | None = None
    verification: VerificationSummary | None = None
    feedback: FeedbackResult | None = None
    error: BuildError | None = None
    decision: str | None = Field(default=None, description="What the loop decided after this iteration, and why.")


# ---------------------------------------------------------------------------
# Run outcome
# ---------------------------------------------------------------------------


class RunStatus(StrEnum):
    """Coarse status, kept in the `AgentGateStatus` search attribute for listing."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class DeliveryResult(_Strict):
    mode: str
    branch: str | None = None
    commit: str | None = None
    target: str | None = None
    pushed: bool = False
    message: str | None = None
    pr_number: int | None = None
    pr_url: str | None = None
    ci_state: str | None = None
    ci_rounds: int = 0


class WorkspaceMove(_Strict):
    """The worker holding the workspace was lost; the run went on elsewhere from its last checkpoint."""

    iteration: int
    phase: str = Field(description="The phase that found the worker gone: build, snapshot, verify or delivery.")
    from_host: str | None = None
    to_host: str | None = None
    checkpoint_ref: str
    commit: str
    reason: str
    at: datetime


class RunOutcome(_Strict):
    """The run's summary: the workflow's result and its `status` query answer."""

    work_order_id: str
    run_id: str
    status: RunStatus
    state: str
    result: str | None = None
    iterations: int = 0
    error: str | None = None
    build_error: BuildError | None = None
    partial: bool = Field(default=False, description="Ended on a limit; the work so far is committed on the branch.")
    warnings: list[str] = Field(default_factory=list)
    workspace: WorkspaceInfo | None = None
    delivery: DeliveryResult | None = None
    tokens: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float = 0.0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    history: list[IterationRecord] = Field(default_factory=list)
    workspace_moves: list[WorkspaceMove] = Field(default_factory=list)


# ---------------------------------------------------------------------------
# Activity inputs
# ---------------------------------------------------------------------------


class PrepareInput(_Strict):
    ctx: RunContext
    work_order: WorkOrder


class BuildInput(_Strict):
    """The work order itself is not repeated here: it is in the run's `work-order.json`, written
    once by prepare, so a large prompt does not grow Temporal history with every iteration."""

    ctx: RunContext
    work_order: WorkOrder | None = Field(
        default=None,
        description="Deprecated: histories of earlier versions carried it; activities now read work-order.json.",
    )
    workspace: WorkspaceInfo
    iteration: int
    feedback_ref: str | None = None
    session_id: str | None = None


class SnapshotInput(_Strict):
    ctx: RunContext
    workspace: WorkspaceInfo
    iteration: int
    previous_commit: str


class VerifyInput(_Strict):
    ctx: RunContext
    work_order: WorkOrder | None = Field(
        default=None,
        description="Deprecated: histories of earlier versions carried it; activities now read work-order.json.",
    )
    workspace: WorkspaceInfo
    iteration: int


class FeedbackInput(_Strict):
    ctx: RunContext
    iteration: int
    verification: VerificationSummary
    agent: AgentSummary | None = None


class RecordIterationInput(_Strict):
    ctx: RunContext
    record: IterationRecord


class DeliverInput(_Strict):
    ctx: RunContext
    work_order: WorkOrder | None = Field(
        default=None,
        description="Deprecated: histories of earlier versions carried it; activities now read work-order.json.",
    )
    workspace: WorkspaceInfo


class RestoreInput(_Strict):
    """Re-prepare a workspace whose worker was lost, on whichever worker takes this, from a checkpoint."""

    ctx: RunContext
    workspace: WorkspaceInfo = Field(description="The lost workspace (its branch, base, source and old host).")
    checkpoint_ref: str
    commit: str
    iteration: int
    reason: str


class ProbeInput(_Strict):
    ctx: RunContext
    workspace: WorkspaceInfo


class FinalizeInput(_Strict):
    ctx: RunContext
    work_order: WorkOrder | None = Field(
        default=None,
        description="Deprecated: histories of earlier versions carried it; activities now read work-order.json.",
    )
    outcome: RunOutcome
