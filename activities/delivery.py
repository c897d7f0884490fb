"""Delivery activities: one remote operation each, so Temporal retries exactly the call that failed.

The CI loop itself is workflow code (durable timers between `poll_ci` calls); nothing
here sleeps or loops on CI. Errors are classified once, here:

- retryable (5xx, 429, secondary rate limits, network) → `ApplicationError(non_retryable=False,
  next_retry_delay=Retry-After)`, whatever the GitHub mode;
- permanent (401/403/404/422, rejected push) → with `fail_fast`, a non-retryable
  `delivery_error`; with `best_effort`, a normal result with `ok=False` and `warning` set;
- `disabled` → `skipped=True` without any call.

The token comes from the worker's environment (`AGENTGATE_GITHUB_TOKEN`, else
`GITHUB_TOKEN`) and is never part of an input, an output, an event or a message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import ActivityDeps
from agentgate.delivery.github import DEFAULT_API_URL, GitHubClient, GitHubError, redact
from agentgate.delivery.models import (
    CIFailureSummary,
    CIStatus,
    CreatePullRequestResult,
    DeliveryMode,
    DeliverySpec,
    GitHubMode,
    MarkReadyResult,
    OperationOutcome,
    PRTemplateContext,
    PullRequestInfo,
    PushResult,
    RepoRef,
)
from agentgate.delivery.protocol import DeliveryManager, GitHubDelivery, LocalDelivery
from agentgate.delivery.push import PushError
from agentgate.events import RunEventLog
from agentgate.models import ErrorType, RunContext, WorkspaceInfo
from agentgate.observability.tracing import traced_phase

log = logging.getLogger("agentgate.delivery")

TOKEN_ENV = ("AGENTGATE_GITHUB_TOKEN", "GITHUB_TOKEN")
API_URL_ENV = "AGENTGATE_GITHUB_API_URL"

# Error types these activities raise as non-retryable; add to the workflow's retry policy.
DELIVERY_NON_RETRYABLE = [ErrorType.DELIVERY_ERROR.value, "delivery_config"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PushBranchInput(_In):
    ctx: RunContext
    spec: DeliverySpec
    workspace: WorkspaceInfo
    repo: RepoRef | None = Field(default=None, description="Needed for push/github-pr without spec.remote_url.")
    iteration: int | None = None


class CreatePullRequestInput(_In):
    ctx: RunContext
    spec: DeliverySpec
    workspace: WorkspaceInfo
    repo: RepoRef
    template: PRTemplateContext


class PollCIInput(_In):
    ctx: RunContext
    spec: DeliverySpec
    repo: RepoRef
    head_sha: str
    elapsed_seconds: float = Field(default=0, description="Since polling of this commit started (workflow time).")
    poll: int = 1


class FetchCIFailureInput(_In):
    ctx: RunContext
    spec: DeliverySpec
    repo: RepoRef
    status: CIStatus
    ci_iteration: int = Field(ge=1)


class MarkReadyInput(_In):
    ctx: RunContext
    spec: DeliverySpec
    repo: RepoRef
    pr: PullRequestInfo


def github_token() -> str | None:
    for name in TOKEN_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def github_api_url() -> str:
    return os.environ.get(API_URL_ENV, "").strip() or DEFAULT_API_URL


R = TypeVar("R", bound=OperationOutcome)


class DeliveryActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self.deps = deps

    # -- plumbing ------------------------------------------------------------------------
    def _manager(self, spec: DeliverySpec, ctx: RunContext, repo: RepoRef | None) -> tuple[DeliveryManager, str | None]:
        if spec.mode == DeliveryMode.LOCAL:
            return LocalDelivery(spec, self.deps.store, ctx), None
        if repo is None:
            raise ApplicationError(
                "delivery needs a GitHub repository: set delivery.owner and delivery.repo, "
                "or use a `github` workspace source",
                type="delivery_config",
                non_retryable=True,
            )
        token = github_token()
        if not token:
            raise GitHubError(
                f"no GitHub token: set {TOKEN_ENV[0]} (or {TOKEN_ENV[1]}) in the worker's environment",
                kind="github_auth",
            )
        client = GitHubClient(token, github_api_url())
        return GitHubDelivery(spec, repo, client, self.deps.store, ctx, token), token

    async def _run(
        self,
        op: str,
        inp: PushBranchInput | CreatePullRequestInput | PollCIInput | FetchCIFailureInput | MarkReadyInput,
        repo: RepoRef | None,
        call: Callable[[DeliveryManager], Awaitable[R]],
        on_warning: Callable[[str], R],
    ) -> R:
        spec, ctx = inp.spec, inp.ctx
        events = RunEventLog(self.deps.store, ctx)
        token: str | None = None
        manager: DeliveryManager | None = None
        try:
            manager, token = self._manager(spec, ctx, repo)
            return await call(manager)
        except (GitHubError, PushError) as exc:
            message = redact(exc.message, token)
            retryable = exc.retryable
            kind = exc.kind if isinstance(exc, GitHubError) else "git_push"
            if retryable:
                delay = exc.retry_after if isinstance(exc, GitHubError) else None
                attempt = activity.info().attempt if activity.in_activity() else 1
                log.warning("delivery %s failed (attempt %s, will retry): %s", op, attempt, message)
                events.emit("delivery_retry", operation=op, attempt=attempt, error=message, retry_after=delay)
                raise ApplicationError(
                    message,
                    {"operation": op, "kind": kind, "status": getattr(exc, "status", None)},
                    type=kind,
                    non_retryable=False,
                    next_retry_delay=timedelta(seconds=delay) if delay else None,
                ) from None
            if spec.effective_github_mode == GitHubMode.BEST_EFFORT:
                log.warning("delivery %s failed (best effort, continuing): %s", op, message)
                events.emit("delivery_warning", operation=op, error=message)
                return on_warning(message)
            log.error("delivery %s failed: %s", op, message)
            events.emit("delivery_failed", operation=op, error=message)
            raise ApplicationError(
                message,
                {"operation": op, "kind": kind, "status": getattr(exc, "status", None)},
                type=ErrorType.DELIVERY_ERROR.value,
                non_retryable=True,
            ) from None
        finally:
            if isinstance(manager, GitHubDelivery):
                await manager.gh.aclose()

    @staticmethod
    def _disabled(spec: DeliverySpec) -> bool:
        return spec.mode != DeliveryMode.LOCAL and spec.effective_github_mode == GitHubMode.DISABLED

    # -- activities ------------------------------------------------------------------------
    @activity.defn(name="push_branch")
    @traced_phase("deliver")
    async def push_branch(self, inp: PushBranchInput) -> PushResult:
        """Push the run's branch (local source / bundle / patch, or the GitHub remote)."""
        if self._disabled(inp.spec):
            return PushResult(skipped=True, branch=inp.workspace.branch)
        result = await self._run(
            "push_branch",
            inp,
            inp.repo,
            lambda m: m.push(inp.workspace),
            lambda msg: PushResult(ok=False, warning=msg, branch=inp.spec.branch or inp.workspace.branch),
        )
        RunEventLog(self.deps.store, inp.ctx, iteration=inp.iteration).emit(
            "delivery_pushed",
            mode=inp.spec.mode.value,
            branch=result.branch,
            commit=result.commit,
            remote=result.remote,
            artifact=result.artifact_ref,
            pushed=result.pushed,
            ok=result.ok,
        )
        return result

    @activity.defn(name="create_pull_request")
    @traced_phase("deliver")
    async def create_pull_request(self, inp: CreatePullRequestInput) -> CreatePullRequestResult:
        """Open (or find, on a retried attempt) the draft PR for the run's branch."""
        if self._disabled(inp.spec) or inp.spec.mode != DeliveryMode.GITHUB_PR:
            return CreatePullRequestResult(skipped=True)
        result = await self._run(
            "create_pull_request",
            inp,
            inp.repo,
            lambda m: m.open_pull_request(inp.workspace, inp.template),
            lambda msg: CreatePullRequestResult(ok=False, warning=msg, repo=inp.repo),
        )
        if result.pr is not None:
            RunEventLog(self.deps.store, inp.ctx).emit(
                "pr_created" if result.pr.created else "pr_found",
                number=result.pr.number,
                url=result.pr.html_url,
                draft=result.pr.draft,
                warning=result.warning,
            )
        return result

    @activity.defn(name="poll_ci")
    @traced_phase("deliver")
    async def poll_ci(self, inp: PollCIInput) -> CIStatus:
        """ONE look at CI for a commit; the workflow decides when to look again."""
        if self._disabled(inp.spec) or not inp.spec.ci.enabled:
            return CIStatus(state="no_checks", head_sha=inp.head_sha, summary="CI polling disabled")
        status = await self._run(
            "poll_ci",
            inp,
            inp.repo,
            lambda m: m.poll_ci(inp.head_sha, inp.elapsed_seconds),
            lambda msg: CIStatus(state="error", head_sha=inp.head_sha, warning=msg, summary="CI status unavailable"),
        )
        RunEventLog(self.deps.store, inp.ctx).emit(
            "ci_polled", poll=inp.poll, head_sha=inp.head_sha, state=status.state, summary=status.summary
        )
        return status

    @activity.defn(name="fetch_ci_failure")
    @traced_phase("deliver")
    async def fetch_ci_failure(self, inp: FetchCIFailureInput) -> CIFailureSummary:
        """Failing jobs' logs → `ci-<N>/job-<id>.log` and a bounded `feedback-ci-<N>.md` for the agent."""
        if self._disabled(inp.spec):
            return CIFailureSummary(ci_iteration=inp.ci_iteration, head_sha=inp.status.head_sha, skipped=True)

        async def call(m: DeliveryManager) -> CIFailureSummary:
            if activity.in_activity():
                activity.heartbeat("downloading CI logs")
            return await m.fetch_ci_failure(inp.status, inp.ci_iteration)

        result = await self._run(
            "fetch_ci_failure",
            inp,
            inp.repo,
            call,
            lambda msg: CIFailureSummary(
                ci_iteration=inp.ci_iteration, head_sha=inp.status.head_sha, ok=False, warning=msg
            ),
        )
        RunEventLog(self.deps.store, inp.ctx).emit(
            "ci_failure_fetched",
            ci_iteration=inp.ci_iteration,
            feedback=result.feedback_ref,
            jobs=[j.name for j in result.jobs],
            summary=result.summary,
        )
        return result

    @activity.defn(name="mark_pr_ready")
    @traced_phase("deliver")
    async def mark_pr_ready(self, inp: MarkReadyInput) -> MarkReadyResult:
        """GraphQL markPullRequestReadyForReview once CI passed."""
        if self._disabled(inp.spec):
            return MarkReadyResult(skipped=True)
        result = await self._run(
            "mark_pr_ready",
            inp,
            inp.repo,
            lambda m: m.mark_ready(inp.pr),
            lambda msg: MarkReadyResult(ok=False, warning=msg, draft=inp.pr.draft),
        )
        RunEventLog(self.deps.store, inp.ctx).emit("pr_marked_ready", number=inp.pr.number, draft=result.draft)
        return result

    def all(self) -> list:
        return [self.push_branch, self.create_pull_request, self.poll_ci, self.fetch_ci_failure, self.mark_pr_ready]


def delivery_activities(deps: ActivityDeps) -> list:
    """The activity callables to add to a worker's `activities=[...]`."""
    return DeliveryActivities(deps).all()
