"""Delivery settings and the small results that travel through Temporal history.

This module must stay importable inside the workflow sandbox and from `agentgate.models`
(which embeds `DeliverySpec` in the work order), so it imports nothing from the rest of
AgentGate and does no I/O. Large data (job logs, feedback) lives in the artifact store;
these models only carry references to it.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agentgate.delivery.templates import check_template


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class DeliveryMode(StrEnum):
    LOCAL = "local"
    PUSH = "push"
    GITHUB_PR = "github-pr"


class GitHubMode(StrEnum):
    """What a GitHub failure means for the run (seed Thrust 6)."""

    FAIL_FAST = "fail_fast"
    BEST_EFFORT = "best_effort"
    DISABLED = "disabled"


# A PR is the whole point of `github-pr`, so failing it fails the run; a plain push is
# a convenience on top of the local result, so it only warns; `local` never calls GitHub.
DEFAULT_GITHUB_MODE: dict[DeliveryMode, GitHubMode] = {
    DeliveryMode.LOCAL: GitHubMode.DISABLED,
    DeliveryMode.PUSH: GitHubMode.BEST_EFFORT,
    DeliveryMode.GITHUB_PR: GitHubMode.FAIL_FAST,
}

_GH_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:/[A-Za-z0-9_.-]+)?$")


class CISpec(_Strict):
    enabled: bool = True
    poll_interval_seconds: float = Field(default=30, ge=1, le=3600)
    timeout_seconds: float = Field(default=3600, gt=0, le=7 * 24 * 3600)
    max_iterations: int = Field(
        default=3, ge=0, le=50, description="Extra build iterations driven by CI failures (0: report, never fix)."
    )
    no_checks_policy: Literal["pass", "fail"] = "pass"
    no_checks_grace_seconds: float = Field(
        default=60,
        ge=0,
        description="Checks appear some seconds after a push: only after this long is 'nothing reported' final.",
    )
    on_action_required: Literal["warn", "fail"] = Field(
        default="warn",
        description="A run awaiting approval cannot finish by itself: report it (PR stays draft) or fail the run.",
    )
    wait_for_all: bool = Field(
        default=True, description="Wait until every check completed before declaring failure (fuller feedback)."
    )
    required_checks: list[str] = Field(
        default_factory=list, description="If set, only checks with these names decide; others are informational."
    )
    max_failed_jobs: int = Field(default=5, ge=1, le=50)
    max_log_bytes: int = Field(default=5_000_000, ge=10_000, le=200_000_000)
    feedback_max_chars: int = Field(default=12_000, ge=1000, le=200_000)


DEFAULT_TITLE_TEMPLATE = "AgentGate: {task_title}"
DEFAULT_BODY_TEMPLATE = """\
{task_summary}

| | |
|---|---|
| Work order | `{work_order_id}` |
| Run | `{run_id}` |
| Iterations | {iterations} |
| Highest level passed | {highest_level_passed} |
| Cost | {cost} |

### Gates

{gate_table}

_Opened by AgentGate; marked ready for review once CI passes._
"""


class DeliverySpec(_Strict):
    """How a run's result leaves the worker. Defaults deliver locally and never call GitHub."""

    mode: DeliveryMode = DeliveryMode.LOCAL
    github_mode: GitHubMode | None = Field(
        default=None, description="Default by mode: local → disabled, push → best_effort, github-pr → fail_fast."
    )
    owner: str | None = Field(default=None, description="GitHub owner; defaults to the github workspace source's.")
    repo: str | None = None
    remote_url: str | None = Field(
        default=None,
        description="Where to push; defaults to the repository's clone_url from the API. Credentials are stripped.",
    )
    base_branch: str | None = Field(default=None, description="PR base; default: the repository's default branch.")
    branch: str | None = Field(default=None, description="Head branch; default: the run's branch agentgate/<id>.")
    draft: bool = True
    labels: list[str] = Field(default_factory=list, max_length=20)
    reviewers: list[str] = Field(default_factory=list, max_length=15)
    team_reviewers: list[str] = Field(default_factory=list, max_length=15)
    assignees: list[str] = Field(default_factory=list, max_length=10)
    push_every_iteration: bool = False
    title_template: str = Field(default=DEFAULT_TITLE_TEMPLATE, max_length=500)
    body_template: str = Field(default=DEFAULT_BODY_TEMPLATE, max_length=20_000)
    local_output: Literal["branch", "bundle", "patch"] = Field(
        default="branch",
        description="local mode: push the branch into the source repo, or write a git bundle / patch series.",
    )
    ci: CISpec = Field(default_factory=CISpec)

    @field_validator("owner", "repo")
    @classmethod
    def _github_name(cls, value: str | None) -> str | None:
        if value is not None and not _GH_NAME.match(value):
            raise ValueError("must contain only letters, digits, '-', '_' and '.'")
        return value

    @field_validator("reviewers", "assignees", "team_reviewers")
    @classmethod
    def _logins(cls, value: list[str]) -> list[str]:
        for login in value:
            if not _LOGIN.match(login):
                raise ValueError(f"{login!r} is not a GitHub login")
        return value

    @model_validator(mode="after")
    def _templates_parse(self) -> DeliverySpec:
        check_template(self.title_template, "title_template")
        check_template(self.body_template, "body_template")
        return self

    @property
    def effective_github_mode(self) -> GitHubMode:
        return self.github_mode or DEFAULT_GITHUB_MODE[self.mode]

    @property
    def uses_github(self) -> bool:
        return self.mode != DeliveryMode.LOCAL and self.effective_github_mode != GitHubMode.DISABLED

    @property
    def wants_pr(self) -> bool:
        return self.mode == DeliveryMode.GITHUB_PR and self.uses_github

    @property
    def wants_ci(self) -> bool:
        return self.wants_pr and self.ci.enabled


class RepoRef(_Strict):
    owner: str
    repo: str

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


class OperationOutcome(_Strict):
    """Per-operation record (seed Thrust 6: "operations summary"); best-effort failures land in `warning`."""

    operation: str
    ok: bool = True
    skipped: bool = False
    warning: str | None = None


class PushResult(OperationOutcome):
    operation: str = "push_branch"
    remote: str | None = Field(default=None, description="The push target, credentials stripped.")
    branch: str | None = None
    commit: str | None = None
    pushed: bool = False
    artifact_ref: str | None = Field(default=None, description="Bundle or patch file in the artifact store.")


class PullRequestInfo(_Strict):
    number: int
    node_id: str
    url: str = Field(description="API URL of the pull request.")
    html_url: str
    draft: bool
    head_ref: str
    head_sha: str
    base_ref: str
    created: bool = Field(default=True, description="False when an open PR for the branch already existed.")


class CreatePullRequestResult(OperationOutcome):
    operation: str = "create_pull_request"
    pr: PullRequestInfo | None = None
    repo: RepoRef | None = None


class MarkReadyResult(OperationOutcome):
    operation: str = "mark_pr_ready"
    draft: bool | None = None


CheckState = Literal["pending", "passed", "failed", "action_required", "skipped"]
CIState = Literal["pending", "passed", "failed", "action_required", "no_checks", "error"]


class CheckInfo(_Strict):
    kind: Literal["check_run", "status", "workflow_run"]
    id: int | None = None
    name: str
    status: str | None = Field(default=None, description="GitHub's raw status (queued, in_progress, completed...).")
    conclusion: str | None = Field(default=None, description="GitHub's raw conclusion or commit-status state.")
    state: CheckState
    url: str | None = None


class CIStatus(_Strict):
    state: CIState
    head_sha: str
    checks: list[CheckInfo] = Field(default_factory=list)
    summary: str = ""
    warning: str | None = None

    @property
    def failing(self) -> list[CheckInfo]:
        return [c for c in self.checks if c.state == "failed"]

    @property
    def awaiting_approval(self) -> list[CheckInfo]:
        return [c for c in self.checks if c.state == "action_required"]


CIVerdict = Literal["wait", "passed", "failed", "action_required", "error"]


def ci_verdict(status: CIStatus, ci: CISpec) -> CIVerdict:
    """What the workflow's CI loop does with one poll: keep waiting, or which way it ended.

    Pure, so the workflow can call it; `no_checks` is resolved by the configured policy.
    """
    if status.state == "pending":
        return "wait"
    if status.state == "no_checks":
        return "passed" if ci.no_checks_policy == "pass" else "failed"
    return status.state


class FailedJob(_Strict):
    name: str
    job_id: int | None = None
    run_id: int | None = None
    workflow_name: str | None = None
    conclusion: str | None = None
    failing_step: str | None = None
    log_ref: str | None = None
    error_lines: int = 0
    url: str | None = None


class CIFailureSummary(OperationOutcome):
    operation: str = "fetch_ci_failure"
    ci_iteration: int
    head_sha: str
    feedback_ref: str | None = Field(default=None, description="feedback-ci-<N>.md: pass as BuildInput.feedback_ref.")
    summary: str = ""
    jobs: list[FailedJob] = Field(default_factory=list)


class GateRow(_Strict):
    name: str
    passed: bool
    duration_ms: int | None = None


class PRTemplateContext(_Strict):
    """Values the PR title and body templates can use; filled by the workflow from its history."""

    work_order_id: str
    run_id: str
    task_prompt: str = ""
    iterations: int = 0
    highest_level_passed: str | None = None
    gates: list[GateRow] = Field(default_factory=list)
    cost_usd: float | None = None
    branch: str | None = None


def resolve_repo(spec: DeliverySpec, workspace_source: object | None = None) -> RepoRef | None:
    """The GitHub repository to deliver to: the spec's owner/repo, else a `github` workspace source's.

    Duck-typed on the source so this module need not import `agentgate.models` (which imports it).
    """
    owner, repo = spec.owner, spec.repo
    if (owner is None or repo is None) and getattr(workspace_source, "type", None) == "github":
        owner = owner or getattr(workspace_source, "owner", None)
        repo = repo or getattr(workspace_source, "repo", None)
    if owner and repo:
        return RepoRef(owner=owner, repo=repo)
    return None
