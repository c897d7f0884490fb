"""One delivery interface, two implementations: local (branch / bundle / patch) and GitHub.

The workflow never talks to a VCS host: activities pick an implementation from the
work order's `DeliverySpec` and call these methods, one remote operation per activity,
so Temporal can retry each call on its own. Implementations raise `GitHubError` /
`PushError`; turning those into fail-fast errors or best-effort warnings is the
activity layer's job, because it depends on the run's `github_mode`, not on the host.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

from agentgate import git
from agentgate.artifacts import ArtifactStore
from agentgate.delivery import ci_logs
from agentgate.delivery.github import CheckRun, GitHubClient, GitHubError, Job, WorkflowRun, redact
from agentgate.delivery.models import (
    CheckInfo,
    CheckState,
    CIFailureSummary,
    CIStatus,
    CreatePullRequestResult,
    DeliveryMode,
    DeliverySpec,
    FailedJob,
    MarkReadyResult,
    PRTemplateContext,
    PullRequestInfo,
    PushResult,
    RepoRef,
)
from agentgate.delivery.push import PushError, push_head
from agentgate.delivery.templates import render_body, render_title
from agentgate.models import RunContext, WorkspaceInfo

log = logging.getLogger(__name__)

_PASSED = {"success", "neutral", "skipped"}
_FAILED = {"failure", "timed_out", "cancelled", "startup_failure", "stale", "error"}
_WAITING = {"waiting", "action_required"}  # a human must approve (environment, first-time contributor)


@runtime_checkable
class DeliveryManager(Protocol):
    async def push(self, workspace: WorkspaceInfo) -> PushResult: ...

    async def open_pull_request(
        self, workspace: WorkspaceInfo, template: PRTemplateContext
    ) -> CreatePullRequestResult: ...

    async def poll_ci(self, head_sha: str, elapsed_seconds: float) -> CIStatus: ...

    async def fetch_ci_failure(self, status: CIStatus, ci_iteration: int) -> CIFailureSummary: ...

    async def mark_ready(self, pr: PullRequestInfo) -> MarkReadyResult: ...


def _artifact_name(branch: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", branch).strip("-") or "branch"


class LocalDelivery:
    """Delivers into the machine: the source repository's branch, or a bundle / patch file in the artifact store."""

    def __init__(self, spec: DeliverySpec, store: ArtifactStore, ctx: RunContext) -> None:
        self.spec, self.store, self.ctx = spec, store, ctx

    async def push(self, workspace: WorkspaceInfo) -> PushResult:
        branch = self.spec.branch or workspace.branch
        commit = await git.head(workspace.path)
        output = self.spec.local_output
        try:
            if output == "branch":
                if workspace.source_path is None:
                    return PushResult(
                        branch=branch, commit=commit, remote=workspace.path, pushed=False, warning=None, skipped=True
                    )
                await git.git(
                    workspace.path, "push", "-q", "--force", workspace.source_path, f"HEAD:refs/heads/{branch}"
                )
                return PushResult(branch=branch, commit=commit, remote=workspace.source_path, pushed=True)
            name = _artifact_name(branch)
            if output == "bundle":
                with tempfile.TemporaryDirectory(prefix="agentgate-bundle-") as tmp:
                    path = Path(tmp) / f"{name}.bundle"
                    # Name the branch inside the bundle so `git fetch x.bundle <branch>` works.
                    await git.git(workspace.path, "branch", "-f", f"agentgate-bundle/{name}", "HEAD")
                    rev = f"refs/heads/agentgate-bundle/{name}"
                    spec_range = [rev] if workspace.base_commit == commit else [f"^{workspace.base_commit}", rev]
                    await git.git(workspace.path, "bundle", "create", "-q", str(path), *spec_range)
                    await git.git(workspace.path, "branch", "-D", f"agentgate-bundle/{name}")
                    ref = self.store.write_bytes(self.ctx, f"delivery/{name}.bundle", path.read_bytes())
            else:
                patch = await git.git(workspace.path, "format-patch", "--stdout", f"{workspace.base_commit}..HEAD")
                ref = self.store.write_text(self.ctx, f"delivery/{name}.patch", patch)
        except git.GitError as exc:
            raise PushError(f"local delivery ({output}) of {branch} failed: {exc}", retryable=True) from exc
        return PushResult(branch=branch, commit=commit, pushed=False, artifact_ref=ref)

    async def open_pull_request(self, workspace: WorkspaceInfo, template: PRTemplateContext) -> CreatePullRequestResult:
        return CreatePullRequestResult(skipped=True)

    async def poll_ci(self, head_sha: str, elapsed_seconds: float) -> CIStatus:
        return CIStatus(state="no_checks", head_sha=head_sha, summary="local delivery has no CI")

    async def fetch_ci_failure(self, status: CIStatus, ci_iteration: int) -> CIFailureSummary:
        return CIFailureSummary(ci_iteration=ci_iteration, head_sha=status.head_sha, skipped=True)

    async def mark_ready(self, pr: PullRequestInfo) -> MarkReadyResult:
        return MarkReadyResult(skipped=True)


def _check_state(status: str | None, conclusion: str | None) -> CheckState:
    if status in _WAITING or conclusion == "action_required":
        return "action_required"
    if status != "completed":
        return "pending"
    if conclusion in _PASSED:
        return "skipped" if conclusion == "skipped" else "passed"
    return "failed"


def _status_state(state: str) -> CheckState:
    return {"success": "passed", "pending": "pending"}.get(state, "failed")


def aggregate(checks: list[CheckInfo], head_sha: str, spec: DeliverySpec, elapsed_seconds: float) -> CIStatus:
    """One CI verdict from many checks. Pure: unit-testable without a server."""
    ci = spec.ci
    deciding = [c for c in checks if not ci.required_checks or c.name in ci.required_checks]
    missing = [n for n in ci.required_checks if n not in {c.name for c in checks}]
    counts = {s: sum(1 for c in deciding if c.state == s) for s in ("passed", "failed", "pending", "action_required")}
    brief = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    if not deciding and not missing:
        if elapsed_seconds < ci.no_checks_grace_seconds:
            return CIStatus(
                state="pending",
                head_sha=head_sha,
                checks=checks,
                summary="no checks reported yet; waiting for CI to pick up the commit",
            )
        return CIStatus(
            state="no_checks",
            head_sha=head_sha,
            checks=checks,
            summary=f"no checks reported for {head_sha[:12]} (policy: {ci.no_checks_policy})",
        )
    pending = counts["pending"] > 0 or bool(missing)
    if counts["failed"] and (not pending or not ci.wait_for_all):
        names = ", ".join(c.name for c in deciding if c.state == "failed")
        return CIStatus(state="failed", head_sha=head_sha, checks=checks, summary=f"CI failed: {names} ({brief})")
    if pending:
        extra = f"; required checks not reported yet: {', '.join(missing)}" if missing else ""
        return CIStatus(state="pending", head_sha=head_sha, checks=checks, summary=f"CI running ({brief}){extra}")
    if counts["action_required"]:
        names = ", ".join(c.name for c in deciding if c.state == "action_required")
        return CIStatus(
            state="action_required",
            head_sha=head_sha,
            checks=checks,
            summary=f"CI awaits approval by a maintainer: {names}",
        )
    return CIStatus(state="passed", head_sha=head_sha, checks=checks, summary=f"CI passed ({brief or 'all skipped'})")


class GitHubDelivery:
    """Push with a short-lived header token, open a draft PR, read CI, mark the PR ready."""

    def __init__(
        self,
        spec: DeliverySpec,
        repo: RepoRef,
        client: GitHubClient,
        store: ArtifactStore,
        ctx: RunContext,
        token: str,
    ) -> None:
        self.spec, self.repo, self.gh, self.store, self.ctx = spec, repo, client, store, ctx
        self._token = token

    def __repr__(self) -> str:
        return f"GitHubDelivery(repo={self.repo.full_name!r})"

    async def push(self, workspace: WorkspaceInfo) -> PushResult:
        branch = self.spec.branch or workspace.branch
        remote = self.spec.remote_url
        if not remote:
            remote = (await self.gh.get_repo(self.repo.owner, self.repo.repo)).clone_url
        commit = await git.head(workspace.path)
        clean = await push_head(workspace.path, remote, branch, self._token)
        return PushResult(remote=clean, branch=branch, commit=commit, pushed=True)

    async def open_pull_request(self, workspace: WorkspaceInfo, template: PRTemplateContext) -> CreatePullRequestResult:
        owner, name = self.repo.owner, self.repo.repo
        branch = self.spec.branch or workspace.branch
        warnings: list[str] = []
        existing = await self.gh.find_open_pull(owner, name, branch)
        if existing is not None:
            pr, created = existing, False
        else:
            base = self.spec.base_branch or (await self.gh.get_repo(owner, name)).default_branch
            ctx = template.model_copy(update={"branch": branch})
            title = render_title(self.spec.title_template, ctx)
            body = render_body(self.spec.body_template, ctx)
            try:
                pr = await self.gh.create_pull(
                    owner, name, title=title, head=branch, base=base, body=body, draft=self.spec.draft
                )
            except GitHubError as exc:
                msg = (exc.message or "").lower()
                if exc.status == 422 and "already exists" in msg:
                    # A retried attempt whose first create succeeded but whose answer was lost.
                    again = await self.gh.find_open_pull(owner, name, branch)
                    if again is None:
                        raise
                    pr = again
                elif exc.status == 422 and self.spec.draft and "draft" in msg:
                    warnings.append("draft pull requests are not available for this repository; opened a regular PR")
                    pr = await self.gh.create_pull(
                        owner, name, title=title, head=branch, base=base, body=body, draft=False
                    )
                else:
                    raise
            created = True
        number = pr.number
        for what, call in (
            ("labels", lambda: self.gh.add_labels(owner, name, number, self.spec.labels) if self.spec.labels else None),
            (
                "reviewers",
                lambda: (
                    self.gh.request_reviewers(owner, name, number, self.spec.reviewers, self.spec.team_reviewers)
                    if (self.spec.reviewers or self.spec.team_reviewers)
                    else None
                ),
            ),
            (
                "assignees",
                lambda: (
                    self.gh.add_assignees(owner, name, number, self.spec.assignees) if self.spec.assignees else None
                ),
            ),
        ):
            coro = call()
            if coro is None:
                continue
            try:
                await coro
            except GitHubError as exc:
                if exc.retryable:
                    raise
                # Extras never decide the run: a typo in a reviewer's login must not lose the PR.
                warnings.append(f"could not add {what}: {exc.message}")
        info = PullRequestInfo(
            number=pr.number,
            node_id=pr.node_id,
            url=pr.url,
            html_url=pr.html_url,
            draft=pr.draft,
            head_ref=pr.head.ref,
            head_sha=pr.head.sha,
            base_ref=pr.base.ref,
            created=created,
        )
        return CreatePullRequestResult(pr=info, repo=self.repo, warning="; ".join(warnings) or None)

    async def poll_ci(self, head_sha: str, elapsed_seconds: float) -> CIStatus:
        owner, name = self.repo.owner, self.repo.repo
        runs = await self.gh.list_check_runs(owner, name, head_sha)
        combined = await self.gh.combined_status(owner, name, head_sha)
        notes = []
        try:
            wruns = await self.gh.list_workflow_runs(owner, name, head_sha)
        except GitHubError as exc:
            if exc.retryable:
                raise
            wruns, notes = [], [f"workflow runs unavailable: {exc.github_message or exc.status}"]
        checks = [
            CheckInfo(
                kind="check_run",
                id=r.id,
                name=r.name,
                status=r.status,
                conclusion=r.conclusion,
                state=_check_state(r.status, r.conclusion),
                url=r.html_url or r.details_url,
            )
            for r in runs
        ]
        checks += [
            CheckInfo(
                kind="status",
                id=s.id,
                name=s.context,
                conclusion=s.state,
                state=_status_state(s.state),
                url=s.target_url,
            )
            for s in combined.statuses
        ]
        any_failed_check = any(c.state == "failed" for c in checks)
        for w in wruns:
            state = _check_state(w.status, w.conclusion)
            # Completed runs are already represented by their jobs' check runs; runs that are queued, await
            # approval, or failed before any job started (invalid workflow file) are not.
            if state in ("pending", "action_required") or (state == "failed" and not any_failed_check):
                checks.append(
                    CheckInfo(
                        kind="workflow_run",
                        id=w.id,
                        name=f"workflow: {w.name or w.id}",
                        status=w.status,
                        conclusion=w.conclusion,
                        state=state,
                        url=w.html_url,
                    )
                )
        status = aggregate(checks, head_sha, self.spec, elapsed_seconds)
        if notes:
            status = status.model_copy(update={"warning": "; ".join(notes)})
        return status

    async def fetch_ci_failure(self, status: CIStatus, ci_iteration: int) -> CIFailureSummary:
        owner, name, ci = self.repo.owner, self.repo.repo, self.spec.ci
        sha = status.head_sha
        reports: list[ci_logs.JobReport] = []
        jobs_out: list[FailedJob] = []
        covered_names: set[str] = set()
        failed_runs: list[WorkflowRun] = []
        try:
            failed_runs = [
                w
                for w in await self.gh.list_workflow_runs(owner, name, sha)
                if w.status == "completed" and w.conclusion in _FAILED
            ]
        except GitHubError as exc:
            if exc.retryable:
                raise
        failed_jobs: list[tuple[WorkflowRun, Job]] = []
        for w in failed_runs:
            for job in await self.gh.list_jobs(owner, name, w.id):
                if job.conclusion in _FAILED:
                    failed_jobs.append((w, job))
            if not any(j.run_id == w.id for _, j in failed_jobs):
                reports.append(
                    ci_logs.JobReport(
                        title=f"workflow {w.name or w.id}",
                        conclusion=w.conclusion,
                        url=w.html_url,
                        note="the workflow failed before any job ran (check the workflow file syntax and permissions)",
                    )
                )
        for w, job in failed_jobs[: ci.max_failed_jobs]:
            step = next((s.name for s in job.steps if s.conclusion in _FAILED), None)
            title = f"{job.workflow_name or w.name or 'workflow'} / {job.name}"
            rep = ci_logs.JobReport(title=title, conclusion=job.conclusion, failing_step=step, url=job.html_url)
            try:
                raw, cut = await self.gh.download_job_log(owner, name, job.id, ci.max_log_bytes)
            except GitHubError as exc:
                if exc.retryable:
                    raise
                rep.note = f"log unavailable: {exc.github_message or exc.message}"
                raw, cut = b"", False
            if raw:
                text = redact(raw.decode("utf-8", errors="replace"), self._token)
                if cut:
                    text = "…[log truncated to its last part]…\n" + text
                rep.log_ref = self.store.write_text(self.ctx, f"ci-{ci_iteration}/job-{job.id}.log", text)
                rep.extract = ci_logs.extract_failure(ci_logs.clean_log(text), step)
            reports.append(rep)
            covered_names.add(job.name)
            jobs_out.append(
                FailedJob(
                    name=title,
                    job_id=job.id,
                    run_id=w.id,
                    workflow_name=job.workflow_name or w.name,
                    conclusion=job.conclusion,
                    failing_step=step,
                    log_ref=rep.log_ref,
                    error_lines=len(rep.extract.error_lines) if rep.extract else 0,
                    url=job.html_url,
                )
            )
        # Failures reported by other CI systems: check runs from other apps and commit statuses.
        check_runs: dict[int, CheckRun] = {}
        if any(c.kind == "check_run" and c.state == "failed" and c.name not in covered_names for c in status.checks):
            check_runs = {r.id: r for r in await self.gh.list_check_runs(owner, name, sha)}
        for c in status.failing:
            if c.name in covered_names or c.kind == "workflow_run":
                continue
            note = None
            if c.kind == "check_run" and c.id in check_runs:
                out = check_runs[c.id].output
                note = "\n\n".join(x for x in (out.title, out.summary, out.text) if x)
            elif c.kind == "status":
                note = f"commit status `{c.name}`: {c.conclusion}"
            reports.append(ci_logs.JobReport(title=c.name, conclusion=c.conclusion, url=c.url, note=note or None))
            jobs_out.append(FailedJob(name=c.name, conclusion=c.conclusion, url=c.url))
        feedback = ci_logs.render_feedback(ci_iteration, sha, reports, ci.feedback_max_chars)
        feedback = redact(feedback, self._token)
        ref = self.store.write_text(self.ctx, f"feedback-ci-{ci_iteration}.md", feedback)
        return CIFailureSummary(
            ci_iteration=ci_iteration,
            head_sha=sha,
            feedback_ref=ref,
            summary=redact(ci_logs.short_summary(reports), self._token),
            jobs=jobs_out,
        )

    async def mark_ready(self, pr: PullRequestInfo) -> MarkReadyResult:
        if not pr.draft:
            return MarkReadyResult(skipped=True, draft=False)
        draft = await self.gh.mark_ready_for_review(pr.node_id)
        return MarkReadyResult(draft=draft)


def is_local(spec: DeliverySpec) -> bool:
    return spec.mode == DeliveryMode.LOCAL
