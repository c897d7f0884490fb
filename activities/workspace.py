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
from activities.heartbeat import heartbeats
from agentgate import checkpoints, git
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
    ProbeInput,
    RestoreInput,
    SnapshotInput,
    SnapshotResult,
    WorkspaceInfo,
)
from agentgate.observability.tracing import traced_phase

# Attempts at saving a checkpoint before the run goes on without it (persistence failure, counted).
CHECKPOINT_ATTEMPTS = 3


def run_branch(work_order_id: str) -> str:
    return f"agentgate/{work_order_id}"


class WorkspaceActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self.deps = deps

    @activity.defn(name="prepare_workspace")
    @heartbeats
    @traced_phase("prepare")
    async def prepare_workspace(self, inp: PrepareInput) -> WorkspaceInfo:
        ctx, order = inp.ctx, inp.work_order
        events = RunEventLog(self.deps.store, ctx)
        # Later phases read the order back: a store that cannot take it is counted, and the order is
        # kept in a spill folder instead (and is in any case this run's input in Temporal's history).
        self.deps.store.keep_text(ctx, WORK_ORDER_REF, order.model_dump_json(indent=2) + "\n")
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
        if order.resume_from is not None:  # a rewind: iteration 1 builds on an earlier run's checkpoint
            await self._materialize(ctx, order.resume_from.ref, order.resume_from.commit, dest, branch)
        base = await git.head(dest)
        info = WorkspaceInfo(
            path=str(dest),
            base_commit=base,
            branch=branch,
            task_queue=self.deps.settings.host_task_queue,
            agent_task_queue=self.deps.settings.agent_task_queue,
            source_path=source_path,
            host_id=self.deps.settings.host_id,
            checkpoint_ref=await self._checkpoint(ctx, dest, checkpoints.base_ref(ctx.run_id), base),
        )
        events.emit("phase_completed", phase="prepare", workspace=str(dest), base_commit=base)
        return info

    @activity.defn(name="snapshot")
    @traced_phase("snapshot")
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
        patch_ref = f"patch-{n}.diff"
        try:
            self.deps.store.write_text(ctx, patch_ref, patch)
        except OSError as exc:  # a full artifact store must not stop the run: counted; the commit holds the change
            self.deps.store.record_failure(patch_ref, exc, ctx)
        result = SnapshotResult(
            commit=commit,
            changed=bool(patch.strip()),
            files_changed=files,
            insertions=ins,
            deletions=dels,
            patch_ref=patch_ref,
            checkpoint_ref=await self._checkpoint(ctx, ws, checkpoints.iteration_ref(ctx.run_id, n), commit),
        )
        events.emit(
            "phase_completed", phase="snapshot", commit=commit, files_changed=files, insertions=ins, deletions=dels
        )
        return result

    @activity.defn(name="deliver_local")
    @traced_phase("deliver")
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

    # -- checkpoints: the workspace outlives its worker (agentgate/checkpoints.py) --------
    @activity.defn(name="restore_workspace")
    @heartbeats
    async def restore_workspace(self, inp: RestoreInput) -> WorkspaceInfo:
        """Rebuild a lost worker's workspace here, from its last checkpoint; runs on the shared queue (any worker).

        The new workspace keeps the run's branch, base commit and delivery target, and is bound
        to this worker's own queues from now on.
        """
        ctx, old = inp.ctx, inp.workspace
        settings = self.deps.settings
        events = RunEventLog(self.deps.store, ctx, iteration=inp.iteration)
        dest = settings.workspaces_dir / ctx.work_order_id / ctx.run_id
        if dest.exists():  # a retried attempt, or the same host came back without its old state
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        await self._materialize(ctx, inp.checkpoint_ref, inp.commit, dest, old.branch)
        info = old.model_copy(
            update={
                "path": str(dest),
                "task_queue": settings.host_task_queue,
                "agent_task_queue": settings.agent_task_queue,
                "host_id": settings.host_id,
            }
        )
        events.emit(
            "workspace_moved",
            from_host=old.host_id,
            to_host=settings.host_id,
            checkpoint_ref=inp.checkpoint_ref,
            commit=inp.commit,
            workspace=str(dest),
            reason=inp.reason,
        )
        activity.logger.warning(
            "workspace of %s moved from host %s to host %s at iteration %d (%s)",
            ctx.work_order_id, old.host_id, settings.host_id, inp.iteration, inp.reason,
        )  # fmt: skip
        return info

    @activity.defn(name="probe_workspace")
    async def probe_workspace(self, inp: ProbeInput) -> bool:
        """Runs on the workspace's host queue: True when this worker is up and still holds the workspace.

        The workflow asks when the agent queue did not start a build in time: a busy host (its
        agent slots taken) answers True and the build waits on; a host that is gone never answers.
        """
        return await git.is_repository(inp.workspace.path) and await git.has_commits(inp.workspace.path)

    async def _checkpoint(self, ctx, workspace: str | Path, ref: str, commit: str) -> str | None:
        try:
            return await checkpoints.save(self.deps.settings.runs_dir, ctx.work_order_id, workspace, ref, commit)
        except checkpoints.CheckpointError as exc:
            if activity.info().attempt < CHECKPOINT_ATTEMPTS:  # retryable: the store may be back in a moment
                raise app_error(ErrorType.SNAPSHOT_ERROR, str(exc), retryable=True) from exc
            # A backup copy that cannot be written (a full disk) must not end the run: counted, and the run
            # goes on without it (a later move of the workspace then says there is no checkpoint).
            self.deps.store.record_failure(ref, exc, ctx)
            return None

    async def _materialize(self, ctx, ref: str, commit: str, dest: Path, branch: str) -> None:
        try:
            await checkpoints.materialize(self.deps.settings.runs_dir, ctx.work_order_id, ref, commit, dest, branch)
        except checkpoints.CheckpointError as exc:
            raise app_error(ErrorType.WORKSPACE_ERROR, str(exc)) from exc
