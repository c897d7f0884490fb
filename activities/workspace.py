"""Workspace activities: clone the source, snapshot each iteration, deliver the branch.

The workspace is the run's own clone under `AGENTGATE_HOME/workspaces/`; a local
source repository is only ever written to by `git push` of the run's branch, so its
working tree and checked-out branch are never touched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from temporalio import activity

from activities.deps import WORK_ORDER_REF, ActivityDeps
from activities.errors import app_error
from agentgate import git
from agentgate.events import RunEventLog
from agentgate.models import (
    DeliverInput,
    DeliveryResult,
    ErrorType,
    FreshSource,
    GitHubSource,
    GitSource,
    LocalSource,
    PrepareInput,
    SnapshotInput,
    SnapshotResult,
    WorkspaceInfo,
)


def run_branch(work_order_id: str) -> str:
    return f"agentgate/{work_order_id}"


class WorkspaceActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self.deps = deps

    @activity.defn(name="prepare_workspace")
    async def prepare_workspace(self, inp: PrepareInput) -> WorkspaceInfo:
        ctx, order = inp.ctx, inp.work_order
        events = RunEventLog(self.deps.store, ctx)
        # Written strictly (an error retries the activity): later phases read the order from it.
        self.deps.store.write_json(ctx, WORK_ORDER_REF, order)
        events.emit("phase_started", phase="prepare")
        dest = self.deps.settings.workspaces_dir / ctx.work_order_id / ctx.run_id
        if dest.exists():  # a retried attempt: start clean
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = order.workspace_source
        source_path: str | None = None
        try:
            if isinstance(src, LocalSource):
                if not await git.is_repository(src.path):
                    raise app_error(
                        ErrorType.WORKSPACE_ERROR,
                        f"workspace_source.path {src.path!r} is not a git repository on host "
                        f"{self.deps.settings.host_id}; run `git init` there or pass another path",
                    )
                if not await git.has_commits(src.path):
                    raise app_error(
                        ErrorType.WORKSPACE_ERROR,
                        f"workspace_source.path {src.path!r} has no commits; commit something first",
                    )
                await git.git(dest.parent, "clone", "-q", "--no-hardlinks", str(Path(src.path).resolve()), str(dest))
                source_path = str(Path(src.path).resolve())
            elif isinstance(src, GitSource):
                args = ["clone", "-q"] + (["--branch", src.branch] if src.branch else []) + [src.url, str(dest)]
                await git.git(dest.parent, *args, timeout=1800)
            elif isinstance(src, GitHubSource):
                url = f"https://github.com/{src.owner}/{src.repo}.git"
                args = ["clone", "-q"] + (["--branch", src.branch] if src.branch else []) + [url, str(dest)]
                await git.git(dest.parent, *args, timeout=1800)
            elif isinstance(src, FreshSource):
                dest.mkdir(parents=True)
                await git.git(dest, "init", "-q", "-b", "main")
                if src.template:
                    template = Path(src.template)
                    if not template.is_dir():
                        raise app_error(
                            ErrorType.WORKSPACE_ERROR, f"fresh.template {src.template!r} is not a directory"
                        )
                    shutil.copytree(template, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git"))
                await git.commit_all(dest, "agentgate: initial commit")
        except git.GitError as exc:
            raise app_error(ErrorType.WORKSPACE_ERROR, f"could not prepare the workspace: {exc}") from exc
        branch = run_branch(ctx.work_order_id)
        await git.git(dest, "checkout", "-q", "-B", branch)
        base = await git.head(dest)
        info = WorkspaceInfo(
            path=str(dest),
            base_commit=base,
            branch=branch,
            task_queue=self.deps.settings.host_task_queue,
            agent_task_queue=self.deps.settings.agent_task_queue,
            source_path=source_path,
        )
        events.emit("phase_completed", phase="prepare", workspace=str(dest), base_commit=base)
        return info

    @activity.defn(name="snapshot")
    async def snapshot(self, inp: SnapshotInput) -> SnapshotResult:
        ctx, n = inp.ctx, inp.iteration
        events = RunEventLog(self.deps.store, ctx, iteration=n)
        events.emit("phase_started", phase="snapshot")
        ws = inp.workspace.path
        try:
            commit = await git.commit_all(
                ws, f"agentgate: iteration {n}\n\nWork-Order: {ctx.work_order_id}\nRun: {ctx.run_id}"
            )
            patch = await git.diff(ws, inp.previous_commit, commit)
            files, ins, dels = await git.numstat(ws, inp.previous_commit, commit)
        except git.GitError as exc:
            raise app_error(
                ErrorType.SNAPSHOT_ERROR, f"snapshot of iteration {n} failed: {exc}", retryable=True
            ) from exc
        patch_ref = self.deps.store.write_text(ctx, f"patch-{n}.diff", patch)
        result = SnapshotResult(
            commit=commit,
            changed=bool(patch.strip()),
            files_changed=files,
            insertions=ins,
            deletions=dels,
            patch_ref=patch_ref,
        )
        events.emit(
            "phase_completed", phase="snapshot", commit=commit, files_changed=files, insertions=ins, deletions=dels
        )
        return result

    @activity.defn(name="deliver_local")
    async def deliver_local(self, inp: DeliverInput) -> DeliveryResult:
        """Push the run's branch back into a local source repository (never its working tree)."""
        ctx, ws = inp.ctx, inp.workspace
        events = RunEventLog(self.deps.store, ctx)
        events.emit("delivery_started", mode="local", branch=ws.branch)
        commit = await git.head(ws.path)
        if ws.source_path is None:
            result = DeliveryResult(
                mode="local",
                branch=ws.branch,
                commit=commit,
                target=ws.path,
                pushed=False,
                message="the branch stays in the run's workspace (no local source to push to)",
            )
        else:
            try:
                await git.git(ws.path, "push", "-q", "--force", ws.source_path, f"HEAD:refs/heads/{ws.branch}")
            except git.GitError as exc:
                raise app_error(
                    ErrorType.DELIVERY_ERROR, f"could not push {ws.branch} to {ws.source_path}: {exc}", retryable=True
                ) from exc
            result = DeliveryResult(mode="local", branch=ws.branch, commit=commit, target=ws.source_path, pushed=True)
        events.emit("delivery_completed", mode="local", branch=ws.branch, commit=commit, target=result.target)
        return result
